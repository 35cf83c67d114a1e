#include "snapshot/snapshot.h"

#include <arpa/inet.h>
#include <netdb.h>

#include <nlohmann/json.hpp>

#include <unordered_map>
#include <unordered_set>

#include "base/log.h"
#include "config/validate.h"
#include "plugins/consumers.h"
#include "plugins/pipeline.h"
#include "plugins/traffic_split.h"
#include "status/metrics.h"
#include "tls/cert_store.h"
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

// The TLS material of an https (or grpcs) upstream: its own client certificate or the ssl its client_cert_id
// names.
tls::ClientTlsSpec tls_spec_of(const config::Upstream& spec, const BuildContext& ctx,
                               const std::vector<config::Ssl>& ssls) {
  tls::ClientTlsSpec t;
  if (spec.scheme != "https" && spec.scheme != "grpcs") return t;
  t.ca_file = ctx.upstream_ca_file;
  if (!spec.tls) return t;
  t.verify = spec.tls->verify;
  t.cert_pem = spec.tls->client_cert;
  t.key_pem = spec.tls->client_key;
  if (!spec.tls->client_cert_id.empty()) {
    for (const config::Ssl& ssl : ssls) {
      if (ssl.id == spec.tls->client_cert_id && ssl.type == config::SslType::client) {
        t.cert_pem = ssl.cert;
        t.key_pem = ssl.key;
      }
    }
  }
  return t;
}

std::shared_ptr<const tls::ClientContext> build_tls(const std::string& key, tls::ClientTlsSpec spec,
                                                    const char* what) {
  std::string error;
  auto ctx = tls::ClientContext::build(spec, &error);
  if (!ctx) {
    PORTICO_LOG(error, "upstream %s: cannot build the TLS context of its %s: %s; its connections will fail",
                key.c_str(), what, error.c_str());
  }
  return ctx;
}

void make_tls(UpstreamRuntime& up, const config::Upstream& spec, const BuildContext& ctx,
              const std::vector<config::Ssl>& ssls) {
  up.https = spec.scheme == "https" || spec.scheme == "grpcs";
  up.grpc = spec.scheme == "grpc" || spec.scheme == "grpcs";
  up.tls_spec = tls_spec_of(spec, ctx, ssls);
  if (up.https) {
    if (spec.tls && !spec.tls->client_cert_id.empty() && up.tls_spec.cert_pem.empty()) {
      PORTICO_LOG(error, "upstream %s: tls.client_cert_id \"%s\" names no ssl of type client", up.key.c_str(),
                  spec.tls->client_cert_id.c_str());
    } else {
      up.tls = build_tls(up.key, up.tls_spec, "requests");
    }
  }
  if (spec.checks && spec.checks->active && spec.checks->active->type == "https") {
    tls::ClientTlsSpec probe = up.tls_spec;
    probe.ca_file = ctx.upstream_ca_file;
    probe.verify = spec.checks->active->https_verify_certificate;
    up.probe_tls = probe == up.tls_spec && up.tls ? up.tls : build_tls(up.key, probe, "health checks");
  }
}

std::shared_ptr<UpstreamRuntime> make_upstream(const config::Upstream& spec, std::string key,
                                               const BuildContext& ctx, const UpstreamReuse& reuse,
                                               std::unordered_map<std::string, std::string>& dns,
                                               const std::vector<config::Ssl>& ssls) {
  if (reuse) {
    if (auto existing = reuse(key, spec); existing && existing->tls_spec == tls_spec_of(spec, ctx, ssls))
      return existing;
  }
  auto up = std::make_shared<UpstreamRuntime>();
  up->key = std::move(key);
  up->spec = spec;
  make_tls(*up, spec, ctx, ssls);
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

const config::PluginSpec* find_plugin(const config::PluginMap* plugins, std::string_view name) {
  if (plugins == nullptr) return nullptr;
  for (const config::PluginSpec& p : *plugins) {
    if (p.name == name) return &p;
  }
  return nullptr;
}

// Seconds APISIX gives each timeout of an inline traffic-split upstream that sets none.
constexpr double kSplitInlineTimeout = 15;

}  // namespace

