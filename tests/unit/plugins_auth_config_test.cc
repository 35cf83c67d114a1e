// The auth plugins' configuration (config/plugin_defs_auth.cc): APISIX's field names and defaults, and the
// checks no schema can express (a key that loads and fits its algorithm, a secret where the algorithm needs
// one and nowhere else, a Basic username a client can send), each at its field's path. In unit_plugins
// because the keys come from plugins_jwt_sign.h.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "config/loader.h"
#include "config/plugin_catalog.h"
#include "config/validate.h"
#include "plugins_jwt_sign.h"

namespace portico::config {
namespace {

using json = nlohmann::json;
namespace signing = plugins::jwt::signing;

json consumer_with(const std::string& plugin, const json& conf) {
  return {{"consumers", json::array({{{"username", "c1"}, {"plugins", {{plugin, conf}}}}})}};
}

// The one error of `doc`, as "path: reason".
std::string refusal(const json& doc) {
  LoadResult r = parse_text(doc.dump(), Format::json);
  if (r.ok) return "accepted";
  EXPECT_EQ(r.errors.size(), 1u) << r.describe();
  return r.errors[0].path + ": " + r.errors[0].reason;
}

json accepted_conf(const json& doc, const std::string& plugin) {
  LoadResult r = parse_text(doc.dump(), Format::json);
  EXPECT_TRUE(r.ok) << r.describe();
  if (!r.ok) return nullptr;
  for (const auto& spec : r.config.consumers.at(0).plugins) {
    if (spec.name == plugin) return *spec.conf;
  }
  return nullptr;
}

TEST(AuthPluginDefs, CatalogEntries) {
  const PluginDef* basic = find_plugin("basic-auth");
  const PluginDef* jwt = find_plugin("jwt-auth");
  ASSERT_TRUE(basic && jwt);
  EXPECT_EQ(basic->priority, 2520);
  EXPECT_EQ(jwt->priority, 2510);
  EXPECT_EQ(basic->type, PluginType::auth);
  EXPECT_EQ(jwt->type, PluginType::auth);
  ASSERT_EQ(basic->encrypt_fields.size(), 1u);
  EXPECT_EQ(basic->encrypt_fields[0], "password");
  ASSERT_EQ(jwt->encrypt_fields.size(), 1u);
  EXPECT_EQ(jwt->encrypt_fields[0], "secret");
}

TEST(AuthPluginDefs, BasicAuthConsumer) {
  EXPECT_EQ(
      accepted_conf(consumer_with("basic-auth", {{"username", "foo"}, {"password", "b:a r"}}), "basic-auth"),
      (json{{"username", "foo"}, {"password", "b:a r"}}));
  EXPECT_EQ(refusal(consumer_with("basic-auth", {{"username", "foo"}})),
            "consumers[0].plugins.basic-auth.password: property \"password\" is required");
  EXPECT_EQ(refusal(consumer_with("basic-auth", {{"username", 123}, {"password", "bar"}})),
            "consumers[0].plugins.basic-auth.username: wrong type: expected string, got number");
  EXPECT_NE(refusal(consumer_with("basic-auth", {{"username", "foo"}, {"password", ""}}))
                .find("consumers[0].plugins.basic-auth.password: string too short"),
            std::string::npos);
  EXPECT_NE(refusal(consumer_with("basic-auth", {{"username", "a:b"}, {"password", "bar"}}))
                .find("consumers[0].plugins.basic-auth.username: must not contain ':'"),
            std::string::npos);
  EXPECT_NE(refusal(consumer_with("basic-auth", {{"username", "foo"}, {"password", "b\nr"}}))
                .find("consumers[0].plugins.basic-auth.password: must not contain control characters"),
            std::string::npos);
}

TEST(AuthPluginDefs, JwtAuthConsumerDefaults) {
  EXPECT_EQ(accepted_conf(consumer_with("jwt-auth", {{"key", "k"}, {"secret", "s"}}), "jwt-auth"),
            (json{{"key", "k"},
                  {"secret", "s"},
                  {"algorithm", "HS256"},
                  {"exp", 86400},
                  {"base64_secret", false},
                  {"lifetime_grace_period", 0}}));
  const std::string rsa = signing::test_key("RSA").public_pem;
  EXPECT_FALSE(
      accepted_conf(consumer_with("jwt-auth", {{"key", "k"}, {"algorithm", "RS256"}, {"public_key", rsa}}),
                    "jwt-auth")
          .is_null());
  const std::string ec = signing::test_key("P-256").public_pem;
  EXPECT_FALSE(
      accepted_conf(consumer_with("jwt-auth", {{"key", "k"}, {"algorithm", "ES256"}, {"public_key", ec}}),
                    "jwt-auth")
          .is_null());
}

TEST(AuthPluginDefs, JwtAuthConsumerRefusals) {
  const std::string rsa = signing::test_key("RSA").public_pem;
  const std::string ec = signing::test_key("P-256").public_pem;
  const std::string p = "consumers[0].plugins.jwt-auth.";
  struct Case {
    json conf;
    std::string want;  // a prefix of "path: reason"
  } cases[] = {
      {{{"secret", "s"}}, p + "key: property \"key\" is required"},
      {{{"key", "k"}}, p + "secret: property \"secret\" is required when \"algorithm\" is \"HS256\""},
      {{{"key", "k"}, {"algorithm", "HS384"}}, p + "secret: property \"secret\" is required when"},
      {{{"key", "k"}, {"secret", "not base64!"}, {"base64_secret", true}},
       p + "secret: base64_secret required but the secret is not in base64 format"},
      {{{"key", "k"}, {"algorithm", "RS256"}}, p + "public_key: missing valid public key"},
      {{{"key", "k"}, {"algorithm", "RS256"}, {"public_key", "-----BEGIN PUBLIC KEY-----\nxx\n"}},
       p + "public_key: invalid public key"},
      {{{"key", "k"}, {"algorithm", "RS256"}, {"public_key", ec}},
       p + "public_key: invalid public key: RS256"},
      {{{"key", "k"}, {"algorithm", "ES256"}, {"public_key", rsa}},
       p + "public_key: invalid public key: ES256"},
      {{{"key", "k"}, {"algorithm", "RS256"}, {"public_key", rsa}, {"secret", "s"}},
       p + "secret: is not used when \"algorithm\" is \"RS256\""},
      {{{"key", "k"}, {"algorithm", "RS256"}, {"public_key", rsa}, {"base64_secret", true}},
       p + "base64_secret: is not used when"},
      {{{"key", "k"}, {"secret", "s"}, {"public_key", rsa}},
       p + "public_key: is not used when \"algorithm\" is \"HS256\""},
      {{{"key", "k"}, {"algorithm", "RS256"}, {"public_key", rsa}, {"private_key", "x"}},
       p + "private_key: additional properties forbidden"},
      {{{"key", "k"}, {"secret", "s"}, {"algorithm", "none"}}, p + "algorithm: "},
      {{{"key", ""}, {"secret", "s"}}, p + "key: string too short"},
      {{{"key", "k"}, {"secret", "s"}, {"lifetime_grace_period", -1}}, p + "lifetime_grace_period: "},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.conf.dump());
    const std::string got = refusal(consumer_with("jwt-auth", c.conf));
    EXPECT_EQ(got.substr(0, c.want.size()), c.want) << got;
  }
}

TEST(AuthPluginDefs, RouteSides) {
  auto route = [](const json& plugins) {
    return json{{"routes", json::array({{{"id", "r1"},
                                         {"uri", "/x"},
                                         {"plugins", plugins},
                                         {"upstream", {{"nodes", {{"127.0.0.1:80", 1}}}}}}})}};
  };
  LoadResult r =
      parse_text(route({{"jwt-auth", json::object()}, {"basic-auth", json::object()}}).dump(), Format::json);
  ASSERT_TRUE(r.ok) << r.describe();
  for (const auto& spec : r.config.routes.at(0).plugins) {
    if (spec.name == "jwt-auth") {
      EXPECT_EQ(*spec.conf, (json{{"header", "authorization"},
                                  {"query", "jwt"},
                                  {"cookie", "jwt"},
                                  {"hide_credentials", false},
                                  {"key_claim_name", "key"},
                                  {"store_in_ctx", false},
                                  {"realm", "jwt"},
                                  {"claims_to_verify", {"exp", "nbf"}}}));
    } else {
      EXPECT_EQ(*spec.conf, (json{{"hide_credentials", false}, {"realm", "basic"}}));
    }
  }
  EXPECT_EQ(refusal(route({{"jwt-auth", {{"key_claim_name", ""}}}})),
            "routes[0].plugins.jwt-auth.key_claim_name: string too short, expected at least 1, got 0");
  EXPECT_EQ(refusal(route({{"jwt-auth", {{"claims_to_verify", {"exp", "iat"}}}}})).substr(0, 46),
            "routes[0].plugins.jwt-auth.claims_to_verify[1]");
  EXPECT_EQ(refusal(route({{"basic-auth", {{"realm", "a\"b"}}}})).substr(0, 50),
            "routes[0].plugins.basic-auth.realm: must not conta");
  EXPECT_EQ(refusal(route({{"jwt-auth", {{"anonymous_consumer", "anon"}}}})),
            "routes[0].plugins.jwt-auth.anonymous_consumer: additional properties forbidden, found "
            "anonymous_consumer");
}

}  // namespace
}  // namespace portico::config
