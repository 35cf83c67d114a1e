// Load balancers: pick a node of one upstream for one request. A Balancer instance belongs to exactly one
// worker thread (the snapshot builds one per worker per upstream), so it keeps its state (round-robin
// position, in-flight counts, latency averages) without locks. Node health is read from the shared
// NodeHealth flags (relaxed atomics written by the health checker and by passive reports).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "config/model.h"
#include "upstream/health.h"

namespace portico::upstream {

// A node as the runtime sees it: its spec, resolved address and shared health flags. Owned by the snapshot's
// upstream runtime; balancers hold a span over the vector.
struct NodeRuntime {
  config::Node spec;
  std::string address;    // resolved IP literal used to connect ("10.0.0.5", "::1")
  std::string host_port;  // "host:port" as configured (":port" omitted for 80), for pass_host = node
  std::string pool_key;   // "ip:port": identifies the keep-alive pool of this node
  std::shared_ptr<NodeHealth> health;
};

class Balancer {
 public:
  virtual ~Balancer() = default;

  // Returns the index of the node to use, or -1 if none is left. `exclude` lists nodes already tried for this
  // request (retries go to another node). Healthy nodes of the highest priority tier are preferred; if every
  // node is unhealthy the balancer picks among all of them (fail open), as APISIX does. `hash_key` is the
  // consistent-hash key (chash only; may be empty: then it behaves like round robin).
  virtual int pick(std::string_view hash_key, std::span<const int> exclude) = 0;

  // Bracket every request sent to a picked node (least_conn and ewma use them; others ignore them).
  virtual void on_request_start(int /*node*/) {}
  virtual void on_request_end(int /*node*/, double /*latency_seconds*/, bool /*failed*/) {}
  // Whether on_request_end reads its latency (ewma): the caller reads the clock around the try only then.
  virtual bool uses_latency() const { return false; }
};

// Creates the balancer for `spec.type` over `nodes` (which must outlive it).
// Same as BalancerFactory(spec, nodes).create().
std::unique_ptr<Balancer> make_balancer(const config::Upstream& spec, std::span<const NodeRuntime> nodes);

namespace detail {
struct BalancerShared;
}

// Builds the immutable per-upstream state once (priority tiers, round-robin schedules, the consistent-hash
// rings, which can be large) and then cheap per-worker balancers that share it through a shared_ptr: use it
// instead of calling make_balancer once per worker. Copyable; `nodes` must outlive the factory and every
// balancer it created.
class BalancerFactory {
 public:
  BalancerFactory(const config::Upstream& spec, std::span<const NodeRuntime> nodes);
  // Any thread. Each call returns an independent balancer; `worker` (0, 1, ...) only staggers the starting
  // point of round robin and seeds ewma's random choices, so that workers do not move in lockstep.
  std::unique_ptr<Balancer> create(unsigned worker = 0) const;

 private:
  std::span<const NodeRuntime> nodes_;
  std::shared_ptr<const detail::BalancerShared> shared_;
};

}  // namespace portico::upstream