std::shared_ptr<const Layer> build_layer(config::Config config, const BuildContext& ctx,
                                         const UpstreamReuse& reuse, std::string* error) {
  auto layer = std::make_shared<Layer>();
  layer->config = std::move(config);
  const config::Config& cfg = layer->config;

  layer->router = router::Router::build(cfg, error);
  if (!layer->router) return nullptr;

  std::unordered_map<std::string, std::string> dns;
  std::unordered_map<std::string_view, UpstreamRuntime*> by_id;
  for (const config::Upstream& u : cfg.upstreams) {
    layer->upstreams.push_back(make_upstream(u, u.id, ctx, reuse, dns, cfg.ssls));
    by_id.emplace(u.id, layer->upstreams.back().get());
  }
  struct ServiceRuntime {
    UpstreamRuntime* upstream = nullptr;
    bool websocket = false;
    const config::PluginMap* plugins = nullptr;
    const config::Service* spec = nullptr;
  };
  std::unordered_map<std::string_view, const config::PluginMap*> plugin_configs;
  for (const config::PluginConfig& pc : cfg.plugin_configs) plugin_configs.emplace(pc.id, &pc.plugins);
  plugins::BuildEnv env;
  env.workers = ctx.workers;
  env.metrics = ctx.metrics;
  env.redis = ctx.redis;
  env.limits = ctx.limits;
  plugins::PluginCache cache;
  std::unordered_map<std::string_view, ServiceRuntime> by_service;
  for (const config::Service& s : cfg.services) {
    ServiceRuntime rt{nullptr, s.enable_websocket, &s.plugins, &s};
    if (s.upstream) {
      layer->upstreams.push_back(make_upstream(*s.upstream, "service:" + s.id, ctx, reuse, dns, cfg.ssls));
      rt.upstream = layer->upstreams.back().get();
    } else if (!s.upstream_id.empty()) {
      auto it = by_id.find(s.upstream_id);
      if (it != by_id.end()) rt.upstream = it->second;
    }
    by_service.emplace(s.id, rt);
  }

  // Inline split upstreams by key: routes sharing a service's or plugin config's traffic-split share them.
  std::unordered_map<std::string, UpstreamRuntime*> split_runtimes;
  auto build_split = [&](const config::Config&, const config::Route& r, RouteRuntime& rt,
                         const config::PluginSpec& spec, const std::string& owner_key) {
    auto table = std::make_unique<SplitTable>();
    for (const auto& p : rt.plugins->plugins) {
      if (p->name() == "traffic-split") table->owner = p.get();
    }
    const std::vector<plugins::SplitTargetSpec> specs = plugins::split_targets(*spec.conf);
    table->targets.reserve(specs.size());
    for (size_t n = 0; n < specs.size(); ++n) {
      const plugins::SplitTargetSpec& t = specs[n];
      SplitTarget target{rt.upstream, rt.timeout};
      bool inline_upstream = false;
      if (t.upstream_id != nullptr) {
        const std::string id =
            t.upstream_id->is_string() ? t.upstream_id->get<std::string>() : t.upstream_id->dump();
        auto it = by_id.find(id);
        if (it == by_id.end()) {
          if (error) *error = "route " + r.id + ": traffic-split names upstream " + id + ", not defined";
          return false;
        }
        target.upstream = it->second;
      } else if (t.upstream != nullptr) {
        inline_upstream = true;
        const std::string key = owner_key + "#traffic-split/" + std::to_string(n);
        auto it = split_runtimes.find(key);
        if (it == split_runtimes.end()) {
          config::Errors errors;
          std::optional<config::Upstream> model =
              config::validate_inline_upstream(*t.upstream, "upstream", errors);
          if (!model) {
            if (error) *error = "route " + r.id + ": traffic-split upstream: " + errors.list().front().reason;
            return false;
          }
          layer->upstreams.push_back(make_upstream(*model, key, ctx, reuse, dns, cfg.ssls));
          it = split_runtimes.emplace(key, layer->upstreams.back().get()).first;
        }
        target.upstream = it->second;
      }
      if (target.upstream != rt.upstream) {
        if (r.timeout) {
          target.timeout = *r.timeout;
        } else if (target.upstream->spec.timeout) {
          target.timeout = *target.upstream->spec.timeout;
        } else if (inline_upstream) {
          target.timeout = config::Timeout{kSplitInlineTimeout, kSplitInlineTimeout, kSplitInlineTimeout};
        } else {
          target.timeout = config::Timeout{};
        }
      }
      table->targets.push_back(target);
    }
    rt.split = table.get();
    layer->split_tables.push_back(std::move(table));
    return true;
  };

  layer->routes.resize(cfg.routes.size());
  for (size_t i = 0; i < cfg.routes.size(); ++i) {
    const config::Route& r = cfg.routes[i];
    RouteRuntime& rt = layer->routes[i];
    rt.spec = &r;
    const ServiceRuntime* service = nullptr;
    if (!r.service_id.empty()) {
      auto it = by_service.find(r.service_id);
      if (it != by_service.end()) service = &it->second;
    }
    if (r.upstream) {
      layer->upstreams.push_back(make_upstream(*r.upstream, "route:" + r.id, ctx, reuse, dns, cfg.ssls));
      rt.upstream = layer->upstreams.back().get();
    } else if (!r.upstream_id.empty()) {
      auto it = by_id.find(r.upstream_id);
      if (it != by_id.end()) rt.upstream = it->second;
    } else if (service != nullptr) {
      rt.upstream = service->upstream;
    }
    if (!rt.upstream) {
      if (error) *error = "route " + r.id + " has no upstream after validation";
      return nullptr;
    }
    if (r.timeout) {
      rt.timeout = *r.timeout;
    } else if (rt.upstream->spec.timeout) {
      rt.timeout = *rt.upstream->spec.timeout;
    }
    rt.max_body_size = r.max_body_size;
    rt.hosts = r.hosts.empty() && service != nullptr ? std::span<const std::string>(service->spec->hosts)
                                                     : std::span<const std::string>(r.hosts);
    if (service != nullptr) rt.service_name = service->spec->name;
    rt.websocket = r.enable_websocket || (service != nullptr && service->websocket);
    rt.metrics_slot = ctx.metrics ? ctx.metrics->route_slot(r.id) : 0;
    const config::PluginMap* layers[3] = {service != nullptr ? service->plugins : nullptr, nullptr,
                                          &r.plugins};
    if (!r.plugin_config_id.empty()) {
      auto it = plugin_configs.find(r.plugin_config_id);
      if (it != plugin_configs.end()) layers[1] = it->second;
    }
    std::string plugin_error;
    rt.plugins = plugins::compile_chain(layers, env, cache, &plugin_error);
    if (!rt.plugins && !plugin_error.empty()) {
      if (error) *error = "route " + r.id + ": " + plugin_error;
      return nullptr;
    }
    // traffic-split's upstreams, from the layer whose configuration runs (the last one naming it).
    const config::PluginSpec* split = nullptr;
    std::string owner_key;
    for (size_t k = 0; k < 3; ++k) {
      if (const config::PluginSpec* p = find_plugin(layers[k], "traffic-split")) {
        split = p;
        owner_key = k == 0   ? "service:" + r.service_id
                    : k == 1 ? "plugin_config:" + r.plugin_config_id
                             : "route:" + r.id;
      }
    }
    if (split != nullptr && !split->disabled && rt.plugins) {
      if (!build_split(layer->config, r, rt, *split, owner_key)) return nullptr;
    }
  }
  for (const auto& up : layer->upstreams) layer->has_active_checks |= up->has_active_check;
  return layer;
}

