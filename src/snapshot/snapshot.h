// A Snapshot is everything a worker needs to serve requests under one config generation: the validated
// config, the compiled router, and the upstream runtimes (resolved nodes, shared health, one balancer per
// worker), in one or two layers (see Snapshot). It is built off the workers (by the config applier or the
// data plane's sync thread), never modified after publication, and freed when the last request using it
// finishes. Workers only read it, except that worker `i` uses the balancers at index `i` — each balancer has
// exactly one thread, whichever snapshots share it.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"
#include "router/router.h"
#include "tls/client_context.h"
#include "upstream/balancer.h"

namespace portico::status {
class Metrics;
}
namespace portico::redis {
class Registry;
}
namespace portico::plugins {
struct Chain;
struct GlobalRules;
class ConsumerIndex;
struct LimitStores;
}  // namespace portico::plugins
namespace portico::tls {
class CertStore;
}
namespace portico::upstream {
class HealthRegistry;
struct ProbeTarget;
}  // namespace portico::upstream

namespace portico::snapshot {

struct UpstreamRuntime {
  std::string key;  // upstream id, or "route:<id>" / "service:<id>" for inline upstreams
  // Its own copy: a later layer may reuse this runtime (and its balancers' state) after the layer that built
  // it is gone.
  config::Upstream spec;
  std::vector<upstream::NodeRuntime> nodes;
  bool has_active_check = false;
  int tries = 1;                // 1 + effective retries
  router::RequestVar hash_key;  // chash: the variable whose value is hashed (hash_on + key)
  std::vector<std::unique_ptr<upstream::Balancer>> per_worker;
  // scheme https: what the TLS context was compiled from (tls.client_cert_id resolved, the process CA
  // bundle), so a runtime is reused only while its material is unchanged, and the context itself. `tls` is
  // null when the scheme is http, or when the material did not load (logged; every connect then fails: a
  // TLS upstream never falls back to plain HTTP).
  bool https = false;  // https or grpcs: connections are TLS
  bool grpc = false;   // grpc or grpcs: requests go over HTTP/2 (proxy/h2_upstream.h, docs/grpc.md)
  tls::ClientTlsSpec tls_spec;
  std::shared_ptr<const tls::ClientContext> tls;
  // The active checks' context when they are of type https (null otherwise): the same material, verifying
  // as checks.active.https_verify_certificate says.
  std::shared_ptr<const tls::ClientContext> probe_tls;
};

// The upstreams a route's traffic-split may send a request to, indexed by the plugin's numbering of its
// weighted upstreams (plugins/traffic_split.h): an upstream_id's runtime (the layer's runtime of that
// upstream), an inline upstream's own runtime (balancers, health checks, retries, keep-alive pool like a
// route's), or the route's own upstream. Each with the timeouts a request sent there uses: the route's, else
// that upstream's, else (an inline upstream, as APISIX sets them) 15 s, else the defaults.
struct SplitTarget {
  UpstreamRuntime* upstream = nullptr;
  config::Timeout timeout;
};
struct SplitTable {
  const void* owner = nullptr;  // the route chain's traffic-split instance (RequestContext::split_owner)
  std::vector<SplitTarget> targets;
};

struct RouteRuntime {
  const config::Route* spec = nullptr;  // points into the config of the Layer holding this runtime
  UpstreamRuntime* upstream = nullptr;  // owned by that Layer (possibly together with other layers)
  config::Timeout timeout;              // route's, else upstream's, else defaults
  int64_t max_body_size = -1;           // -1 = listener default
  uint32_t metrics_slot = 0;
  // For logs and metrics (APISIX's matched_host, prefer_name): the hosts the route matches on (its own, else
  // its service's) and its service's name, both in the Layer's config.
  std::span<const std::string> hosts;
  std::string_view service_name;
  bool websocket = false;  // enable_websocket on the route or its service: Upgrade requests tunnel
  // Its plugins (service < plugin config < route merged, disabled ones dropped), by priority; null when none
  // run, so a route without plugins costs nothing per request.
  std::shared_ptr<const plugins::Chain> plugins;
  // Set when its plugins include traffic-split; owned by the Layer (one per route: the route's own upstream
  // and timeouts differ between routes sharing a service's traffic-split).
  const SplitTable* split = nullptr;

