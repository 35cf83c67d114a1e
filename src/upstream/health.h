// Node health shared between the workers (readers), the passive reporter (workers, on failures) and the
// active checker (its own thread). The state survives config reloads: the registry hands the same NodeHealth
// to every snapshot that has the same upstream id and node address.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "config/model.h"

namespace portico::upstream {

// Health of one node of one upstream. All fields are atomics; any thread may call any method.
class NodeHealth {
 public:
  NodeHealth() = default;
  // The labels only name the node in log lines (HealthRegistry sets them).
  NodeHealth(std::string upstream_key, std::string node_key)
      : upstream_key_(std::move(upstream_key)), node_key_(std::move(node_key)) {}

  bool healthy() const { return healthy_.load(std::memory_order_relaxed); }

  // Passive checks, called by workers after each exchange with the node (only when the upstream has
  // `checks.passive`). `status` = 0 for a connection failure, -1 for a timeout.
  void report_passive(const config::PassiveCheck& spec, int status, bool has_active_check);

  // Active checks, called by the checker thread with one probe's outcome (same encoding of `status`).
  void report_active(const config::ActiveCheck& spec, int status);

  // Without active checks a passively ejected node would never receive traffic again; it is given one more
  // chance after this cool-down (as nginx's fail_timeout). Checked by readers in healthy_or_retry().
  static constexpr std::chrono::seconds kPassiveCooldown{10};
  // healthy(), or true once the passive cool-down has passed for a node without active checks.
  bool healthy_or_retry(bool has_active_check) const;

  void set_healthy(bool healthy);  // state change: logged by the caller, counted here
  uint64_t transitions() const { return transitions_.load(std::memory_order_relaxed); }

  // Monotonic time (upstream/clock.h, nanoseconds) of the last ejection or cool-down restart. Balancers use
  // it to know when healthy_or_retry() will flip without any event.
  int64_t down_since_ns() const { return down_since_ns_.load(std::memory_order_relaxed); }
  // Process-wide counter bumped (release) after any change that can alter some node's healthy_or_retry():
  // transitions and cool-down restarts. Balancers cache node eligibility and re-read it only when this moves,
  // so the request path does not scan every node's flags.
  static uint64_t generation() { return generation_.load(std::memory_order_acquire); }

  const std::string& upstream_key() const { return upstream_key_; }
  const std::string& node_key() const { return node_key_; }

 private:
  static inline std::atomic<uint64_t> generation_{0};

  const std::string upstream_key_;
  const std::string node_key_;
  std::atomic<bool> healthy_{true};
  // Consecutive failures, one saturating 8-bit counter per kind: bits 0-7 http, 8-15 tcp, 16-23 timeouts.
  std::atomic<uint32_t> failures_{0};
  std::atomic<uint32_t> successes_{0};  // consecutive successes while unhealthy
  std::atomic<int64_t> down_since_ns_{0};
  std::atomic<uint64_t> transitions_{0};
};

// Process-wide map (upstream key, node address) -> NodeHealth. Used only when building snapshots and by the
// checker and metrics, never on the request path; guarded by a mutex.
class HealthRegistry {
 public:
  std::shared_ptr<NodeHealth> get(const std::string& upstream_key, const std::string& node_key);
  // Forgets entries no longer referenced by any snapshot.
  void collect_garbage();

  struct Entry {
    std::string upstream_key;
    std::string node_key;
    bool healthy;
  };
  std::vector<Entry> list() const;

 private:
  mutable std::mutex mu_;
  std::unordered_map<std::string, std::shared_ptr<NodeHealth>> entries_;  // key: upstream_key + '\0' + node
};

}  // namespace portico::upstream
