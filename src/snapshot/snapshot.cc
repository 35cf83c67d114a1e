#include "snapshot/snapshot.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <unordered_map>

#include "base/log.h"
#include "status/metrics.h"
#include "upstream/health.h"
#include "upstream/health_checker.h"

namespace portico::snapshot {
namespace {

bool is_ip_literal(const std::string& host) {
  unsigned char buf[16];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// Blocking resolution, cached per build so one name is looked up once however many nodes use it.
std::string resolve(const std::string& host, std::unordered_map<std::string, std::string>& cache) {
  if (is_ip_literal(host)) return host;
  auto it = cache.find(host);
  if (it != cache.end()) return it->second;
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  std::string address;
  if (getaddrinfo(host.c_str(), nullptr, &hints, &res) == 0 && res) {
    char buf[INET6_ADDRSTRLEN] = {0};
    if (res->ai_family == AF_INET) {
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(res->ai_addr)->sin_addr, buf, sizeof buf);
    } else if (res->ai_family == AF_INET6) {
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(res->ai_addr)->sin6_addr, buf, sizeof buf);
    }
    address = buf;
    freeaddrinfo(res);
  } else {
    PORTICO_LOG(warn, "upstream node host '%s' does not resolve; the node will fail to connect",
                host.c_str());
  }
  cache.emplace(host, address);
  return address;
}

std::string host_port(const config::Node& node) {
  bool v6 = node.host.find(':') != std::string::npos;
  std::string out = v6 ? "[" + node.host + "]" : node.host;
  if (node.port != 80) out += ":" + std::to_string(node.port);
  return out;
}

std::unique_ptr<UpstreamRuntime> make_upstream(const config::Upstream& spec, std::string key,
                                               const BuildContext& ctx,
                                               std::unordered_map<std::string, std::string>& dns) {
  auto up = std::make_unique<UpstreamRuntime>();
  up->key = std::move(key);
  up->spec = &spec;
  up->has_active_check = spec.checks && spec.checks->active;
  up->nodes.reserve(spec.nodes.size());
  for (const config::Node& node : spec.nodes) {
    upstream::NodeRuntime rt;
    rt.spec = node;
    rt.address = resolve(node.host, dns);
    rt.host_port = host_port(node);
    bool v6 = rt.address.find(':') != std::string::npos;
    rt.pool_key = (v6 ? "[" + rt.address + "]" : rt.address) + ":" + std::to_string(node.port);
    rt.health = ctx.health->get(up->key, rt.pool_key);
    up->nodes.push_back(std::move(rt));
  }
  if (spec.type == config::LbType::chash) {
    switch (spec.hash_on) {
      case config::HashOn::vars:
        up->hash_key = router::RequestVar(spec.key);
        break;
      case config::HashOn::header:
        up->hash_key = router::RequestVar("http_" + spec.key);
        break;
      case config::HashOn::cookie:
        up->hash_key = router::RequestVar("cookie_" + spec.key);
        break;
      default:
        break;  // consumer / vars_combinations: not available yet, so the key is missing (round robin)
    }
  }
  int retries = spec.retries >= 0 ? spec.retries : static_cast<int>(spec.nodes.size()) - 1;
  up->tries = 1 + std::max(0, retries);
  // Immutable balancer state (a chash ring) is built once and shared; each worker gets its own balancer.
  upstream::BalancerFactory factory(spec, up->nodes);
  for (size_t w = 0; w < ctx.workers; ++w) up->per_worker.push_back(factory.create(static_cast<unsigned>(w)));
  return up;
}

}  // namespace

std::shared_ptr<const Snapshot> build(config::Config config, std::string hash, std::string source,
                                      uint64_t generation, const BuildContext& ctx, std::string* error) {
  auto snap = std::make_shared<Snapshot>();
  snap->generation = generation;
  snap->hash = std::move(hash);
  snap->source = std::move(source);
  snap->config = std::move(config);
  const config::Config& cfg = snap->config;

  snap->router = router::Router::build(cfg, error);
  if (!snap->router) return nullptr;

  std::unordered_map<std::string, std::string> dns;
  std::unordered_map<std::string, UpstreamRuntime*> by_id;
  for (const config::Upstream& u : cfg.upstreams) {
    snap->upstreams.push_back(make_upstream(u, u.id, ctx, dns));
    by_id.emplace(u.id, snap->upstreams.back().get());
  }
  std::unordered_map<std::string, UpstreamRuntime*> by_service;
  for (const config::Service& s : cfg.services) {
    UpstreamRuntime* up = nullptr;
    if (s.upstream) {
      snap->upstreams.push_back(make_upstream(*s.upstream, "service:" + s.id, ctx, dns));
      up = snap->upstreams.back().get();
    } else if (!s.upstream_id.empty()) {
      auto it = by_id.find(s.upstream_id);
      if (it != by_id.end()) up = it->second;
    }
    by_service.emplace(s.id, up);
  }

  snap->routes.resize(cfg.routes.size());
  for (size_t i = 0; i < cfg.routes.size(); ++i) {
    const config::Route& r = cfg.routes[i];
    RouteRuntime& rt = snap->routes[i];
    rt.spec = &r;
    if (r.upstream) {
      snap->upstreams.push_back(make_upstream(*r.upstream, "route:" + r.id, ctx, dns));
      rt.upstream = snap->upstreams.back().get();
    } else if (!r.upstream_id.empty()) {
      auto it = by_id.find(r.upstream_id);
      if (it != by_id.end()) rt.upstream = it->second;
    } else if (!r.service_id.empty()) {
      auto it = by_service.find(r.service_id);
      if (it != by_service.end()) rt.upstream = it->second;
    }
    if (!rt.upstream) {
      if (error) *error = "route " + r.id + " has no upstream after validation";
      return nullptr;
    }
    if (r.timeout) {
      rt.timeout = *r.timeout;
    } else if (rt.upstream->spec->timeout) {
      rt.timeout = *rt.upstream->spec->timeout;
    }
    rt.max_body_size = r.max_body_size;
    rt.websocket = r.enable_websocket;
    if (!r.service_id.empty()) {
      for (const config::Service& s : cfg.services) {
        if (s.id == r.service_id && s.enable_websocket) rt.websocket = true;
      }
    }
    rt.metrics_slot = ctx.metrics ? ctx.metrics->route_slot(r.id) : 0;
  }
  return snap;
}

std::vector<upstream::ProbeTarget> probe_targets(const Snapshot& snapshot) {
  std::vector<upstream::ProbeTarget> targets;
  for (const auto& up : snapshot.upstreams) {
    if (!up->has_active_check) continue;
    const config::ActiveCheck& spec = *up->spec->checks->active;
    for (const upstream::NodeRuntime& node : up->nodes) {
      if (node.address.empty()) continue;
      upstream::ProbeTarget t;
      t.upstream_key = up->key;
      t.spec = spec;
      t.address = node.address;
      t.port = spec.port > 0 ? static_cast<uint16_t>(spec.port) : node.spec.port;
      t.host_header = spec.host.empty() ? node.host_port : spec.host;
      t.health = node.health;
      targets.push_back(std::move(t));
    }
  }
  return targets;
}

}  // namespace portico::snapshot
