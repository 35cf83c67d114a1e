// A Snapshot is everything a worker needs to serve requests under one config generation: the validated
// config, the compiled router, and the upstream runtimes (resolved nodes, shared health, one balancer per
// worker). It is built off the workers (by the config applier thread), never modified after publication, and
// freed when the last request using it finishes. Workers only read it, except that worker `i` uses the
// balancers at index `i` — each balancer has exactly one thread.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/model.h"
#include "router/router.h"
#include "upstream/balancer.h"

namespace portico::status {
class Metrics;
}
namespace portico::upstream {
class HealthRegistry;
struct ProbeTarget;
}  // namespace portico::upstream

namespace portico::snapshot {

struct UpstreamRuntime {
  std::string key;  // upstream id, or "route:<id>" / "service:<id>" for inline upstreams
  const config::Upstream* spec = nullptr;  // points into Snapshot::config
  std::vector<upstream::NodeRuntime> nodes;
  bool has_active_check = false;
  int tries = 1;                // 1 + effective retries
  router::RequestVar hash_key;  // chash: the variable whose value is hashed (hash_on + key)
  std::vector<std::unique_ptr<upstream::Balancer>> per_worker;
};

struct RouteRuntime {
  const config::Route* spec = nullptr;
  UpstreamRuntime* upstream = nullptr;
  config::Timeout timeout;     // route's, else upstream's, else defaults
  int64_t max_body_size = -1;  // -1 = listener default
  uint32_t metrics_slot = 0;
  bool websocket = false;  // enable_websocket on the route or its service: Upgrade requests tunnel
};

struct Snapshot {
  uint64_t generation = 0;
  std::string hash;    // content hash of the source document
  std::string source;  // "file", later "control_plane", "cache", "s3"
  config::Config config;
  std::unique_ptr<router::Router> router;
  std::vector<RouteRuntime> routes;  // parallel to config.routes
  std::vector<std::unique_ptr<UpstreamRuntime>> upstreams;
};

struct BuildContext {
  size_t workers = 1;
  upstream::HealthRegistry* health = nullptr;
  status::Metrics* metrics = nullptr;
};

// Builds a snapshot from a validated config. Resolves node host names (blocking DNS: call off the workers);
// a name that does not resolve leaves that node unusable (connects fail, passive checks apply) and is
// logged, it does not reject the config. Returns null and sets `error` only on internal failures.
std::shared_ptr<const Snapshot> build(config::Config config, std::string hash, std::string source,
                                      uint64_t generation, const BuildContext& ctx, std::string* error);

// The active-check targets of a snapshot, for upstream::ActiveHealthChecker::set_targets.
std::vector<upstream::ProbeTarget> probe_targets(const Snapshot& snapshot);

}  // namespace portico::snapshot