std::shared_ptr<const plugins::GlobalRules> build_global_rules(const std::vector<config::GlobalRule>& rules,
                                                               const BuildContext& ctx, std::string* error) {
  plugins::BuildEnv env;
  env.workers = ctx.workers;
  env.metrics = ctx.metrics;
  env.redis = ctx.redis;
  env.limits = ctx.limits;
  plugins::PluginCache cache;
  auto out = std::make_shared<plugins::GlobalRules>();
  for (const config::GlobalRule& rule : rules) {
    const config::PluginMap* layers[] = {&rule.plugins};
    std::string plugin_error;
    auto chain = plugins::compile_chain(layers, env, cache, &plugin_error);
    if (!chain) {
      if (plugin_error.empty()) continue;
      if (error) *error = "global rule " + rule.id + ": " + plugin_error;
      return nullptr;
    }
    out->phases |= chain->phases;
    out->chains.push_back(std::move(chain));
  }
  if (out->chains.empty()) return nullptr;
  return out;
}

std::shared_ptr<const plugins::ConsumerIndex> build_consumers(
    const std::vector<config::Consumer>& consumers, const std::vector<config::Credential>& credentials,
    const BuildContext& ctx) {
  plugins::BuildEnv env;
  env.workers = ctx.workers;
  env.metrics = ctx.metrics;
  env.redis = ctx.redis;
  env.limits = ctx.limits;
  plugins::PluginCache cache;
  std::vector<std::string> problems;
  auto index = plugins::ConsumerIndex::build(consumers, credentials, env, cache, problems);
  for (const std::string& p : problems) PORTICO_LOG(warn, "consumers: %s", p.c_str());
  return index;
}