  // Where a request goes: the weighted upstream traffic-split chose, else the route's own upstream.
  SplitTarget target_for(const void* split_owner, int split_choice) const {
    if (split != nullptr && split_owner == split->owner && split_choice >= 0 &&
        static_cast<size_t>(split_choice) < split->targets.size()) {
      return split->targets[static_cast<size_t>(split_choice)];
    }
    return SplitTarget{upstream, timeout};
  }
};

// What one build makes of one Config: the router over its routes and a runtime per route. Immutable once
// built; shared by every snapshot that uses it.
struct Layer {
  config::Config config;
  std::unique_ptr<router::Router> router;
  std::vector<RouteRuntime> routes;  // parallel to config.routes
  // Every upstream runtime its routes use; a runtime may also be held by other layers (see UpstreamReuse).
  std::vector<std::shared_ptr<UpstreamRuntime>> upstreams;
  std::vector<std::unique_ptr<SplitTable>> split_tables;  // RouteRuntime::split
  bool has_active_checks = false;                         // some upstream here has active health checks
};

// A generation of the config as workers see it. A full build makes one layer (`base`); applying a delta
// (SnapshotBuilder) keeps the base and puts the routes changed since into a small `overlay`, marking the
// base routes it replaces or that were removed in `overridden`, so a change costs the size of the change,
// not of the config. Matching consults both layers and merges (see match()).
struct Snapshot {
  uint64_t generation = 0;
  std::string hash;        // content hash of the source document
  std::string source;      // "file", "etcd", "control_plane", "cache", "s3"
  size_t route_count = 0;  // routes of the config, enabled or not
  std::shared_ptr<const Layer> base;
  std::shared_ptr<const Layer> overlay;  // null when nothing changed since the base was built
  std::vector<uint64_t> overridden;  // bit i: base route i is replaced by the overlay or removed; empty: none
  // The plugins of the global rules (null: none run) and the consumers with their credentials. Built apart
  // from the layers: a consumer or global rule change rebuilds only these.
  std::shared_ptr<const plugins::GlobalRules> global_rules;
  std::shared_ptr<const plugins::ConsumerIndex> consumers;
  // The server certificates of `ssls` (tls/cert_store.h), compiled with the snapshot; rebuilt only when ssls
  // change. Never null once built by build() or SnapshotBuilder.
  std::shared_ptr<const tls::CertStore> tls;

  // The route serving `request`, or null. With an overlay, the better of the two layers' matches wins; on a
  // full tie (same priority, path and host specificity) the route whose id sorts first, which is the route
  // listed first in the id-ordered documents deltas apply to. Any thread.
  const RouteRuntime* match(const router::MatchRequest& request) const;
};

struct BuildContext {
  size_t workers = 1;
  upstream::HealthRegistry* health = nullptr;
  status::Metrics* metrics = nullptr;
  redis::Registry* redis = nullptr;
  plugins::LimitStores* limits = nullptr;  // BuildEnv::limits
  // --upstream-ca-file: the CA bundle that verifies upstream certificates (tls.verify, https checks);
  // empty: OpenSSL's default trust store.
  std::string upstream_ca_file;
};

// An existing runtime for upstream `key` whose spec equals `spec`, to use instead of building a new one
// (keeps balancer state and saves the work); null to build one.
using UpstreamReuse =
    std::function<std::shared_ptr<UpstreamRuntime>(const std::string& key, const config::Upstream& spec)>;

// Builds a layer from a validated config. Resolves node host names (blocking DNS: call off the workers); a
// name that does not resolve leaves that node unusable (connects fail, passive checks apply) and is logged,
// it does not reject the config. Returns null and sets `error` only on internal failures.
std::shared_ptr<const Layer> build_layer(config::Config config, const BuildContext& ctx,
                                         const UpstreamReuse& reuse, std::string* error);

// The global rules' compiled plugins (null when none run) and the consumer index of a validated config.
// Problems that leave a credential out (conflicts) are logged; a plugin that cannot be built fails the build
// (null with `error`).
std::shared_ptr<const plugins::GlobalRules> build_global_rules(const std::vector<config::GlobalRule>& rules,
                                                               const BuildContext& ctx, std::string* error);
std::shared_ptr<const plugins::ConsumerIndex> build_consumers(
    const std::vector<config::Consumer>& consumers, const std::vector<config::Credential>& credentials,
    const BuildContext& ctx);

// The certificate store of `ssls`; problems (a pair OpenSSL refuses) are logged and leave that ssl out. An
// ssl unchanged since `previous` (the store being replaced) keeps its compiled entry.
std::shared_ptr<const tls::CertStore> build_tls(const std::vector<config::Ssl>& ssls,
                                                const tls::CertStore* previous = nullptr);

// A snapshot of one layer built from a validated config.
std::shared_ptr<const Snapshot> build(config::Config config, std::string hash, std::string source,
                                      uint64_t generation, const BuildContext& ctx, std::string* error);

// The active-check targets of a snapshot, for upstream::ActiveHealthChecker::set_targets.
std::vector<upstream::ProbeTarget> probe_targets(const Snapshot& snapshot);

}  // namespace portico::snapshot
