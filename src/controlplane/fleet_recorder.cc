#include "controlplane/fleet_recorder.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <map>
#include <mutex>
#include <optional>
#include <queue>
#include <thread>

#include "base/log.h"
#include "base/time.h"
#include "config/json_input.h"

namespace portico::controlplane {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

}  // namespace

struct FleetRecorder::Impl {
  Impl(store::EtcdClient& e, FleetOptions o) : etcd(e), options(std::move(o)) {}

  struct Node {
    json record;           // the newest report
    bool pending = false;  // newer than what etcd holds; then the node has one entry in `due`
    // The rate limit (GCRA): each write moves this one interval on from max(itself, now); a write is allowed
    // once now >= tat - (write_burst - 1) intervals.
    Clock::time_point tat{};
  };
  using Due = std::pair<Clock::time_point, std::string>;

  void run();
  void run_once();  // the loop of run(), until stop
  Clock::time_point allowed(const Node& n) const {
    return n.tat - base::seconds(options.write_interval * (std::max(options.write_burst, 1) - 1));
  }
  void schedule(const std::string& node, Node& n, Clock::time_point at);
  store::Status write(const std::string& node, const std::string& text);
  void keep_lease();

  store::EtcdClient& etcd;
  const FleetOptions options;

  std::mutex mu;
  std::condition_variable wake;
  bool stopping = false;
  std::map<std::string, Node> nodes;  // one per data plane that reported here (bounded by the tokens)
  std::priority_queue<Due, std::vector<Due>, std::greater<Due>> due;  // pending nodes by write time
  std::thread thread;

  // Writer thread only.
  int64_t lease = 0;
  Clock::time_point next_keepalive{};
  bool failing = false;  // the last write failed (logged once per episode)
};

// Under mu, for a node that just became pending.
void FleetRecorder::Impl::schedule(const std::string& node, Node& n, Clock::time_point at) {
  n.pending = true;
  const bool first = due.empty() || at < due.top().first;
  due.emplace(at, node);
  if (first) wake.notify_one();
}

store::Status FleetRecorder::Impl::write(const std::string& node, const std::string& text) {
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (lease == 0) {
      store::Status s = etcd.lease_grant(static_cast<int64_t>(options.ttl), lease);
      if (!s.ok()) {
        lease = 0;
        return s;
      }
      next_keepalive = Clock::now() + base::seconds(options.ttl / 3);
    }
    store::Txn txn;
    txn.success.push_back(store::Op{store::Op::Type::put, options.prefix + node, {}, text, lease, false});
    store::TxnResult r;
    store::Status s = etcd.txn(txn, r);
    // The lease expired (etcd was away longer than its TTL, or restored): grant a new one and write again.
    if (s.code == store::Code::invalid && s.message.find("lease not found") != std::string::npos) {
      lease = 0;
      continue;
    }
    return s;
  }
  return {store::Code::internal, "lease lost twice"};
}

void FleetRecorder::Impl::keep_lease() {
  if (lease == 0 || Clock::now() < next_keepalive) return;
  next_keepalive = Clock::now() + base::seconds(options.ttl / 3);
  int64_t ttl_left = 0;
  store::Status s = etcd.lease_keepalive(lease, ttl_left);
  if (s.ok() && ttl_left <= 0) lease = 0;  // gone: the next write grants a new one
}

namespace {

// A record this control plane could have written: the fields the fleet view reads have their types (one
// written by hand with a string `reported_at` made every listing answer 500).
bool usable_record(const json& r) {
  if (!r.is_object()) return false;
  auto reported = r.find("reported_at");
  if (reported == r.end() || !reported->is_number()) return false;
  for (const char* text : {"last_error", "content_hash", "node_id", "hostname", "version", "source"}) {
    auto it = r.find(text);
    if (it != r.end() && !it->is_string()) return false;
  }
  return true;
}

}  // namespace

void FleetRecorder::Impl::run() {
  // Nothing may end this thread but stop(): an exception (an allocation failure, an etcd client surprise) is
  // logged and the loop goes on after a pause; records stay pending and are written later.
  while (true) {
    try {
      run_once();
      return;
    } catch (const std::exception& e) {
      PORTICO_LOG(error, "fleet recorder: %s; retrying", e.what());
      std::unique_lock lock(mu);
      if (wake.wait_for(lock, base::seconds(options.write_interval), [this] { return stopping; })) return;
    }
  }
}