std::shared_ptr<const tls::CertStore> build_tls(const std::vector<config::Ssl>& ssls,
                                                const tls::CertStore* previous) {
  std::vector<std::string> problems;
  auto store = tls::CertStore::build(ssls, &problems, previous);
  for (const std::string& p : problems) PORTICO_LOG(warn, "ssls: %s", p.c_str());
  return store;
}

std::shared_ptr<const Snapshot> build(config::Config config, std::string hash, std::string source,
                                      uint64_t generation, const BuildContext& ctx, std::string* error) {
  auto snap = std::make_shared<Snapshot>();
  std::string global_error;
  snap->global_rules = build_global_rules(config.global_rules, ctx, &global_error);
  if (!snap->global_rules && !global_error.empty()) {
    if (error) *error = global_error;
    return nullptr;
  }
  snap->consumers = build_consumers(config.consumers, config.credentials, ctx);
  snap->tls = build_tls(config.ssls);
  snap->generation = generation;
  snap->hash = std::move(hash);
  snap->source = std::move(source);
  snap->route_count = config.routes.size();
  snap->base = build_layer(std::move(config), ctx, nullptr, error);
  if (!snap->base) return nullptr;
  return snap;
}

const RouteRuntime* Snapshot::match(const router::MatchRequest& request) const {
  const router::RouteBits excluded{overridden.data(), overridden.size()};
  if (!overlay) {
    const int b = base->router->match(request, excluded, nullptr);
    return b < 0 ? nullptr : &base->routes[static_cast<size_t>(b)];
  }
  router::MatchRank base_rank;
  router::MatchRank overlay_rank;
  const int b = base->router->match(request, excluded, &base_rank);
  const int o = overlay->router->match(request, router::RouteBits{}, &overlay_rank);
  if (o < 0) return b < 0 ? nullptr : &base->routes[static_cast<size_t>(b)];
  const RouteRuntime* from_overlay = &overlay->routes[static_cast<size_t>(o)];
  if (b < 0) return from_overlay;
  const RouteRuntime* from_base = &base->routes[static_cast<size_t>(b)];
  if (overlay_rank.ties_ignoring_order(base_rank)) {
    return from_overlay->spec->id < from_base->spec->id ? from_overlay : from_base;
  }
  return overlay_rank.beats_ignoring_order(base_rank) ? from_overlay : from_base;
}

std::vector<upstream::ProbeTarget> probe_targets(const Snapshot& snapshot) {
  std::vector<upstream::ProbeTarget> targets;
  const bool any =
      snapshot.base->has_active_checks || (snapshot.overlay && snapshot.overlay->has_active_checks);
  if (!any) return targets;
  // The runtimes live routes use: a layer also holds runtimes of routes the overlay replaced or removed, and
  // one runtime may serve routes of both layers.
  std::unordered_set<const UpstreamRuntime*> seen;
  std::vector<const UpstreamRuntime*> checked;
  auto visit_upstream = [&](const UpstreamRuntime* up) {
    if (up->has_active_check && seen.insert(up).second) checked.push_back(up);
  };
  auto visit = [&](const RouteRuntime& r) {
    visit_upstream(r.upstream);
    if (r.split != nullptr) {
      for (const SplitTarget& t : r.split->targets) visit_upstream(t.upstream);
    }
  };
  const router::RouteBits excluded{snapshot.overridden.data(), snapshot.overridden.size()};
  for (size_t i = 0; i < snapshot.base->routes.size(); ++i) {
    if (!excluded.contains(static_cast<uint32_t>(i))) visit(snapshot.base->routes[i]);
  }
  if (snapshot.overlay) {
    for (const RouteRuntime& r : snapshot.overlay->routes) visit(r);
  }
  for (const UpstreamRuntime* up : checked) {
    const config::ActiveCheck& spec = *up->spec.checks->active;
    for (const upstream::NodeRuntime& node : up->nodes) {
      if (node.address.empty()) continue;
      upstream::ProbeTarget t;
      t.upstream_key = up->key;
      t.spec = spec;
      t.address = node.address;
      t.port = spec.port > 0 ? static_cast<uint16_t>(spec.port) : node.spec.port;
      t.host_header = spec.host.empty() ? node.host_port : spec.host;
      t.health = node.health;
      t.tls = up->probe_tls;
      targets.push_back(std::move(t));
    }
  }
  return targets;
}

}  // namespace portico::snapshot
