// The loader: example files, YAML/JSON equivalence, the #END marker, syntax handling, hashing, describe().
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "config/loader.h"
#include "config/validate.h"

namespace portico::config {
namespace {

using nlohmann::json;

std::string read_data(const std::string& name) {
  std::ifstream in(std::string(PORTICO_TEST_DATA) + "/config/" + name, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A canonical dump of every field, so that EXPECT_EQ on two configs prints a readable difference.
json dump(const Timeout& t) {
  return {t.connect, t.send, t.read};
}
json dump(const Upstream& u) {
  json nodes = json::array();
  for (const Node& n : u.nodes) nodes.push_back({n.host, n.port, n.weight, n.priority});
  json j = {{"id", u.id},
            {"name", u.name},
            {"type", static_cast<int>(u.type)},
            {"nodes", nodes},
            {"hash_on", static_cast<int>(u.hash_on)},
            {"key", u.key},
            {"retries", u.retries},
            {"retry_timeout", u.retry_timeout},
            {"timeout", u.timeout ? dump(*u.timeout) : json()},
            {"scheme", u.scheme},
            {"pass_host", static_cast<int>(u.pass_host)},
            {"upstream_host", u.upstream_host},
            {"keepalive", {u.keepalive_pool.size, u.keepalive_pool.idle_timeout, u.keepalive_pool.requests}}};
  if (u.checks && u.checks->active) {
    const ActiveCheck& a = *u.checks->active;
    j["active"] = {a.type,
                   a.timeout,
                   a.concurrency,
                   a.http_path,
                   a.host,
                   a.port,
                   a.req_headers,
                   {a.healthy.interval, a.healthy.successes, a.healthy.http_statuses},
                   {a.unhealthy.interval, a.unhealthy.http_failures, a.unhealthy.tcp_failures,
                    a.unhealthy.timeouts, a.unhealthy.http_statuses}};
  }
  if (u.checks && u.checks->passive) {
    const PassiveCheck& p = *u.checks->passive;
    j["passive"] = {p.type,
                    {p.healthy.http_statuses, p.healthy.successes},
                    {p.unhealthy.http_statuses, p.unhealthy.tcp_failures, p.unhealthy.timeouts,
                     p.unhealthy.http_failures}};
  }
  return j;
}
json dump(const Labels& labels) {
  json j = json::array();
  for (const auto& [name, value] : labels) j.push_back({name, value});
  return j;
}
json dump(const Config& c) {
  json j = {{"routes", json::array()},        {"services", json::array()}, {"upstreams", json::array()},
            {"consumers", json::array()},     {"ssls", json::array()},     {"global_rules", json::array()},
            {"plugin_configs", json::array()}};
  for (const Route& r : c.routes) {
    json vars = json::array();
    for (const VarExpr& v : r.vars) vars.push_back({v.var, static_cast<int>(v.op), v.negate, v.values});
    j["routes"].push_back({{"id", r.id},
                           {"name", r.name},
                           {"uris", r.uris},
                           {"hosts", r.hosts},
                           {"methods", r.methods},
                           {"remote_addrs", r.remote_addrs},
                           {"vars", vars},
                           {"priority", r.priority},
                           {"enabled", r.enabled},
                           {"upstream", r.upstream ? dump(*r.upstream) : json()},
                           {"upstream_id", r.upstream_id},
                           {"service_id", r.service_id},
                           {"plugin_config_id", r.plugin_config_id},
                           {"timeout", r.timeout ? dump(*r.timeout) : json()},
                           {"max_body_size", r.max_body_size},
                           {"enable_websocket", r.enable_websocket}});
  }
  for (const Service& s : c.services) {
    j["services"].push_back({{"id", s.id},
                             {"name", s.name},
                             {"upstream", s.upstream ? dump(*s.upstream) : json()},
                             {"upstream_id", s.upstream_id},
                             {"hosts", s.hosts},
                             {"max_body_size", s.max_body_size},
                             {"enable_websocket", s.enable_websocket}});
  }
  for (const Upstream& u : c.upstreams) j["upstreams"].push_back(dump(u));
  for (const Consumer& x : c.consumers) {
    j["consumers"].push_back({x.username, x.desc, dump(x.labels), x.max_body_size});
  }
  for (const Ssl& x : c.ssls) {
    j["ssls"].push_back({x.id, static_cast<int>(x.type), x.cert, x.key, x.certs, x.keys, x.snis, x.enabled});
  }
  for (const GlobalRule& x : c.global_rules) j["global_rules"].push_back({x.id, x.max_body_size});
  for (const PluginConfig& x : c.plugin_configs) {
    j["plugin_configs"].push_back({x.id, x.name, x.desc, dump(x.labels), x.max_body_size});
  }
  return j;
}

TEST(ConfigLoader, ExampleYamlLoads) {
  LoadResult r = load_file(std::string(PORTICO_TEST_DATA) + "/config/example.yaml");
  ASSERT_TRUE(r.ok) << r.describe("example.yaml");
  const Config& c = r.config;
  ASSERT_EQ(c.upstreams.size(), 3u);
  ASSERT_EQ(c.services.size(), 1u);
  ASSERT_EQ(c.routes.size(), 6u);

  EXPECT_EQ(c.routes[0].id, "1");  // integer id normalized to text
  EXPECT_EQ(c.routes[0].uris, std::vector<std::string>{"/api/v1/users"});
  EXPECT_EQ(c.routes[0].hosts, std::vector<std::string>{"api.example.com"});
  EXPECT_EQ(c.routes[0].methods, (std::vector<std::string>{"GET", "HEAD"}));
  EXPECT_EQ(c.routes[1].uris, (std::vector<std::string>{"/api/v1/users/*", "/api/v2/users/*"}));
  EXPECT_EQ(c.routes[1].priority, 10);
  ASSERT_TRUE(c.routes[1].timeout);
  EXPECT_EQ(c.routes[1].timeout->read, 30);

  const Route& by_id = c.routes[2];
  EXPECT_EQ(by_id.remote_addrs, (std::vector<std::string>{"10.0.0.0/8", "fd00::/8"}));
  ASSERT_EQ(by_id.vars.size(), 2u);
  EXPECT_EQ(by_id.vars[0].var, "http_x_api_version");
  EXPECT_EQ(by_id.vars[0].op, VarExpr::Op::eq);
  EXPECT_FALSE(by_id.vars[0].negate);
  EXPECT_EQ(by_id.vars[0].values, std::vector<std::string>{"2"});
  EXPECT_TRUE(by_id.vars[1].negate);
  EXPECT_EQ(by_id.max_body_size, 1048576);  // inherited from service "shop"

  const Route& upload = c.routes[3];
  EXPECT_EQ(upload.max_body_size, 104857600);  // its own wins
  ASSERT_TRUE(upload.upstream);
  EXPECT_EQ(upload.upstream->id, "");
  EXPECT_EQ(upload.vars[0].op, VarExpr::Op::regex);
  EXPECT_TRUE(c.routes[4].enable_websocket);
  EXPECT_FALSE(c.routes[5].enabled);
  // Body limits: route > plugin config > service > global rules.
  EXPECT_EQ(c.routes[4].plugin_config_id, "small-bodies");
  EXPECT_EQ(c.routes[4].max_body_size, 65536);    // from its plugin config
  EXPECT_EQ(c.routes[0].max_body_size, 8388608);  // from the global rule
  EXPECT_EQ(c.routes[5].max_body_size, 8388608);

  ASSERT_EQ(c.plugin_configs.size(), 1u);
  EXPECT_EQ(c.plugin_configs[0].id, "small-bodies");
  EXPECT_EQ(c.plugin_configs[0].desc, "requests with small bodies only");
  EXPECT_EQ(c.plugin_configs[0].labels, (Labels{{"team", "sessions"}}));
  ASSERT_EQ(c.global_rules.size(), 1u);
  EXPECT_EQ(c.global_rules[0].id, "defaults");
  EXPECT_EQ(c.global_rules[0].max_body_size, 8388608);
  ASSERT_EQ(c.consumers.size(), 1u);
  EXPECT_EQ(c.consumers[0].username, "jack");
  EXPECT_EQ(c.consumers[0].labels, (Labels{{"env", "production"}}));
  EXPECT_EQ(c.consumers[0].max_body_size, -1);
  EXPECT_TRUE(c.ssls.empty());

  const Upstream& orders = c.upstreams[1];
  EXPECT_EQ(orders.type, LbType::least_conn);
  ASSERT_EQ(orders.nodes.size(), 3u);
  EXPECT_EQ(orders.nodes[2].host, "orders-dr.internal");
  EXPECT_EQ(orders.nodes[2].priority, -1);
  ASSERT_TRUE(orders.checks && orders.checks->active && orders.checks->passive);
  EXPECT_EQ(orders.checks->active->http_path, "/healthz");
  EXPECT_EQ(orders.checks->passive->unhealthy.http_statuses, (std::vector<int>{500, 502, 503}));

  const Upstream& sessions = c.upstreams[2];
  EXPECT_EQ(sessions.type, LbType::chash);
  EXPECT_EQ(sessions.nodes[1].host, "fd00::3:11");  // brackets removed
  EXPECT_EQ(sessions.nodes[1].port, 9000);
  EXPECT_EQ(sessions.pass_host, PassHost::rewrite);
  EXPECT_EQ(c.services[0].hosts, std::vector<std::string>{"shop.example.com"});
}

TEST(ConfigLoader, YamlAndJsonExamplesGiveEqualConfigs) {
  LoadResult y = load_file(std::string(PORTICO_TEST_DATA) + "/config/example.yaml");
  LoadResult j = load_file(std::string(PORTICO_TEST_DATA) + "/config/example.json");
  ASSERT_TRUE(y.ok) << y.describe("example.yaml");
  ASSERT_TRUE(j.ok) << j.describe("example.json");
  EXPECT_EQ(dump(y.config).dump(1), dump(j.config).dump(1));
  EXPECT_NE(y.content_hash, j.content_hash);
}

TEST(ConfigLoader, StreamingLoaderMatchesValidateConfig) {
  std::string text = read_data("example.json");
  LoadResult r = parse_text(text, Format::json);
  ASSERT_TRUE(r.ok) << r.describe();
  Errors errors;
  std::optional<Config> c = validate_config(json::parse(text), errors);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(dump(r.config), dump(*c));
}

TEST(ConfigLoader, YamlWithoutEndMarkerIsRejected) {
  LoadResult r = parse_text("routes: []\n", Format::yaml);
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "");
  EXPECT_NE(r.errors[0].reason.find("#END"), std::string::npos);
  EXPECT_NE(r.errors[0].reason.find("truncated"), std::string::npos);
  EXPECT_FALSE(r.content_hash.empty());
}

TEST(ConfigLoader, EndMarkerPlacement) {
  EXPECT_TRUE(parse_text("routes: []\n#END\n", Format::yaml).ok);
  EXPECT_TRUE(parse_text("routes: []\n#END", Format::yaml).ok);
  EXPECT_TRUE(parse_text("routes: []\r\n#END\r\n\r\n  \n", Format::yaml).ok);
  EXPECT_TRUE(parse_text("#END\n", Format::yaml).ok);  // only comments: an empty config
  EXPECT_FALSE(parse_text("#END\nroutes: []\n", Format::yaml).ok);
  EXPECT_FALSE(parse_text("routes: [] #END\n", Format::yaml).ok);
  EXPECT_FALSE(parse_text("routes: []\n#END more\n", Format::yaml).ok);
  EXPECT_FALSE(parse_text("routes: []\n#ENDS\n", Format::yaml).ok);
  EXPECT_FALSE(parse_text("", Format::yaml).ok);
  // JSON has no marker.
  EXPECT_TRUE(parse_text(R"({"routes": []})", Format::json).ok);
}

TEST(ConfigLoader, TruncatedFileIsRejectedAtEveryCut) {
  std::string text = read_data("example.yaml");
  ASSERT_TRUE(parse_text(text, Format::yaml).ok);
  const size_t end = text.rfind("#END");
  // Any prefix that stops before the marker is rejected, whether or not it happens to be valid YAML.
  for (size_t cut = 0; cut < end; cut += 97) {
    LoadResult r = parse_text(std::string_view(text).substr(0, cut), Format::yaml);
    ASSERT_FALSE(r.ok) << "cut at " << cut;
    EXPECT_EQ(r.errors[0].path, "");
  }
  std::string json_text = read_data("example.json");
  for (size_t cut = 0; cut + 2 < json_text.size(); cut += 97) {
    EXPECT_FALSE(parse_text(std::string_view(json_text).substr(0, cut), Format::json).ok) << "cut at " << cut;
  }
}

TEST(ConfigLoader, ContentHashIsSha256OfRawBytes) {
  LoadResult a = parse_text("#END\n", Format::yaml);
  // printf '#END\n' | sha256sum
  EXPECT_EQ(a.content_hash, "043d68ab45fca66cd7e141d8df9e99df1e3b6d217e50e23eeef4499ffd3e8636");
  EXPECT_EQ(parse_text("#END\n", Format::yaml).content_hash, a.content_hash);
  EXPECT_NE(parse_text("#END\n\n", Format::yaml).content_hash, a.content_hash);
  EXPECT_EQ(parse_text("", Format::json).content_hash,
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  std::string text = read_data("example.yaml");
  EXPECT_EQ(parse_text(text, Format::yaml).content_hash,
            load_file(std::string(PORTICO_TEST_DATA) + "/config/example.yaml").content_hash);
  // Hashed even when invalid, so logs can tell which bytes were rejected.
  EXPECT_EQ(parse_text("nope", Format::json).content_hash.size(), 64u);
}

TEST(ConfigLoader, LoadFileErrors) {
  LoadResult r = load_file("/nonexistent/portico.yaml");
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "");
  EXPECT_NE(r.errors[0].reason.find("cannot read"), std::string::npos);
  EXPECT_EQ(r.content_hash, "");
  EXPECT_EQ(r.describe("/nonexistent/portico.yaml"),
            "/nonexistent/portico.yaml: cannot read the file: No such file or directory");
  LoadResult dir = load_file(PORTICO_TEST_DATA);
  ASSERT_FALSE(dir.ok);
  EXPECT_NE(dir.errors[0].reason.find("directory"), std::string::npos);
}

TEST(ConfigLoader, DescribeFormat) {
  LoadResult r;
  EXPECT_EQ(r.describe("f.yaml"), "");
  r.errors = {{"routes[0].uri", "must start with '/'"}, {"", "bad document"}};
  EXPECT_EQ(r.describe("f.yaml"), "f.yaml: routes[0].uri: must start with '/'; f.yaml: bad document");
  EXPECT_EQ(r.describe(), "routes[0].uri: must start with '/'; bad document");
  r.errors_truncated = true;
  EXPECT_EQ(r.describe(),
            "routes[0].uri: must start with '/'; bad document; more errors not shown (only the first 2 are "
            "reported)");
}

TEST(ConfigLoader, ErrorsAreCappedAt20) {
  json doc = {{"routes", json::array()}};
  for (int i = 0; i < 50; ++i) doc["routes"].push_back({{"id", i + 1}, {"uri", "bad"}, {"upstream_id", "u"}});
  LoadResult r = parse_text(doc.dump(), Format::json);
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.errors.size(), kMaxErrors);
  EXPECT_TRUE(r.errors_truncated);
  EXPECT_EQ(r.errors[0].path, "routes[0].uri");
  EXPECT_EQ(r.errors[19].path, "routes[19].uri");
  EXPECT_NE(r.describe().find("more errors not shown"), std::string::npos);
}

// --- YAML specifics ---

LoadResult yaml(const std::string& body) {
  return parse_text(body + "\n#END\n", Format::yaml);
}

const char* kUpstreamYaml = "upstreams:\n  - id: u1\n    nodes: {\"10.0.0.1:80\": 1}\n";

TEST(ConfigYaml, QuotedNumbersAreStrings) {
  // A quoted "80" is a string: rejected where an integer is expected, as in APISIX.
  LoadResult r = yaml(std::string(kUpstreamYaml) +
                      "routes:\n  - id: r1\n    uri: /a\n    upstream_id: u1\n    priority: \"80\"\n");
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "routes[0].priority");
  EXPECT_EQ(r.errors[0].reason, "wrong type: expected integer, got string");

