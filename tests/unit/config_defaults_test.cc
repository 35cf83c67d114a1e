// Defaults of every field when omitted, and every field read when set (to a non-default value).
#include <gtest/gtest.h>

#include <cstdint>

#include "config/loader.h"

namespace portico::config {
namespace {

Config load_yaml(const std::string& body) {
  LoadResult r = parse_text(body + "\n#END\n", Format::yaml);
  EXPECT_TRUE(r.ok) << r.describe();
  return r.config;
}

TEST(ConfigDefaults, MinimalRoute) {
  Config c = load_yaml(R"(upstreams:
  - id: u1
    nodes: {"10.0.0.1:8080": 1}
routes:
  - id: r1
    uri: /a
    upstream_id: u1
)");
  ASSERT_EQ(c.routes.size(), 1u);
  const Route& r = c.routes[0];
  EXPECT_EQ(r.id, "r1");
  EXPECT_EQ(r.name, "");
  EXPECT_EQ(r.uris, std::vector<std::string>{"/a"});
  EXPECT_TRUE(r.hosts.empty());
  EXPECT_TRUE(r.methods.empty());  // any method
  EXPECT_TRUE(r.remote_addrs.empty());
  EXPECT_TRUE(r.vars.empty());
  EXPECT_EQ(r.priority, 0);
  EXPECT_TRUE(r.enabled);
  EXPECT_FALSE(r.upstream.has_value());
  EXPECT_EQ(r.upstream_id, "u1");
  EXPECT_EQ(r.service_id, "");
  EXPECT_FALSE(r.timeout.has_value());
  EXPECT_EQ(r.max_body_size, -1);
  EXPECT_FALSE(r.enable_websocket);
  EXPECT_TRUE(c.services.empty());
}

TEST(ConfigDefaults, MinimalUpstream) {
  Config c = load_yaml("upstreams:\n  - id: u1\n    nodes: {\"10.0.0.1\": 1, \"[::1]\": 0}\n");
  ASSERT_EQ(c.upstreams.size(), 1u);
  const Upstream& u = c.upstreams[0];
  EXPECT_EQ(u.id, "u1");
  EXPECT_EQ(u.name, "");
  EXPECT_EQ(u.type, LbType::roundrobin);
  ASSERT_EQ(u.nodes.size(), 2u);
  // Map form: port defaults to 80 (scheme http), priority to 0; weight 0 is allowed (never picked).
  // Map keys come back in key order.
  EXPECT_EQ(u.nodes[0].host, "10.0.0.1");
  EXPECT_EQ(u.nodes[0].port, 80);
  EXPECT_EQ(u.nodes[0].weight, 1);
  EXPECT_EQ(u.nodes[0].priority, 0);
  EXPECT_EQ(u.nodes[1].host, "::1");
  EXPECT_EQ(u.nodes[1].port, 80);
  EXPECT_EQ(u.nodes[1].weight, 0);
  EXPECT_EQ(u.hash_on, HashOn::vars);
  EXPECT_EQ(u.key, "");
  EXPECT_FALSE(u.checks.has_value());
  EXPECT_EQ(u.retries, -1);
  EXPECT_EQ(u.retry_timeout, 0);
  EXPECT_FALSE(u.timeout.has_value());
  EXPECT_EQ(u.scheme, "http");
  EXPECT_EQ(u.pass_host, PassHost::pass);
  EXPECT_EQ(u.upstream_host, "");
  EXPECT_EQ(u.keepalive_pool.size, 320);
  EXPECT_EQ(u.keepalive_pool.idle_timeout, 60);
  EXPECT_EQ(u.keepalive_pool.requests, 1000);
}

TEST(ConfigDefaults, ListNodeDefaults) {
  Config c = load_yaml("upstreams:\n  - id: u1\n    nodes: [{host: a.internal, weight: 3}]\n");
  const Node& n = c.upstreams[0].nodes[0];
  EXPECT_EQ(n.host, "a.internal");
  EXPECT_EQ(n.port, 80);
  EXPECT_EQ(n.weight, 3);
  EXPECT_EQ(n.priority, 0);
}

TEST(ConfigDefaults, EmptyHealthCheckSections) {
  Config c = load_yaml(R"(upstreams:
  - id: u1
    nodes: {"a:1": 1}
    checks:
      active: {}
      passive: {}
)");
  const HealthChecks& h = *c.upstreams[0].checks;
  ASSERT_TRUE(h.active && h.passive);
  const ActiveCheck& a = *h.active;
  EXPECT_EQ(a.type, "http");
  EXPECT_EQ(a.timeout, 1);
  EXPECT_EQ(a.concurrency, 10);
  EXPECT_EQ(a.http_path, "/");
  EXPECT_EQ(a.host, "");
  EXPECT_EQ(a.port, 0);
  EXPECT_TRUE(a.req_headers.empty());
  EXPECT_EQ(a.healthy.interval, 1);
  EXPECT_EQ(a.healthy.successes, 2);
  EXPECT_EQ(a.healthy.http_statuses, (std::vector<int>{200, 302}));
  EXPECT_EQ(a.unhealthy.interval, 1);
  EXPECT_EQ(a.unhealthy.http_failures, 5);
  EXPECT_EQ(a.unhealthy.tcp_failures, 2);
  EXPECT_EQ(a.unhealthy.timeouts, 3);
  EXPECT_EQ(a.unhealthy.http_statuses, (std::vector<int>{429, 404, 500, 501, 502, 503, 504, 505}));
  const PassiveCheck& p = *h.passive;
  EXPECT_EQ(p.type, "http");
  EXPECT_EQ(p.healthy.successes, 5);
  EXPECT_EQ(p.healthy.http_statuses.size(), 19u);
  EXPECT_EQ(p.unhealthy.http_statuses, (std::vector<int>{429, 500, 503}));
  EXPECT_EQ(p.unhealthy.tcp_failures, 2);
  EXPECT_EQ(p.unhealthy.timeouts, 7);
  EXPECT_EQ(p.unhealthy.http_failures, 5);
}

TEST(ConfigDefaults, PartialSectionsKeepTheOtherDefaults) {
  Config c = load_yaml(R"(upstreams:
  - id: u1
    nodes: {"a:1": 1}
    checks:
      active: {healthy: {successes: 4}, unhealthy: {timeouts: 9}}
    timeout: {read: 5}
    keepalive_pool: {size: 8}
routes:
  - id: r1
    uri: /a
    upstream_id: u1
    timeout: {connect: 0.5}
)");
  const Upstream& u = c.upstreams[0];
  EXPECT_EQ(u.checks->active->healthy.successes, 4);
  EXPECT_EQ(u.checks->active->healthy.interval, 1);
  EXPECT_EQ(u.checks->active->unhealthy.timeouts, 9);
  EXPECT_EQ(u.checks->active->unhealthy.http_failures, 5);
  EXPECT_FALSE(u.checks->passive.has_value());
  ASSERT_TRUE(u.timeout.has_value());
  EXPECT_EQ(u.timeout->read, 5);
  EXPECT_EQ(u.timeout->connect, 60);  // APISIX requires all three; missing ones default to 60 here
  EXPECT_EQ(u.timeout->send, 60);
  EXPECT_EQ(u.keepalive_pool.size, 8);
  EXPECT_EQ(u.keepalive_pool.requests, 1000);
  EXPECT_EQ(c.routes[0].timeout->connect, 0.5);
  EXPECT_EQ(c.routes[0].timeout->read, 60);
}

TEST(ConfigDefaults, MinimalService) {
  Config c = load_yaml(R"(services:
  - id: 5
routes:
  - id: r1
    uri: /a
    service_id: 5
    upstream: {nodes: {"a:1": 1}}
)");
  ASSERT_EQ(c.services.size(), 1u);
  const Service& s = c.services[0];
  EXPECT_EQ(s.id, "5");
  EXPECT_EQ(s.name, "");
  EXPECT_FALSE(s.upstream.has_value());
  EXPECT_EQ(s.upstream_id, "");
  EXPECT_TRUE(s.hosts.empty());
  EXPECT_EQ(s.max_body_size, -1);
  EXPECT_FALSE(s.enable_websocket);
  EXPECT_EQ(c.routes[0].service_id, "5");
  EXPECT_EQ(c.routes[0].max_body_size, -1);
  EXPECT_EQ(c.routes[0].upstream->id, "");
}

TEST(ConfigDefaults, EveryFieldIsRead) {
  Config c = load_yaml(R"(upstreams:
  - id: u1
    name: n
    desc: d
    labels: {team: core}
    create_time: 1700000000
    update_time: 1700000001
    type: chash
    hash_on: header
    key: X-User
    nodes:
      - {host: "[fd00::1]", port: 8443, weight: 7, priority: 2, metadata: {zone: a}}
    retries: 3
    retry_timeout: 2.5
    timeout: {connect: 1, send: 2, read: 3}
    scheme: http
    pass_host: rewrite
    upstream_host: backend.internal:8080
    keepalive_pool: {size: 1, idle_timeout: 0, requests: 2}
    checks:
      active:
        type: tcp
        timeout: 0.5
        concurrency: 3
        http_path: /hc
        host: hc.internal
        port: 9000
        req_headers: ["X-Probe: 1", "User-Agent: portico"]
        https_verify_certificate: false
        healthy: {interval: 0.25, successes: 3, http_statuses: [200]}
        unhealthy: {interval: 0.5, http_failures: 4, tcp_failures: 5, timeouts: 6, http_statuses: [500]}
      passive:
        type: tcp
        healthy: {http_statuses: [200, 201], successes: 0}
        unhealthy: {http_statuses: [502], tcp_failures: 0, timeouts: 1, http_failures: 2}
services:
  - id: s1
    name: sn
    upstream_id: u1
    hosts: ["*.Example.COM"]
    plugins: {client-control: {max_body_size: 0}}
    enable_websocket: true
routes:
  - id: r1
    name: rn
    desc: rd
    uri: /x/:id/*
    host: "[::1]"
    methods: [GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS, CONNECT, TRACE, PURGE]
    remote_addr: 192.168.0.0/16
    vars:
      - [uri, "~*", "^/x/[0-9]+"]
      - [arg_n, ">=", "10"]
      - [arg_n, "<", 20]
      - [arg_n, ">", -1.5]
      - [arg_n, "<=", 100]
      - [http_x, "~=", abc]
      - [http_y, in, [a, 1]]
      - [http_z, "!", has, b]
    priority: -3
    status: 0
    service_id: s1
    timeout: {connect: 4, send: 5, read: 6}
    enable_websocket: false
)");
  const Upstream& u = c.upstreams[0];
  EXPECT_EQ(u.name, "n");
  EXPECT_EQ(u.type, LbType::chash);
  EXPECT_EQ(u.hash_on, HashOn::header);
  EXPECT_EQ(u.key, "X-User");
  ASSERT_EQ(u.nodes.size(), 1u);
  EXPECT_EQ(u.nodes[0].host, "fd00::1");
  EXPECT_EQ(u.nodes[0].port, 8443);
  EXPECT_EQ(u.nodes[0].weight, 7);
  EXPECT_EQ(u.nodes[0].priority, 2);
  EXPECT_EQ(u.retries, 3);
  EXPECT_EQ(u.retry_timeout, 2.5);
  EXPECT_EQ(u.timeout->connect, 1);
  EXPECT_EQ(u.timeout->send, 2);
  EXPECT_EQ(u.timeout->read, 3);
  EXPECT_EQ(u.pass_host, PassHost::rewrite);
  EXPECT_EQ(u.upstream_host, "backend.internal:8080");
  EXPECT_EQ(u.keepalive_pool.size, 1);
  EXPECT_EQ(u.keepalive_pool.idle_timeout, 0);
  EXPECT_EQ(u.keepalive_pool.requests, 2);
  const ActiveCheck& a = *u.checks->active;
  EXPECT_EQ(a.type, "tcp");
  EXPECT_EQ(a.timeout, 0.5);
  EXPECT_EQ(a.concurrency, 3);
  EXPECT_EQ(a.http_path, "/hc");
  EXPECT_EQ(a.host, "hc.internal");
  EXPECT_EQ(a.port, 9000);
  EXPECT_EQ(a.req_headers, (std::vector<std::string>{"X-Probe: 1", "User-Agent: portico"}));
  EXPECT_EQ(a.healthy.interval, 0.25);
  EXPECT_EQ(a.healthy.successes, 3);
  EXPECT_EQ(a.healthy.http_statuses, std::vector<int>{200});
  EXPECT_EQ(a.unhealthy.interval, 0.5);
  EXPECT_EQ(a.unhealthy.http_failures, 4);
  EXPECT_EQ(a.unhealthy.tcp_failures, 5);
  EXPECT_EQ(a.unhealthy.timeouts, 6);
  EXPECT_EQ(a.unhealthy.http_statuses, std::vector<int>{500});
  const PassiveCheck& p = *u.checks->passive;
  EXPECT_EQ(p.type, "tcp");
  EXPECT_EQ(p.healthy.http_statuses, (std::vector<int>{200, 201}));
  EXPECT_EQ(p.healthy.successes, 0);
  EXPECT_EQ(p.unhealthy.http_statuses, std::vector<int>{502});
  EXPECT_EQ(p.unhealthy.tcp_failures, 0);
  EXPECT_EQ(p.unhealthy.timeouts, 1);
  EXPECT_EQ(p.unhealthy.http_failures, 2);

  const Service& s = c.services[0];
  EXPECT_EQ(s.name, "sn");
  EXPECT_EQ(s.upstream_id, "u1");
  EXPECT_EQ(s.hosts, std::vector<std::string>{"*.example.com"});
  EXPECT_EQ(s.max_body_size, INT64_MAX);  // client-control 0 = no limit (APISIX)
  EXPECT_TRUE(s.enable_websocket);

  const Route& r = c.routes[0];
  EXPECT_EQ(r.name, "rn");
  EXPECT_EQ(r.uris, std::vector<std::string>{"/x/:id/*"});
  EXPECT_EQ(r.hosts, std::vector<std::string>{"[::1]"});
  EXPECT_EQ(r.methods.size(), 10u);
  EXPECT_EQ(r.remote_addrs, std::vector<std::string>{"192.168.0.0/16"});
  ASSERT_EQ(r.vars.size(), 8u);
  EXPECT_EQ(r.vars[0].op, VarExpr::Op::regex_nocase);
  EXPECT_EQ(r.vars[1].op, VarExpr::Op::ge);
  EXPECT_EQ(r.vars[1].values, std::vector<std::string>{"10"});
  EXPECT_EQ(r.vars[2].op, VarExpr::Op::lt);
  EXPECT_EQ(r.vars[3].op, VarExpr::Op::gt);
  EXPECT_EQ(r.vars[3].values, std::vector<std::string>{"-1.5"});
  EXPECT_EQ(r.vars[4].op, VarExpr::Op::le);
  EXPECT_EQ(r.vars[5].op, VarExpr::Op::ne);
  EXPECT_EQ(r.vars[6].op, VarExpr::Op::in);
  EXPECT_EQ(r.vars[6].values, (std::vector<std::string>{"a", "1"}));
  EXPECT_EQ(r.vars[7].op, VarExpr::Op::has);
  EXPECT_TRUE(r.vars[7].negate);
  EXPECT_EQ(r.priority, -3);
  EXPECT_FALSE(r.enabled);
  EXPECT_EQ(r.service_id, "s1");
  EXPECT_EQ(r.timeout->connect, 4);
  EXPECT_EQ(r.timeout->send, 5);
  EXPECT_EQ(r.timeout->read, 6);
  EXPECT_EQ(r.max_body_size, INT64_MAX);  // inherited from s1
  EXPECT_FALSE(r.enable_websocket);
}

TEST(ConfigDefaults, ConsumerHashNeedsNoKey) {
  Config c = load_yaml("upstreams:\n  - {id: u1, type: chash, hash_on: consumer, nodes: {\"a:1\": 1}}\n");
  EXPECT_EQ(c.upstreams[0].hash_on, HashOn::consumer);
}

TEST(ConfigDefaults, ApisixExportedDefaultsAreAccepted) {
  // What APISIX writes back after applying its schema defaults must load as is.
  LoadResult r =
      parse_text(R"({"upstreams": [{"id": "1", "type": "roundrobin", "hash_on": "vars", "scheme": "http",
    "pass_host": "pass", "nodes": [{"host": "127.0.0.1", "port": 1980, "weight": 1, "priority": 0}],
    "keepalive_pool": {"size": 320, "idle_timeout": 60, "requests": 1000},
    "create_time": 1700000000, "update_time": 1700000000}],
    "routes": [{"id": "1", "uri": "/hello", "upstream_id": "1", "priority": 0, "status": 1,
    "create_time": 1700000000, "update_time": 1700000000}],
    "routes_conf_version": 3, "upstreams_conf_version": 1})",
                 Format::json);
  EXPECT_TRUE(r.ok) << r.describe();
}

}  // namespace
}  // namespace portico::config