void FleetRecorder::Impl::run_once() {
  while (true) {
    std::vector<std::pair<std::string, std::string>> batch;  // node, record text
    {
      std::unique_lock lock(mu);
      // Until the first write is due or the lease needs its keepalive; recomputed on every wake, since a
      // report may have scheduled an earlier write.
      const Clock::time_point idle_until = Clock::now() + base::seconds(options.ttl / 3);
      while (!stopping) {
        Clock::time_point until = lease != 0 ? next_keepalive : idle_until;
        if (!due.empty()) until = std::min(until, due.top().first);
        if (Clock::now() >= until) break;
        wake.wait_until(lock, until);
      }
      if (stopping) return;
      const Clock::time_point now = Clock::now();
      while (!due.empty() && due.top().first <= now) {
        const std::string node = due.top().second;
        due.pop();
        Node& n = nodes[node];
        if (!n.pending) continue;
        n.pending = false;
        n.tat = std::max(n.tat, now) + base::seconds(options.write_interval);
        batch.emplace_back(node, n.record.dump());
      }
    }
    for (size_t i = 0; i < batch.size(); ++i) {
      store::Status s = write(batch[i].first, batch[i].second);
      if (s.ok()) {
        if (failing) PORTICO_LOG(info, "fleet records are written to etcd again");
        failing = false;
        continue;
      }
      if (!failing) {
        PORTICO_LOG(warn, "fleet record of %s not written to etcd (%s); kept, written again later",
                    batch[i].first.c_str(), s.message.c_str());
      }
      failing = true;
      // Nothing is lost: this record and the rest of the batch are written again an interval later (unless a
      // newer report replaced them meanwhile, which is then written instead). The rest is not tried now: each
      // would wait out the client's retry deadline too.
      std::lock_guard lock(mu);
      const Clock::time_point later = Clock::now() + base::seconds(options.write_interval);
      for (size_t j = i; j < batch.size(); ++j) {
        Node& n = nodes[batch[j].first];
        if (!n.pending) schedule(batch[j].first, n, std::max(later, allowed(n)));
      }
      break;
    }
    keep_lease();
  }
}

FleetRecorder::FleetRecorder(store::EtcdClient& etcd, FleetOptions options)
    : impl_(std::make_unique<Impl>(etcd, std::move(options))) {}

FleetRecorder::~FleetRecorder() {
  stop();
}

void FleetRecorder::start() {
  if (!impl_->thread.joinable()) impl_->thread = std::thread([this] { impl_->run(); });
}

void FleetRecorder::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->wake.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void FleetRecorder::record(const std::string& node, json record) {
  std::lock_guard lock(impl_->mu);
  Impl::Node& n = impl_->nodes[node];
  n.record = std::move(record);
  if (!n.pending) impl_->schedule(node, n, std::max(Clock::now(), impl_->allowed(n)));
}

std::vector<json> FleetRecorder::list(bool& stale) {
  std::map<std::string, json> merged;
  store::RangeRequest q;
  q.key = impl_->options.prefix;
  q.range_end = store::prefix_end(q.key);
  store::RangeResult rr;
  stale = !impl_->etcd.range(q, rr).ok();
  for (const store::KeyValue& kv : rr.kvs) {
    // Records are etcd values anyone with etcd access can write: the strict reader, so a deep one is skipped
    // rather than crashing the listing (dumping a tree recurses once per level).
    config::Errors errors;
    std::optional<json> r = config::parse_json(kv.value, errors, kv.key);
    if (r && usable_record(*r)) merged[kv.key.substr(q.key.size())] = std::move(*r);
  }
  {
    // This replica's newest reports: newer than etcd's record while their write waits for its interval, and
    // the only ones known while etcd cannot be read.
    std::lock_guard lock(impl_->mu);
    for (const auto& [node, n] : impl_->nodes) {
      auto it = merged.find(node);
      if (it == merged.end() || n.record.value("reported_at", 0.0) > it->second.value("reported_at", 0.0)) {
        merged[node] = n.record;
      }
    }
  }
  std::vector<json> out;
  out.reserve(merged.size());
  for (auto& [node, r] : merged) out.push_back(std::move(r));
  return out;
}

}  // namespace portico::controlplane
