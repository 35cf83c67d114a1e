#include "redis/registry.h"

#include <boost/asio/post.hpp>

#include "base/log.h"
#include "redis/internal.h"

namespace portico::redis {

namespace asio = boost::asio;

namespace {
constexpr int32_t kFirstBackoffMs = 50;
constexpr int32_t kMaxBackoffMs = 2000;
}  // namespace

// --- Breaker ---

bool Breaker::try_connect(int64_t now) {
  int64_t until = open_until.load(std::memory_order_acquire);
  if (until == 0) return true;
  if (now < until) return false;
  bool expected = false;
  return probing.compare_exchange_strong(expected, true, std::memory_order_acq_rel);
}

void Breaker::success() {
  if (open_until.load(std::memory_order_acquire) == 0) return;
  open_until.store(0, std::memory_order_release);
  backoff_ms.store(0, std::memory_order_relaxed);
  probing.store(false, std::memory_order_release);
  PORTICO_LOG(info, "redis %s: reachable again, circuit closed", name.c_str());
}

void Breaker::failure(int64_t now, const std::string& why) {
  int64_t until = open_until.load(std::memory_order_acquire);
  // Failures seen by several workers for the same outage extend nothing: the period already runs.
  if (until != 0 && now < until) return;
  int32_t previous = backoff_ms.load(std::memory_order_relaxed);
  int32_t next = previous == 0 ? kFirstBackoffMs : std::min(previous * 2, kMaxBackoffMs);
  if (!open_until.compare_exchange_strong(until, now + int64_t{next} * 1000000, std::memory_order_acq_rel))
    return;
  backoff_ms.store(next, std::memory_order_relaxed);
  probing.store(false, std::memory_order_release);
  if (previous == 0) {
    PORTICO_LOG(warn, "redis %s: %s; circuit open (calls fail at once, retried after %d ms, up to %d ms)",
                name.c_str(), why.c_str(), next, kMaxBackoffMs);
  } else {
    PORTICO_LOG(debug, "redis %s: probe failed (%s); circuit open for %d ms", name.c_str(), why.c_str(),
                next);
  }
}

// --- Target ---

Target::Target(Options options, std::shared_ptr<RegistryCore> core)
    : options_(std::move(options)),
      key_(options_.key()),
      core_(std::move(core)),
      shared_(std::make_shared<TargetShared>()) {
  clients_.resize(core_->contexts.size());
  shared_->options = options_;
  if (options_.tls) {
    shared_->tls = std::make_shared<TlsContext>();
    if (options_.tls_verify) shared_->tls->context.set_default_verify_paths();
  }
}

Target::~Target() {
  std::lock_guard<std::mutex> lock(core_->mutex);
  auto it = core_->targets.find(key_);
  if (it != core_->targets.end() && it->second.expired()) core_->targets.erase(it);
  for (size_t i = 0; i < clients_.size(); ++i) {
    if (!clients_[i]) continue;
    // The client belongs to its worker's loop: destroy it there. Its calls belong to plugins of the
    // snapshot that held this target, gone by now, so none is pending; what its handlers may still touch
    // (options, breakers) is in shared_, which it co-owns.
    std::shared_ptr<Client> c(clients_[i].release());
    asio::post(*core_->contexts[i], [c]() mutable { c.reset(); });
  }
}

Client& Target::client(size_t worker) {
  std::unique_ptr<Client>& c = clients_[worker];
  if (!c) c.reset(new Client(*this, *core_->contexts[worker]));
  return *c;
}

bool Target::available() const {
  const int64_t now = now_ns();
  std::lock_guard<std::mutex> lock(shared_->mutex);
  for (const auto& [name, b] : shared_->breakers) {
    if (!b->is_open(now)) return true;
  }
  return shared_->breakers.empty();
}

Breaker& TargetShared::breaker(const std::string& node) {
  std::lock_guard<std::mutex> lock(mutex);
  std::unique_ptr<Breaker>& b = breakers[node];
  if (!b) {
    b = std::make_unique<Breaker>();
    b->name = (options.cluster ? "cluster node " : "") + node;
  }
  return *b;
}

// --- Registry ---

Registry::Registry() : core_(std::make_shared<RegistryCore>()) {}

Registry::~Registry() {
  shutdown();
}

void Registry::attach_worker(size_t index, asio::io_context& context) {
  std::lock_guard<std::mutex> lock(core_->mutex);
  if (core_->contexts.size() <= index) core_->contexts.resize(index + 1, nullptr);
  core_->contexts[index] = &context;
}

size_t Registry::workers() const {
  std::lock_guard<std::mutex> lock(core_->mutex);
  return core_->contexts.size();
}

asio::io_context* Registry::context(size_t worker) const {
  std::lock_guard<std::mutex> lock(core_->mutex);
  return worker < core_->contexts.size() ? core_->contexts[worker] : nullptr;
}

std::shared_ptr<Target> Registry::target(const Options& options) {
  std::string key = options.key();
  std::lock_guard<std::mutex> lock(core_->mutex);
  std::weak_ptr<Target>& slot = core_->targets[key];
  if (auto t = slot.lock()) return t;
  std::shared_ptr<Target> t(new Target(options, core_));
  slot = t;
  return t;
}

void Registry::shutdown() {
  std::vector<std::shared_ptr<Target>> live;
  {
    std::lock_guard<std::mutex> lock(core_->mutex);
    if (core_->shut_down) return;
    core_->shut_down = true;
    for (auto& [key, weak] : core_->targets) {
      if (auto t = weak.lock()) live.push_back(std::move(t));
    }
  }
  // The workers are stopped: their clients can be destroyed from here, before their io_contexts.
  for (auto& t : live) {
    for (auto& c : t->clients_) c.reset();
  }
}

}  // namespace portico::redis
