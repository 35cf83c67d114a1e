#include "upstream/health.h"

#include <algorithm>

#include "base/log.h"
#include "upstream/clock.h"

namespace portico::upstream {
namespace {

constexpr int64_t kCooldownNs =
    std::chrono::duration_cast<std::chrono::nanoseconds>(NodeHealth::kPassiveCooldown).count();

// What one report means for the node.
enum class Outcome { success, http_failure, tcp_failure, timeout, neutral };

// Bit offsets of the per-kind 8-bit counters packed in failures_.
constexpr unsigned kHttpShift = 0;
constexpr unsigned kTcpShift = 8;
constexpr unsigned kTimeoutShift = 16;

bool contains(const std::vector<int>& statuses, int status) {
  return std::find(statuses.begin(), statuses.end(), status) != statuses.end();
}

// `tcp_only`: the check looks at connections only, so any HTTP status is a success.
Outcome classify(int status, bool tcp_only, const std::vector<int>& healthy,
                 const std::vector<int>& unhealthy) {
  if (status == 0) return Outcome::tcp_failure;
  if (status < 0) return Outcome::timeout;
  if (tcp_only) return Outcome::success;
  if (contains(healthy, status)) return Outcome::success;
  if (contains(unhealthy, status)) return Outcome::http_failure;
  return Outcome::neutral;  // neither list: ignored, as lua-resty-healthcheck does
}

struct Thresholds {
  int http = 0;
  int tcp = 0;
  int timeout = 0;
};

// The counter's shift and threshold for a failure kind (threshold <= 0: this kind is not counted).
std::pair<unsigned, int> counter_of(Outcome o, const Thresholds& t) {
  switch (o) {
    case Outcome::http_failure:
      return {kHttpShift, t.http};
    case Outcome::tcp_failure:
      return {kTcpShift, t.tcp};
    case Outcome::timeout:
      return {kTimeoutShift, t.timeout};
    default:
      return {0, 0};
  }
}

// Increments the 8-bit counter at `shift` (saturating at 255) and returns its new value.
uint32_t bump(std::atomic<uint32_t>& counters, unsigned shift) {
  uint32_t cur = counters.load(std::memory_order_relaxed);
  for (;;) {
    uint32_t count = (cur >> shift) & 0xff;
    if (count == 0xff) return count;
    if (counters.compare_exchange_weak(cur, cur + (1u << shift), std::memory_order_relaxed)) return count + 1;
  }
}

const char* state_name(bool healthy) {
  return healthy ? "healthy" : "unhealthy";
}

}  // namespace

bool NodeHealth::healthy_or_retry(bool has_active_check) const {
  if (healthy_.load(std::memory_order_acquire)) return true;
  if (has_active_check) return false;
  return clock::now_ns() - down_since_ns_.load(std::memory_order_relaxed) >= kCooldownNs;
}

void NodeHealth::set_healthy(bool healthy) {
  if (!healthy) {
    if (!healthy_.load(std::memory_order_acquire)) return;  // already down: keep the cool-down running
    // Written before the flag so that a reader seeing "down" never pairs it with an old down_since.
    down_since_ns_.store(clock::now_ns(), std::memory_order_relaxed);
  }
  bool expected = !healthy;
  if (!healthy_.compare_exchange_strong(expected, healthy, std::memory_order_acq_rel)) return;
  failures_.store(0, std::memory_order_relaxed);
  successes_.store(0, std::memory_order_relaxed);
  transitions_.fetch_add(1, std::memory_order_relaxed);
  generation_.fetch_add(1, std::memory_order_release);
}

void NodeHealth::report_passive(const config::PassiveCheck& spec, int status, bool has_active_check) {
  Outcome o = classify(status, spec.type == "tcp", spec.healthy.http_statuses, spec.unhealthy.http_statuses);
  if (o == Outcome::neutral) return;
  bool is_healthy = healthy_.load(std::memory_order_acquire);

  if (o == Outcome::success) {
    // The common case (healthy node, healthy answer) reads one atomic and writes nothing.
    if (failures_.load(std::memory_order_relaxed) != 0) failures_.store(0, std::memory_order_relaxed);
    if (is_healthy) return;
    uint32_t n = successes_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (spec.healthy.successes > 0 && n >= static_cast<uint32_t>(spec.healthy.successes)) {
      uint64_t before = transitions();
      set_healthy(true);
      if (transitions() != before) {
        PORTICO_LOG(info, "health: upstream %s node %s is now %s (passive)", upstream_key_.c_str(),
                    node_key_.c_str(), state_name(true));
      }
    }
    return;
  }

  auto [shift, threshold] =
      counter_of(o, {spec.unhealthy.http_failures, spec.unhealthy.tcp_failures, spec.unhealthy.timeouts});
  if (threshold <= 0) return;  // this kind of failure is not counted
  if (!is_healthy) {
    if (successes_.load(std::memory_order_relaxed) != 0) successes_.store(0, std::memory_order_relaxed);
    if (has_active_check) return;
    // The node was down and is being retried after its cool-down: one failure sends it back down for another
    // cool-down. Failures during the cool-down (requests already in flight, fail-open traffic) do not extend
    // it.
    int64_t now = clock::now_ns();
    int64_t since = down_since_ns_.load(std::memory_order_relaxed);
    if (now - since >= kCooldownNs &&
        down_since_ns_.compare_exchange_strong(since, now, std::memory_order_relaxed)) {
      generation_.fetch_add(1, std::memory_order_release);
      PORTICO_LOG(debug, "health: upstream %s node %s failed its retry, cooling down again",
                  upstream_key_.c_str(), node_key_.c_str());
    }
    return;
  }
  if (bump(failures_, shift) >= static_cast<uint32_t>(std::min(threshold, 0xff))) {
    uint64_t before = transitions();
    set_healthy(false);
    if (transitions() != before) {
      PORTICO_LOG(info, "health: upstream %s node %s is now %s (passive)", upstream_key_.c_str(),
                  node_key_.c_str(), state_name(false));
    }
  }
}

void NodeHealth::report_active(const config::ActiveCheck& spec, int status) {
  Outcome o = classify(status, spec.type == "tcp", spec.healthy.http_statuses, spec.unhealthy.http_statuses);
  if (o == Outcome::neutral) return;

  if (o == Outcome::success) {
    if (failures_.load(std::memory_order_relaxed) != 0) failures_.store(0, std::memory_order_relaxed);
    if (healthy_.load(std::memory_order_acquire)) return;
    uint32_t n = successes_.fetch_add(1, std::memory_order_relaxed) + 1;
    if (spec.healthy.successes > 0 && n >= static_cast<uint32_t>(spec.healthy.successes)) set_healthy(true);
    return;
  }

  if (successes_.load(std::memory_order_relaxed) != 0) successes_.store(0, std::memory_order_relaxed);
  if (!healthy_.load(std::memory_order_acquire)) return;
  auto [shift, threshold] =
      counter_of(o, {spec.unhealthy.http_failures, spec.unhealthy.tcp_failures, spec.unhealthy.timeouts});
  if (threshold <= 0) return;
  if (bump(failures_, shift) >= static_cast<uint32_t>(std::min(threshold, 0xff))) set_healthy(false);
}

std::shared_ptr<NodeHealth> HealthRegistry::get(const std::string& upstream_key,
                                                const std::string& node_key) {
  std::string key;
  key.reserve(upstream_key.size() + 1 + node_key.size());
  key.append(upstream_key).push_back('\0');
  key.append(node_key);
  std::lock_guard lock(mu_);
  auto& slot = entries_[key];
  if (!slot) slot = std::make_shared<NodeHealth>(upstream_key, node_key);
  return slot;
}

void HealthRegistry::collect_garbage() {
  std::lock_guard lock(mu_);
  std::erase_if(entries_, [](const auto& kv) { return kv.second.use_count() == 1; });
}

std::vector<HealthRegistry::Entry> HealthRegistry::list() const {
  std::vector<Entry> out;
  {
    std::lock_guard lock(mu_);
    out.reserve(entries_.size());
    for (const auto& [key, health] : entries_) {
      out.push_back({health->upstream_key(), health->node_key(), health->healthy()});
    }
  }
  std::sort(out.begin(), out.end(), [](const Entry& a, const Entry& b) {
    return a.upstream_key != b.upstream_key ? a.upstream_key < b.upstream_key : a.node_key < b.node_key;
  });
  return out;
}

}  // namespace portico::upstream
