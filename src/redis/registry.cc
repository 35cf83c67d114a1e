#include "redis/registry.h"

#include <boost/asio/post.hpp>

#include <map>

#include "base/json_escape.h"

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
    opens.fetch_add(1, std::memory_order_relaxed);
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
  shared_->workers = core_->contexts.size();
  shared_->outcomes = std::make_unique<TargetShared::Outcomes[]>(shared_->workers);
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

Client* Target::client(size_t worker) {
  // After shutdown the worker's io_context may be dying (frames of suspended sessions destroyed inside
  // ~io_context release their leases through here): a client created now would live on it.
  if (core_->shut_down.load(std::memory_order_acquire)) return nullptr;
  std::unique_ptr<Client>& c = clients_[worker];
  if (!c) {
    c.reset(new Client(*this, *core_->contexts[worker]));
    c->core_->outcomes = &shared_->outcomes[worker];
  }
  return c.get();
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

std::string Registry::render_metrics() const {
  // Targets that differ only in credentials or database share a label set: their figures are summed.
  struct Figures {
    uint64_t by_result[5] = {};
    std::map<std::string, std::pair<bool, uint64_t>> nodes;  // node -> (up, circuit opens)
  };
  std::map<std::string, Figures> by_label;
  std::vector<std::shared_ptr<Target>> live;
  {
    std::lock_guard<std::mutex> lock(core_->mutex);
    for (auto& [key, weak] : core_->targets) {
      if (auto t = weak.lock()) live.push_back(std::move(t));
    }
  }
  const int64_t now = now_ns();
  for (const auto& t : live) {
    const TargetShared& sh = *t->shared_;
    std::string label = "target=\"" + base::json_escape(sh.options.describe()) + "\",mode=\"" +
                        (sh.options.cluster ? "cluster" : "standalone") + "\"";
    Figures& f = by_label[label];
    for (size_t w = 0; w < sh.workers; ++w) {
      for (int r = 0; r < 5; ++r)
        f.by_result[r] += sh.outcomes[w].by_result[r].load(std::memory_order_relaxed);
    }
    std::lock_guard<std::mutex> lock(t->shared_->mutex);
    for (const auto& [node, b] : sh.breakers) {
      auto& n = f.nodes[node];
      n.first = n.first || !b->is_open(now);
      n.second += b->opens.load(std::memory_order_relaxed);
    }
  }
  std::string out;
  if (by_label.empty()) return out;
  out +=
      "# HELP portico_redis_calls_total Redis calls of the rate-limit plugins, by outcome.\n"
      "# TYPE portico_redis_calls_total counter\n";
  for (const auto& [label, f] : by_label) {
    for (int r = 0; r < 5; ++r) {
      out += "portico_redis_calls_total{" + label + ",result=\"" + result_name(static_cast<Result>(r)) +
             "\"} " + std::to_string(f.by_result[r]) + "\n";
    }
  }
  out +=
      "# HELP portico_redis_node_up 1 while the node's circuit breaker is closed (calls are sent), 0 while "
      "open.\n# TYPE portico_redis_node_up gauge\n";
  for (const auto& [label, f] : by_label) {
    for (const auto& [node, n] : f.nodes) {
      out += "portico_redis_node_up{" + label + ",node=\"" + base::json_escape(node) + "\"} " +
             (n.first ? "1" : "0") + "\n";
    }
  }
  out +=
      "# HELP portico_redis_circuit_opens_total Times a node's circuit breaker opened (one per outage).\n"
      "# TYPE portico_redis_circuit_opens_total counter\n";
  for (const auto& [label, f] : by_label) {
    for (const auto& [node, n] : f.nodes) {
      out += "portico_redis_circuit_opens_total{" + label + ",node=\"" + base::json_escape(node) + "\"} " +
             std::to_string(n.second) + "\n";
    }
  }
  return out;
}

void Registry::shutdown() {
  std::vector<std::shared_ptr<Target>> live;
  {
    std::lock_guard<std::mutex> lock(core_->mutex);
    if (core_->shut_down.load(std::memory_order_relaxed)) return;
    core_->shut_down.store(true, std::memory_order_release);
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