  LoadResult ok =
      yaml(std::string(kUpstreamYaml) +
           "routes:\n  - id: \"007\"\n    uri: /a\n    upstream_id: u1\n    priority: 80\n"
           "    vars: [[arg_x, \"==\", 1.50], [arg_y, \"==\", \"1.50\"], [arg_z, \"==\", 0x1F]]\n");
  ASSERT_TRUE(ok.ok) << ok.describe();
  EXPECT_EQ(ok.config.routes[0].id, "007");
  EXPECT_EQ(ok.config.routes[0].priority, 80);
  EXPECT_EQ(ok.config.routes[0].vars[0].values[0], "1.5");   // a number, written in shortest form
  EXPECT_EQ(ok.config.routes[0].vars[1].values[0], "1.50");  // a string, as written
  EXPECT_EQ(ok.config.routes[0].vars[2].values[0], "31");
}

TEST(ConfigYaml, CoreSchemaScalars) {
  // yes/no/on/off are strings (YAML 1.2), so they are not booleans.
  LoadResult r = yaml(std::string(kUpstreamYaml) +
                      "routes:\n  - id: r1\n    uri: /a\n    upstream_id: u1\n    enable_websocket: yes\n");
  ASSERT_FALSE(r.ok);
  EXPECT_EQ(r.errors[0].path, "routes[0].enable_websocket");
  EXPECT_EQ(r.errors[0].reason, "wrong type: expected boolean, got string");
  EXPECT_TRUE(yaml(std::string(kUpstreamYaml) +
                   "routes:\n  - id: r1\n    uri: /a\n    upstream_id: u1\n    enable_websocket: True\n")
                  .ok);
  // ~ and empty values are null; a null list is an empty list.
  LoadResult empty = yaml("routes: ~\nservices:\nupstreams: null\n");
  ASSERT_TRUE(empty.ok) << empty.describe();
  EXPECT_TRUE(empty.config.routes.empty());
  // Tags.
  LoadResult tagged = yaml(std::string(kUpstreamYaml) +
                           "routes:\n  - id: !!int \"5\"\n    uri: /a\n    upstream_id: u1\n"
                           "    priority: !!str 3\n");
  ASSERT_FALSE(tagged.ok);
  ASSERT_EQ(tagged.errors.size(), 1u);
  EXPECT_EQ(tagged.errors[0].path, "routes[0].priority");
  LoadResult bad_tag =
      yaml(std::string(kUpstreamYaml) + "routes:\n  - id: !!int abc\n    uri: /a\n    upstream_id: u1\n");
  ASSERT_FALSE(bad_tag.ok);
  EXPECT_EQ(bad_tag.errors[0].path, "routes[0].id");
  EXPECT_EQ(bad_tag.errors[0].reason, "\"abc\" is not a valid !!int");
  // Floats and big integers.
  LoadResult nums =
      yaml(std::string(kUpstreamYaml) +
           "routes:\n  - id: r1\n    uri: /a\n    upstream_id: u1\n"
           "    timeout: {connect: .5, send: 1e1, read: 2.}\n    priority: 99999999999999999999999\n");
  ASSERT_FALSE(nums.ok);
  ASSERT_EQ(nums.errors.size(), 1u);
  EXPECT_EQ(nums.errors[0].path, "routes[0].priority");
}

TEST(ConfigYaml, AnchorsAliasesAndMergeKeys) {
  LoadResult r = yaml(R"(upstreams:
  - id: a
    nodes: &pool {"10.0.0.1:80": 1, "10.0.0.2:80": 1}
    checks: &checks {active: {http_path: /ping}}
  - id: b
    nodes: *pool
    checks: *checks
routes:
  - &base {id: r1, uri: /one, upstream_id: a, methods: [GET]}
  - <<: *base
    id: r2
    uri: /two
  - <<: [{priority: 5}, *base]
    id: r3
)");
  ASSERT_TRUE(r.ok) << r.describe();
  ASSERT_EQ(r.config.upstreams[1].nodes.size(), 2u);
  EXPECT_EQ(r.config.upstreams[1].checks->active->http_path, "/ping");
  ASSERT_EQ(r.config.routes.size(), 3u);
  EXPECT_EQ(r.config.routes[1].id, "r2");
  EXPECT_EQ(r.config.routes[1].uris, std::vector<std::string>{"/two"});
  EXPECT_EQ(r.config.routes[1].methods, std::vector<std::string>{"GET"});
  EXPECT_EQ(r.config.routes[2].uris, std::vector<std::string>{"/one"});
  EXPECT_EQ(r.config.routes[2].priority, 5);

  // A whole section behind an anchor is not streamed but still validated.
  LoadResult anchored =
      yaml(std::string(kUpstreamYaml) + "routes: &all\n  - {id: r1, uri: nope, upstream_id: u1}\n");
  ASSERT_FALSE(anchored.ok);
  ASSERT_EQ(anchored.errors.size(), 1u) << anchored.describe();
  EXPECT_EQ(anchored.errors[0].path, "routes[0].uri");

  LoadResult bad = yaml("routes:\n  - <<: 5\n    id: r1\n");
  ASSERT_FALSE(bad.ok);
  EXPECT_EQ(bad.errors[0].path, "routes[0][\"<<\"]");
}

TEST(ConfigYaml, UnquotedNodeKeys) {
  LoadResult r =
      yaml("upstreams:\n  - id: u1\n    nodes:\n      10.0.0.1:8080: 1\n      backend.internal: 2\n");
  ASSERT_TRUE(r.ok) << r.describe();
  ASSERT_EQ(r.config.upstreams[0].nodes.size(), 2u);
  EXPECT_EQ(r.config.upstreams[0].nodes[0].host, "10.0.0.1");
  EXPECT_EQ(r.config.upstreams[0].nodes[0].port, 8080);
  EXPECT_EQ(r.config.upstreams[0].nodes[1].port, 80);
  // An unquoted IPv6 key starts a YAML list; the error says to quote it.
  LoadResult v6 = yaml("upstreams:\n  - id: u1\n    nodes:\n      [::1]:8080: 1\n");
  ASSERT_FALSE(v6.ok);
  EXPECT_NE(v6.errors[0].reason.find("quote keys that start with '['"), std::string::npos) << v6.describe();
}

TEST(ConfigYaml, DuplicateKeysAreErrors) {
  LoadResult r = yaml(std::string(kUpstreamYaml) +
                      "routes:\n  - id: r1\n    uri: /a\n    uri: /b\n    upstream_id: u1\n");
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "routes[0].uri");
  EXPECT_EQ(r.errors[0].reason, "duplicate key \"uri\"");

