// The prometheus plugin's log phase: the labels it reports (ids or names, consumer, node, matched uri and
// host), APISIX's latency split, the worker's own table, and run_policy prefer_route (a global rule's
// prometheus gives way to the route's, so a request is counted once).
#include <memory>
#include <string>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "plugins/consumers.h"
#include "plugins/pipeline.h"
#include "plugins/plugin.h"
#include "status/http_series.h"
#include "status/metrics.h"

namespace portico::plugins {
namespace {

std::shared_ptr<const Plugin> prometheus(status::Metrics& metrics, bool prefer_name = false) {
  BuildEnv env;
  env.workers = metrics.worker_count();
  env.metrics = &metrics;
  std::string error;
  auto p = create_plugin("prometheus", nlohmann::json{{"prefer_name", prefer_name}}, 500, env, &error);
  EXPECT_TRUE(p) << error;
  return p;
}

std::shared_ptr<const Chain> chain_of(std::shared_ptr<const Plugin> p) {
  auto c = std::make_shared<Chain>();
  c->phases = p->phases();
  c->plugins.push_back(std::move(p));
  return c;
}

RequestContext context() {
  RequestContext ctx;
  ctx.route_id = "r1";
  ctx.route_name = "orders";
  ctx.service_id = "s1";
  ctx.service_name = "shop";
  ctx.matched_uri = "/orders/*";
  ctx.matched_host = "*.shop.test";
  return ctx;
}

LogInfo info(int status, double seconds, double upstream_seconds = -1) {
  LogInfo i;
  i.status = status;
  i.request_seconds = seconds;
  i.upstream_seconds = upstream_seconds;
  i.upstream_ip = upstream_seconds >= 0 ? "10.0.0.5" : "";
  i.bytes_received = 120;
  i.bytes_sent = 450;
  return i;
}

double value(const std::string& text, const std::string& prefix) {
  size_t at = text.find("\n" + prefix);
  if (at == std::string::npos) return -1;
  size_t sp = text.find(' ', at + 1 + prefix.size());
  return std::stod(text.substr(sp + 1, text.find('\n', sp) - sp - 1));
}

TEST(Prometheus, ReportsIdsConsumerNodeAndMatchedPatterns) {
  status::Metrics metrics(2);
  auto chain = chain_of(prometheus(metrics));
  Pipeline pipeline(nullptr, chain.get());
  RequestContext ctx = context();
  ctx.worker = 1;
  ConsumerRuntime jack;
  jack.username = "jack";
  ctx.consumer = &jack;
  pipeline.run_log(ctx, info(200, 0.010, 0.004));

  std::string text = metrics.render("");
  EXPECT_EQ(value(text, R"(portico_http_status{code="200",route="r1",matched_uri="/orders/*",)"
                        R"(matched_host="*.shop.test",service="s1",consumer="jack",node="10.0.0.5"})"),
            1)
      << text;
  const std::string tail = R"(route="r1",service="s1",consumer="jack",node="10.0.0.5"})";
  EXPECT_DOUBLE_EQ(value(text, "portico_http_latency_sum{type=\"request\"," + tail), 10.0);
  EXPECT_DOUBLE_EQ(value(text, "portico_http_latency_sum{type=\"upstream\"," + tail), 4.0);
  EXPECT_DOUBLE_EQ(value(text, "portico_http_latency_sum{type=\"apisix\"," + tail), 6.0);
  EXPECT_EQ(value(text, "portico_bandwidth{type=\"ingress\"," + tail), 120);
  EXPECT_EQ(value(text, "portico_bandwidth{type=\"egress\"," + tail), 450);
  // Worker 1's table took it.
  EXPECT_EQ(metrics.http_series(0).status_count(), 1u);
  EXPECT_EQ(metrics.http_series(1).status_count(), 2u);
}

TEST(Prometheus, PluginReplyHasNoNodeAndNoUpstreamLatency) {
  status::Metrics metrics(1);
  auto chain = chain_of(prometheus(metrics));
  RequestContext ctx = context();
  Pipeline(nullptr, chain.get()).run_log(ctx, info(401, 0.002));
  std::string text = metrics.render("");
  EXPECT_EQ(value(text, R"(portico_http_status{code="401",route="r1",matched_uri="/orders/*",)"
                        R"(matched_host="*.shop.test",service="s1",consumer="",node=""})"),
            1);
  EXPECT_EQ(text.find("type=\"upstream\""), std::string::npos);
  EXPECT_DOUBLE_EQ(value(text, R"(portico_http_latency_sum{type="apisix",route="r1",service="s1",)"
                               R"(consumer="",node=""})"),
                   2.0);
}

TEST(Prometheus, PreferNameUsesNamesAndFallsBackToIds) {
  status::Metrics metrics(1);
  auto chain = chain_of(prometheus(metrics, /*prefer_name=*/true));
  RequestContext ctx = context();
  Pipeline(nullptr, chain.get()).run_log(ctx, info(200, 0.001));
  ctx.route_name = "";
  ctx.service_name = "";
  Pipeline(nullptr, chain.get()).run_log(ctx, info(200, 0.001));
  std::string text = metrics.render("");
  EXPECT_EQ(value(text, R"(portico_http_status{code="200",route="orders",matched_uri="/orders/*",)"
                        R"(matched_host="*.shop.test",service="shop",)"),
            1)
      << text;
  EXPECT_EQ(value(text, R"(portico_http_status{code="200",route="r1",matched_uri="/orders/*",)"
                        R"(matched_host="*.shop.test",service="s1",)"),
            1);
}

TEST(Prometheus, GlobalRuleCountsRoutesWithoutItOnce) {
  status::Metrics metrics(1);
  GlobalRules globals;
  globals.chains.push_back(chain_of(prometheus(metrics)));
  globals.phases = kLog;
  RequestContext ctx = context();
  Pipeline(&globals, nullptr).run_log(ctx, info(200, 0.001));
  std::string text = metrics.render("");
  EXPECT_EQ(value(text, R"(portico_http_status{code="200",route="r1",)"), 1);
}

TEST(Prometheus, GlobalRuleGivesWayToTheRoutesOwn) {
  status::Metrics metrics(1);
  GlobalRules globals;
  globals.chains.push_back(chain_of(prometheus(metrics)));
  globals.phases = kLog;
  auto route = chain_of(prometheus(metrics, /*prefer_name=*/true));
  RequestContext ctx = context();
  Pipeline(&globals, route.get()).run_log(ctx, info(200, 0.001));
  std::string text = metrics.render("");
  // Counted once, with the route's configuration (names).
  EXPECT_EQ(value(text, R"(portico_http_status{code="200",route="orders",)"), 1) << text;
  EXPECT_EQ(text.find(R"(route="r1")"), std::string::npos) << text;
}

TEST(Prometheus, WithoutMetricsItCountsNothing) {
  BuildEnv env;  // as a config check builds it: no process metrics
  std::string error;
  auto p = create_plugin("prometheus", nlohmann::json{{"prefer_name", false}}, 500, env, &error);
  ASSERT_TRUE(p) << error;
  EXPECT_EQ(p->phases(), kLog);
  EXPECT_TRUE(p->prefer_route());
  RequestContext ctx = context();
  p->log(ctx, info(200, 0.001));  // no crash, nothing to count into
}

}  // namespace
}  // namespace portico::plugins
