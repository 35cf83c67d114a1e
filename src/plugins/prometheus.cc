// prometheus (APISIX 3.x): counts each request of the routes it is configured for (route, service, plugin
// config or global rule) in the labelled series of status/http_series.h, under the worker's own table:
// portico_http_status by code, route, matched uri and host, service, consumer and node; portico_http_latency
// (request, upstream, apisix) and portico_bandwidth (ingress, egress) by route, service, consumer and node.
// prefer_name reports the route's and the service's names instead of their ids (the id when unnamed).
// run_policy prefer_route: a global rule's prometheus gives way to the route's, so a request counts once.
#include <nlohmann/json.hpp>

#include "plugins/consumers.h"
#include "plugins/factories.h"
#include "status/http_series.h"

namespace portico::plugins {

namespace {

class Prometheus final : public Plugin {
 public:
  Prometheus(const nlohmann::json& conf, int priority, status::Metrics* metrics)
      : Plugin("prometheus", priority, kLog, /*prefer_route=*/true),
        prefer_name_(conf.at("prefer_name").get<bool>()),
        metrics_(metrics) {}

  void log(const RequestContext& ctx, const LogInfo& info) const override {
    if (metrics_ == nullptr || ctx.worker >= metrics_->worker_count()) return;
    status::HttpLabels labels;
    labels.code = info.status;
    labels.route = prefer_name_ && !ctx.route_name.empty() ? ctx.route_name : ctx.route_id;
    labels.matched_uri = ctx.matched_uri;
    labels.matched_host = ctx.matched_host;
    labels.service = prefer_name_ && !ctx.service_name.empty() ? ctx.service_name : ctx.service_id;
    if (ctx.consumer != nullptr) labels.consumer = ctx.consumer->username;
    labels.node = info.upstream_ip;

    status::HttpObservation o;
    o.request_ms = info.request_seconds * 1000;
    o.apisix_ms = o.request_ms;
    if (info.upstream_seconds >= 0) {
      o.upstream_ms = info.upstream_seconds * 1000;
      o.apisix_ms = o.request_ms > o.upstream_ms ? o.request_ms - o.upstream_ms : 0;
    }
    o.ingress_bytes = info.bytes_received;
    o.egress_bytes = info.bytes_sent;
    metrics_->http_series(ctx.worker).record(labels, o);
  }

 private:
  bool prefer_name_;
  status::Metrics* metrics_;
};

std::shared_ptr<const Plugin> build(const nlohmann::json& conf, int priority, const BuildEnv& env,
                                    std::string*) {
  return std::make_shared<Prometheus>(conf, priority, env.metrics);
}

}  // namespace

constinit const detail::Factory detail::make_prometheus = build;

}  // namespace portico::plugins
