// Consumers, global rules and plugin configs: valid examples, every rejected field with its exact path,
// plugin_config_id references and body-limit precedence. SSLs and the tests needing a certificate are in
// config_ssl_test.cc.
#include <gtest/gtest.h>

#include <limits>

#include <nlohmann/json.hpp>

#include "config/loader.h"
#include "config/validate.h"

namespace portico::config {
namespace {

using nlohmann::json;

// ---- helpers ----

LoadResult load(const json& document) {
  return parse_text(document.dump(), Format::json);
}

struct Case {
  std::string name;
  json document;
  std::string path;
  std::string reason;  // a substring of the expected reason
};

// Each case must be rejected with exactly one error, at `path`.
void expect_cases(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    LoadResult r = load(c.document);
    ASSERT_FALSE(r.ok) << c.document.dump();
    ASSERT_EQ(r.errors.size(), 1u) << r.describe();
    EXPECT_EQ(r.errors[0].path, c.path) << r.describe();
    EXPECT_NE(r.errors[0].reason.find(c.reason), std::string::npos)
        << "reason: " << r.errors[0].reason << "\nexpected to contain: " << c.reason;
  }
}

json with(json base, const json& fields) {
  for (auto it = fields.begin(); it != fields.end(); ++it) {
    if (it.value().is_null()) {
      base.erase(it.key());
    } else {
      base[it.key()] = it.value();
    }
  }
  return base;
}

json doc(const char* section, const json& item) {
  return {{section, json::array({item})}};
}

const json kUpstreams = json::array({{{"id", "u1"}, {"nodes", {{"10.0.0.1:80", 1}}}}});

// ---- consumers ----

const json kConsumer = {{"username", "jack_01-x"},
                        {"desc", "the mobile app"},
                        {"labels", {{"env", "prod"}, {"app", "ios"}}},
                        {"plugins", {{"client-control", {{"max_body_size", 2048}}}}},
                        {"create_time", 1700000000},
                        {"update_time", 1700000001}};

TEST(ConfigConsumer, FullExample) {
  LoadResult r = load(doc("consumers", kConsumer));
  ASSERT_TRUE(r.ok) << r.describe();
  ASSERT_EQ(r.config.consumers.size(), 1u);
  const Consumer& c = r.config.consumers[0];
  EXPECT_EQ(c.username, "jack_01-x");
  EXPECT_EQ(c.desc, "the mobile app");
  EXPECT_EQ(c.labels, (Labels{{"app", "ios"}, {"env", "prod"}}));  // sorted by name
  EXPECT_EQ(c.max_body_size, 2048);
}

TEST(ConfigConsumer, Minimal) {
  Errors errors;
  std::optional<Consumer> c = validate_consumer(json{{"username", "a"}}, "", errors);
  ASSERT_TRUE(c) << errors.list()[0].reason;
  EXPECT_EQ(c->max_body_size, -1);
  EXPECT_TRUE(c->labels.empty());
}

TEST(ConfigConsumer, RejectsEachBadField) {
  expect_cases({
      {"not_mapping", doc("consumers", "jack"), "consumers[0]", "wrong type: expected object, got string"},
      {"username_missing", doc("consumers", with(kConsumer, {{"username", nullptr}})),
       "consumers[0].username", "property \"username\" is required"},
      {"username_dot", doc("consumers", with(kConsumer, {{"username", "a.b"}})), "consumers[0].username",
       R"(failed to match pattern "^[a-zA-Z0-9_-]+\\z" with "a.b")"},
      {"username_empty", doc("consumers", with(kConsumer, {{"username", ""}})), "consumers[0].username",
       "string too short, expected at least 1, got 0"},
      {"username_long", doc("consumers", with(kConsumer, {{"username", std::string(257, 'a')}})),
       "consumers[0].username", "string too long, expected at most 256, got 257"},
      {"username_int", doc("consumers", with(kConsumer, {{"username", 5}})), "consumers[0].username",
       "wrong type: expected string, got number"},
      {"desc_long", doc("consumers", with(kConsumer, {{"desc", std::string(257, 'd')}})), "consumers[0].desc",
       "string too long, expected at most 256, got 257"},
      {"labels_space", doc("consumers", with(kConsumer, {{"labels", {{"env", "a b"}}}})),
       "consumers[0].labels.env", R"(failed to match pattern "^\\S+\\z" with "a b")"},
      {"labels_long", doc("consumers", with(kConsumer, {{"labels", {{"env", std::string(257, 'v')}}}})),
       "consumers[0].labels.env", "string too long, expected at most 256, got 257"},
      {"labels_list", doc("consumers", with(kConsumer, {{"labels", json::array()}})), "consumers[0].labels",
       "wrong type: expected object, got array"},
      {"auth_plugin_no_key", doc("consumers", with(kConsumer, {{"plugins", {{"key-auth", json::object()}}}})),
       "consumers[0].plugins.key-auth.key", "property \"key\" is required"},
      {"body_size_negative",
       doc("consumers", with(kConsumer, {{"plugins", {{"client-control", {{"max_body_size", -1}}}}}})),
       "consumers[0].plugins.client-control.max_body_size", "expected -1 to be at least 0"},
      {"plugins_list", doc("consumers", with(kConsumer, {{"plugins", json::array()}})),
       "consumers[0].plugins", "wrong type: expected object, got array"},
      {"group_id", doc("consumers", with(kConsumer, {{"group_id", "g1"}})), "consumers[0].group_id",
       "not supported"},
      {"unknown", doc("consumers", with(kConsumer, {{"usernme", "x"}})), "consumers[0].usernme",
       "additional properties forbidden, found usernme"},
      {"create_time_negative", doc("consumers", with(kConsumer, {{"create_time", -5}})),
       "consumers[0].create_time", "expected -5 to be at least 0"},
      {"duplicate_username",
       {{"consumers", json::array({kConsumer, with(kConsumer, {{"desc", "other"}})})}},
       "consumers[1].username",
       "duplicate consumer username \"jack_01-x\" (first defined at consumers[0])"},
  });
}

TEST(ConfigConsumer, UsernameMayComeFromTheUrl) {
  ValidateOptions options;
  options.id_required = false;
  Errors errors;
  EXPECT_TRUE(validate_consumer(json{{"desc", "x"}}, "", errors, options));
  EXPECT_FALSE(validate_consumer(json{{"desc", "x"}}, "", errors));
  ASSERT_EQ(errors.list().size(), 1u);
  EXPECT_EQ(errors.list()[0].path, "username");
  EXPECT_EQ(errors.list()[0].reason, "property \"username\" is required");
}

// ---- global rules ----

const json kGlobalRule = {{"id", 1},
                          {"plugins", {{"client-control", {{"max_body_size", 0}}}}},
                          {"create_time", 1700000000},
                          {"update_time", 1700000000}};

TEST(ConfigGlobalRule, FullExample) {
  LoadResult r = load(doc("global_rules", kGlobalRule));
  ASSERT_TRUE(r.ok) << r.describe();
  ASSERT_EQ(r.config.global_rules.size(), 1u);
  EXPECT_EQ(r.config.global_rules[0].id, "1");
  EXPECT_EQ(r.config.global_rules[0].max_body_size, std::numeric_limits<int64_t>::max());  // 0: no limit
  // An empty plugins mapping is valid (APISIX only requires the field).
  EXPECT_TRUE(load(doc("global_rules", {{"id", "g"}, {"plugins", json::object()}})).ok);
}

TEST(ConfigGlobalRule, RejectsEachBadField) {
  expect_cases({
      {"not_mapping", doc("global_rules", 1), "global_rules[0]", "wrong type: expected object, got number"},
      {"id_missing", doc("global_rules", with(kGlobalRule, {{"id", nullptr}})), "global_rules[0].id",
       "property \"id\" is required"},
      {"id_bad", doc("global_rules", with(kGlobalRule, {{"id", "a/b"}})), "global_rules[0].id",
       R"(failed to match pattern "^(?!\\.\\.?\\z)[a-zA-Z0-9_.-]+\\z" with "a/b")"},
      {"plugins_missing", doc("global_rules", with(kGlobalRule, {{"plugins", nullptr}})),
       "global_rules[0].plugins", "property \"plugins\" is required"},
      {"plugins_string", doc("global_rules", with(kGlobalRule, {{"plugins", "x"}})),
       "global_rules[0].plugins", "wrong type: expected object, got string"},
      {"other_plugin",
       doc("global_rules", with(kGlobalRule, {{"plugins", {{"ua-restriction", json::object()}}}})),
       "global_rules[0].plugins.ua-restriction", "plugin 'ua-restriction' is not supported by this version"},
      {"meta",
       doc("global_rules",
           with(kGlobalRule, {{"plugins", {{"client-control", {{"_meta", {{"filter", json::array()}}}}}}}})),
       "global_rules[0].plugins.client-control._meta.filter", "additional properties forbidden"},
      {"desc", doc("global_rules", with(kGlobalRule, {{"desc", "x"}})), "global_rules[0].desc",
       "additional properties forbidden, found desc"},
      {"update_time_string", doc("global_rules", with(kGlobalRule, {{"update_time", "now"}})),
       "global_rules[0].update_time", "wrong type: expected integer, got string"},
      {"duplicate_id",
       {{"global_rules", json::array({kGlobalRule, with(kGlobalRule, {{"id", "1"}})})}},
       "global_rules[1].id",
       "duplicate global rule id \"1\" (first defined at global_rules[0])"},
  });
}

// ---- plugin configs ----

const json kPluginConfig = {{"id", "pc1"},
                            {"name", "small bodies"},
                            {"desc", "shared limits"},
                            {"labels", {{"team", "core"}}},
                            {"plugins", {{"client-control", {{"max_body_size", 100}}}}},
                            {"create_time", 1},
                            {"update_time", 2}};

TEST(ConfigPluginConfig, FullExample) {
  LoadResult r = load(doc("plugin_configs", kPluginConfig));
  ASSERT_TRUE(r.ok) << r.describe();
  ASSERT_EQ(r.config.plugin_configs.size(), 1u);
  const PluginConfig& p = r.config.plugin_configs[0];
  EXPECT_EQ(p.id, "pc1");
  EXPECT_EQ(p.name, "small bodies");
  EXPECT_EQ(p.desc, "shared limits");
  EXPECT_EQ(p.labels, (Labels{{"team", "core"}}));
  EXPECT_EQ(p.max_body_size, 100);
}

TEST(ConfigPluginConfig, RejectsEachBadField) {
  expect_cases({
      {"not_mapping", doc("plugin_configs", json::array()), "plugin_configs[0]",
       "wrong type: expected object, got array"},
      {"id_missing", doc("plugin_configs", with(kPluginConfig, {{"id", nullptr}})), "plugin_configs[0].id",
       "property \"id\" is required"},
      {"plugins_missing", doc("plugin_configs", with(kPluginConfig, {{"plugins", nullptr}})),
       "plugin_configs[0].plugins", "property \"plugins\" is required"},
      {"other_plugin",
       doc("plugin_configs", with(kPluginConfig, {{"plugins", {{"ua-restriction", json::object()}}}})),
       "plugin_configs[0].plugins.ua-restriction", "not supported by this version"},
      {"body_size_float",
       doc("plugin_configs",
           with(kPluginConfig, {{"plugins", {{"client-control", {{"max_body_size", 1.5}}}}}})),
       "plugin_configs[0].plugins.client-control.max_body_size", "wrong type: expected integer, got number"},
      {"name_empty", doc("plugin_configs", with(kPluginConfig, {{"name", ""}})), "plugin_configs[0].name",
       "string too short, expected at least 1, got 0"},
      {"desc_int", doc("plugin_configs", with(kPluginConfig, {{"desc", 1}})), "plugin_configs[0].desc",
       "wrong type: expected string, got number"},
      {"labels_value", doc("plugin_configs", with(kPluginConfig, {{"labels", {{"team", true}}}})),
       "plugin_configs[0].labels.team", "wrong type: expected string, got boolean"},
      {"unknown", doc("plugin_configs", with(kPluginConfig, {{"plugin", json::object()}})),
       "plugin_configs[0].plugin", "additional properties forbidden, found plugin"},
      {"duplicate_id",
       {{"plugin_configs", json::array({kPluginConfig, kPluginConfig})}},
       "plugin_configs[1].id",
       "duplicate plugin config id \"pc1\" (first defined at plugin_configs[0])"},
  });
}

// ---- what the resource schemas say, and what the validators add ----

TEST(ConfigResourceSchema, IdsFollowValidIdTextIncludingItsExceptions) {
  expect_cases({
      {"dot", doc("global_rules", with(kGlobalRule, {{"id", "."}})), "global_rules[0].id",
       "failed to match pattern"},
      {"dotdot", doc("plugin_configs", with(kPluginConfig, {{"id", ".."}})), "plugin_configs[0].id",
       "failed to match pattern"},
      // PCRE's $ matches before a final newline; the schemas anchor with \z.
      {"newline", doc("global_rules", with(kGlobalRule, {{"id", "a\n"}})), "global_rules[0].id",
       "failed to match pattern"},
      {"username_newline", doc("consumers", with(kConsumer, {{"username", "jack\n"}})),
       "consumers[0].username", "failed to match pattern"},
      {"label_newline", doc("consumers", with(kConsumer, {{"labels", {{"env", "prod\n"}}}})),
       "consumers[0].labels.env", "failed to match pattern"},
      {"too_long", doc("global_rules", with(kGlobalRule, {{"id", std::string(65, 'a')}})),
       "global_rules[0].id", "string too long, expected at most 64, got 65"},
      {"zero", doc("global_rules", with(kGlobalRule, {{"id", 0}})), "global_rules[0].id",
       "expected 0 to be at least 1"},
      {"bool", doc("plugin_configs", with(kPluginConfig, {{"id", true}})), "plugin_configs[0].id",
       "wrong type: expected one of string, integer, got boolean"},
      // An integral float passes the schema (5.0 is an integer there) but has no decimal text as an id.
      {"float", doc("global_rules", with(kGlobalRule, {{"id", 5.0}})), "global_rules[0].id",
       "an integer id must be written without a fraction or an exponent, got 5.0"},
      {"credential_dotdot",
       {{"consumers", json::array({{{"username", "jack"}}})},
        {"credentials", json::array({{{"id", "jack/credentials/.."}}})}},
       "credentials[0].id",
       "failed to match pattern"},
  });
  EXPECT_TRUE(load(doc("global_rules", with(kGlobalRule, {{"id", "a.b-c_9"}}))).ok);
  EXPECT_TRUE(load(doc("global_rules", with(kGlobalRule, {{"id", std::string(64, 'a')}}))).ok);
}

TEST(ConfigResourceSchema, SchemaErrorsComeFirstThenThePluginsOwn) {
  LoadResult r =
      load(doc("consumers", with(kConsumer, {{"desc", 5}, {"plugins", {{"key-auth", json::object()}}}})));
  ASSERT_EQ(r.errors.size(), 2u) << r.describe();
  EXPECT_EQ(r.errors[0].path, "consumers[0].desc");
  EXPECT_EQ(r.errors[0].reason, "wrong type: expected string, got number");
  EXPECT_EQ(r.errors[1].path, "consumers[0].plugins.key-auth.key");
  EXPECT_EQ(r.errors[1].reason, "property \"key\" is required");
}

TEST(ConfigResourceSchema, ACredentialWithTwoPluginsGetsOneError) {
  LoadResult r =
      load({{"consumers", json::array({{{"username", "jack"}}})},
            {"credentials",
             json::array({{{"id", "jack/credentials/c1"},
                           {"plugins", {{"key-auth", json::object()}, {"nope", json::object()}}}}})}});
  ASSERT_EQ(r.errors.size(), 1u) << r.describe();
  EXPECT_EQ(r.errors[0].path, "credentials[0].plugins");
  EXPECT_EQ(r.errors[0].reason, "expect object to have at most 1 properties");
}

TEST(ConfigResourceSchema, TheKeyMayComeFromTheUrlForEveryKind) {
  ValidateOptions keyless;
  keyless.id_required = false;
  const json rule = {{"plugins", json::object()}};
  Errors errors;
  EXPECT_TRUE(validate_global_rule(rule, "", errors, keyless));
  EXPECT_TRUE(validate_plugin_config(rule, "", errors, keyless));
  EXPECT_TRUE(validate_credential(json::object(), "", errors, keyless));
  EXPECT_EQ(errors.total(), 0u);
  EXPECT_FALSE(validate_global_rule(rule, "body", errors));
  EXPECT_FALSE(validate_credential(json::object(), "", errors));
  ASSERT_EQ(errors.list().size(), 2u);
  EXPECT_EQ(errors.list()[0].path, "body.id");
  EXPECT_EQ(errors.list()[0].reason, "property \"id\" is required");
  EXPECT_EQ(errors.list()[1].path, "id");
  // Without its key, a global rule still needs its plugins.
  EXPECT_FALSE(validate_global_rule(json::object(), "", errors, keyless));
  EXPECT_EQ(errors.list().back().path, "plugins");
}

// ---- plugin_config_id and body-limit precedence ----

json route(const char* id, const json& fields = json::object()) {
  return with({{"id", id}, {"uri", std::string("/") + id}, {"upstream_id", "u1"}}, fields);
}
json body_limit(int64_t bytes) {
  return {{"client-control", {{"max_body_size", bytes}}}};
}

TEST(ConfigPluginConfigId, DanglingReferenceIsReportedAtTheRoute) {
  json d = {{"upstreams", kUpstreams},
            {"plugin_configs", json::array({kPluginConfig})},
            {"routes", json::array({route("r1", {{"plugin_config_id", "pc1"}}),
                                    route("r2", {{"plugin_config_id", "pc9"}})})}};
  LoadResult r = load(d);
  ASSERT_EQ(r.errors.size(), 1u) << r.describe();
  EXPECT_EQ(r.errors[0].path, "routes[1].plugin_config_id");
  EXPECT_EQ(r.errors[0].reason, "plugin config \"pc9\" is not defined in plugin_configs");
}

TEST(ConfigPluginConfigId, InvalidPluginConfigIsReportedOnlyOnce) {
  json d = {
      {"upstreams", kUpstreams},
      {"plugin_configs",
       json::array({with(kPluginConfig, {{"plugins", {{"serverless-pre-function", json::object()}}}})})},
      {"routes", json::array({route("r1", {{"plugin_config_id", "pc1"}})})}};
  LoadResult r = load(d);
  ASSERT_EQ(r.errors.size(), 1u) << r.describe();
  EXPECT_EQ(r.errors[0].path, "plugin_configs[0].plugins.serverless-pre-function");
}

TEST(ConfigPluginConfigId, BodyLimitPrecedence) {
  json d = {
      {"upstreams", kUpstreams},
      {"services", json::array({{{"id", "s-limit"}, {"upstream_id", "u1"}, {"plugins", body_limit(200)}},
                                {{"id", "s-none"}, {"upstream_id", "u1"}}})},
      {"plugin_configs", json::array({{{"id", "pc-limit"}, {"plugins", body_limit(100)}},
                                      {{"id", "pc-none"}, {"plugins", json::object()}},
                                      {{"id", "pc-unlimited"}, {"plugins", body_limit(0)}}})},
      {"global_rules", json::array({{{"id", "g1"}, {"plugins", body_limit(300)}},
                                    {{"id", "g2"}, {"plugins", json::object()}},
                                    {{"id", "g3"}, {"plugins", body_limit(400)}}})},
      {"routes", json::array({
                     route("own", {{"plugins", body_limit(50)}, {"plugin_config_id", "pc-limit"}}),
                     route("pc-over-service", {{"plugin_config_id", "pc-limit"}, {"service_id", "s-limit"}}),
                     route("service", {{"plugin_config_id", "pc-none"}, {"service_id", "s-limit"}}),
                     route("global", {{"plugin_config_id", "pc-none"}, {"service_id", "s-none"}}),
                     route("bare"),
                     route("unlimited", {{"plugin_config_id", "pc-unlimited"}}),
                 })}};
  LoadResult r = load(d);
  ASSERT_TRUE(r.ok) << r.describe();
  const auto& routes = r.config.routes;
  ASSERT_EQ(routes.size(), 6u);
  EXPECT_EQ(routes[0].max_body_size, 50);   // the route's own plugins
  EXPECT_EQ(routes[1].max_body_size, 100);  // plugin config over service
  EXPECT_EQ(routes[2].max_body_size, 200);  // the plugin config sets none: the service's
  EXPECT_EQ(routes[3].max_body_size, 400);  // global rules; the last one setting a limit wins
  EXPECT_EQ(routes[4].max_body_size, 400);
  EXPECT_EQ(routes[5].max_body_size, std::numeric_limits<int64_t>::max());
  EXPECT_EQ(routes[1].plugin_config_id, "pc-limit");
  EXPECT_EQ(routes[4].plugin_config_id, "");
}

TEST(ConfigPluginConfigId, WithoutGlobalRulesARouteKeepsTheListenerDefault) {
  json d = {{"upstreams", kUpstreams},
            {"plugin_configs", json::array({{{"id", 7}, {"plugins", json::object()}}})},
            {"routes", json::array({route("r1", {{"plugin_config_id", 7}})})}};
  LoadResult r = load(d);
  ASSERT_TRUE(r.ok) << r.describe();
  EXPECT_EQ(r.config.routes[0].plugin_config_id, "7");
  EXPECT_EQ(r.config.routes[0].max_body_size, -1);
}

TEST(ConfigPluginConfigId, CheckConfigResolvesAndFolds) {
  Errors errors;
  Config config;
  config.upstreams.push_back(*validate_upstream(kUpstreams[0], "", errors));
  config.plugin_configs.push_back(*validate_plugin_config(kPluginConfig, "", errors));
  config.routes.push_back(*validate_route(route("r1", {{"plugin_config_id", "pc1"}}), "", errors));
  ASSERT_EQ(errors.total(), 0u);
  EXPECT_TRUE(check_config(config, errors));
  EXPECT_EQ(config.routes[0].max_body_size, 100);

  config.routes[0].plugin_config_id = "nope";
  config.routes[0].max_body_size = -1;
  EXPECT_FALSE(check_config(config, errors));
  ASSERT_EQ(errors.list().size(), 1u);
  EXPECT_EQ(errors.list()[0].path, "routes[0].plugin_config_id");
  EXPECT_EQ(config.routes[0].max_body_size, -1);  // nothing folded on failure
}

TEST(ConfigCheck, DuplicatesOfNewKinds) {
  Errors errors;
  Config config;
  config.consumers.resize(2);
  config.consumers[0].username = config.consumers[1].username = "jack";
  config.ssls.resize(2);
  config.ssls[0].id = config.ssls[1].id = "s";
  config.global_rules.resize(2);
  config.global_rules[0].id = config.global_rules[1].id = "g";
  config.plugin_configs.resize(2);
  config.plugin_configs[0].id = config.plugin_configs[1].id = "p";
  EXPECT_FALSE(check_config(config, errors));
  ASSERT_EQ(errors.list().size(), 4u);
  EXPECT_EQ(errors.list()[0].path, "consumers[1].username");
  EXPECT_EQ(errors.list()[1].path, "ssls[1].id");
  EXPECT_EQ(errors.list()[2].path, "global_rules[1].id");
  EXPECT_EQ(errors.list()[3].path, "plugin_configs[1].id");
}

}  // namespace
}  // namespace portico::config