  LoadResult top = yaml("routes: []\nroutes: []\n");
  ASSERT_FALSE(top.ok);
  EXPECT_EQ(top.errors[0].path, "routes");

  LoadResult j = parse_text(R"({"upstreams": [{"id": "u", "nodes": {"a:1": 1, "a:1": 2}}]})", Format::json);
  ASSERT_FALSE(j.ok);
  ASSERT_EQ(j.errors.size(), 1u);
  EXPECT_EQ(j.errors[0].path, "upstreams[0].nodes[\"a:1\"]");
  EXPECT_EQ(j.errors[0].reason, "duplicate key \"a:1\"");
}

TEST(ConfigYaml, SyntaxErrorsGiveLineAndColumn) {
  LoadResult r = yaml("routes:\n  - id: r1\n    uri: [/a\n");
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "");
  EXPECT_EQ(r.errors[0].reason.rfind("invalid YAML at line ", 0), 0u) << r.errors[0].reason;

  LoadResult two = yaml("routes: []\n---\nroutes: []\n");
  ASSERT_FALSE(two.ok);
  EXPECT_NE(two.errors[0].reason.find("single YAML document"), std::string::npos) << two.errors[0].reason;
  EXPECT_NE(two.errors[0].reason.find("line 2"), std::string::npos) << two.errors[0].reason;

  LoadResult complex = yaml("routes:\n  - ? [a, b]\n    : 1\n");
  ASSERT_FALSE(complex.ok);
  EXPECT_NE(complex.errors[0].reason.find("mapping key"), std::string::npos) << complex.errors[0].reason;

  LoadResult j = parse_text("{\"routes\": [\n  {\"id\": 1,}\n]}", Format::json);
  ASSERT_FALSE(j.ok);
  ASSERT_EQ(j.errors.size(), 1u);
  EXPECT_EQ(j.errors[0].reason.rfind("invalid JSON at line 2, column ", 0), 0u) << j.errors[0].reason;
  EXPECT_EQ(j.errors[0].reason.find('\n'), std::string::npos);
}

TEST(ConfigYaml, DeepNestingIsCapped) {
  std::string deep(200, '[');
  deep += std::string(200, ']');
  LoadResult j = parse_text(R"({"routes": )" + deep + "}", Format::json);
  ASSERT_FALSE(j.ok);
  EXPECT_NE(j.describe().find("nested deeper than 64 levels"), std::string::npos) << j.describe();
  LoadResult y = yaml("routes: " + deep);
  ASSERT_FALSE(y.ok);
}

}  // namespace
}  // namespace portico::config
