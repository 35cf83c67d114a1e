#include "store/compactor.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "base/log.h"
#include "base/time.h"

namespace portico::store {

struct Compactor::Impl {
  Impl(EtcdClient& c, std::function<int64_t()> h, CompactorOptions o)
      : client(c), horizon(std::move(h)), options(o) {}

  void run();

  EtcdClient& client;
  const std::function<int64_t()> horizon;
  const CompactorOptions options;

  std::mutex mu;
  std::condition_variable wake;
  bool stopping = false;
  std::atomic<int64_t> compacted{0};
  std::thread thread;
};

void Compactor::Impl::run() {
  const auto interval = base::seconds(options.interval);
  int64_t previous = 0;  // the horizon one interval ago
  int64_t done = 0;      // compacted at, in this cluster
  bool failing = false;
  while (true) {
    {
      std::unique_lock lock(mu);
      if (wake.wait_for(lock, interval, [this] { return stopping; })) return;
    }
    const int64_t now = horizon();
    if (now < previous) done = 0;  // a full read of another (e.g. restored) cluster: start over
    const int64_t target = std::min(previous, now - options.retention);
    previous = now;
    if (target <= done) continue;
    Status s = client.compact(target);
    if (s.ok()) {
      if (failing) PORTICO_LOG(info, "etcd compaction works again");
      failing = false;
      done = target;
      compacted.store(target);
      PORTICO_LOG(debug, "etcd compacted at revision %lld (horizon %lld)", static_cast<long long>(target),
                  static_cast<long long>(now));
      continue;
    }
    // Unreachable etcd: the next interval tries again. Refused (a revision ahead of a restored cluster's):
    // forget what was done; the horizon of the full read that follows is the new start.
    if (s.code == Code::invalid) done = 0;
    if (!failing) {
      PORTICO_LOG(warn, "etcd compaction at revision %lld failed: %s", static_cast<long long>(target),
                  s.message.c_str());
    }
    failing = true;
  }
}

Compactor::Compactor(EtcdClient& client, std::function<int64_t()> horizon, CompactorOptions options)
    : impl_(std::make_unique<Impl>(client, std::move(horizon), options)) {}

Compactor::~Compactor() {
  stop();
}

void Compactor::start() {
  if (impl_->options.interval > 0 && !impl_->thread.joinable())
    impl_->thread = std::thread([this] { impl_->run(); });
}

void Compactor::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

int64_t Compactor::compacted() const {
  return impl_->compacted.load();
}

}  // namespace portico::store
