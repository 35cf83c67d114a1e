// The authentication plugins' schemas (APISIX 3.x): each has a route-side schema and a consumer-side schema
// (the credential), and names the credential fields kept encrypted at rest. What a schema cannot say (a PEM
// key loads and fits its algorithm, a username can be sent in a Basic header) is each plugin's `check`.
#include <algorithm>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/plugin_defs.h"
#include "plugins/jwt.h"

namespace portico::config::detail {

namespace {

// --- key-auth ---------------------------------------------------------------------------------------------

constexpr std::string_view kKeyAuthSchema = R"({
  "type": "object",
  "properties": {
    "header": {"type": "string", "default": "apikey"},
    "query": {"type": "string", "default": "apikey"},
    "hide_credentials": {"type": "boolean", "default": false}
  }
})";

constexpr std::string_view kKeyAuthConsumerSchema = R"({
  "type": "object",
  "properties": {
    "key": {"type": "string", "minLength": 1, "maxLength": 4096}
  },
  "required": ["key"]
})";

constexpr std::string_view kKeyAuthSecrets[] = {"key"};

// --- basic-auth -------------------------------------------------------------------------------------------

// realm: APISIX 3.15+, the realm of the WWW-Authenticate challenge sent with every 401.
constexpr std::string_view kBasicAuthSchema = R"({
  "type": "object",
  "properties": {
    "hide_credentials": {"type": "boolean", "default": false},
    "realm": {"type": "string", "default": "basic"}
  }
})";

// APISIX: both strings, the password non-empty (3.x docs); an empty username could never authenticate here
// (basic_credentials.h refuses an empty user), so it is refused when written.
constexpr std::string_view kBasicAuthConsumerSchema = R"({
  "type": "object",
  "properties": {
    "username": {"type": "string", "minLength": 1},
    "password": {"type": "string", "minLength": 1}
  },
  "required": ["username", "password"]
})";

constexpr std::string_view kBasicAuthSecrets[] = {"password"};

// --- jwt-auth ---------------------------------------------------------------------------------------------

// APISIX 3.x's route side. store_in_ctx is accepted and has no effect: it hands the payload to later Lua
// plugins, and no Portico plugin reads one. anonymous_consumer is not offered (refused as unknown).
constexpr std::string_view kJwtAuthSchema = R"({
  "type": "object",
  "properties": {
    "header": {"type": "string", "default": "authorization"},
    "query": {"type": "string", "default": "jwt"},
    "cookie": {"type": "string", "default": "jwt"},
    "hide_credentials": {"type": "boolean", "default": false},
    "key_claim_name": {"type": "string", "default": "key", "minLength": 1},
    "store_in_ctx": {"type": "boolean", "default": false},
    "realm": {"type": "string", "default": "jwt"},
    "claims_to_verify": {
      "type": "array",
      "items": {"type": "string", "enum": ["exp", "nbf"]},
      "uniqueItems": true,
      "default": ["exp", "nbf"]
    }
  }
})";

// APISIX 3.x's consumer side, without its `dependencies`/`oneOf` on algorithm (which only say "an asymmetric
// algorithm requires public_key"): check_jwt_auth says that and more. private_key, which APISIX before 3.9
// kept for its token-signing endpoint, is refused: Portico only verifies, and a gateway holding signing keys
// it never uses is a liability. exp only served that endpoint; it is accepted and unused.
constexpr std::string_view kJwtAuthConsumerSchema = R"({
  "type": "object",
  "properties": {
    "key": {"type": "string", "minLength": 1},
    "secret": {"type": "string", "minLength": 1},
    "public_key": {"type": "string"},
    "algorithm": {
      "type": "string",
      "enum": ["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384", "ES512",
               "PS256", "PS384", "PS512", "EdDSA"],
      "default": "HS256"
    },
    "exp": {"type": "integer", "minimum": 1, "default": 86400},
    "base64_secret": {"type": "boolean", "default": false},
    "lifetime_grace_period": {"type": "integer", "minimum": 0, "default": 0}
  },
  "required": ["key"]
})";

constexpr std::string_view kJwtAuthSecrets[] = {"secret"};

bool is_control(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

// The realm goes into `WWW-Authenticate: <scheme> realm="<realm>"` as a quoted string.
std::string check_realm(const nlohmann::json& conf, std::string& field) {
  auto it = conf.find("realm");
  if (it == conf.end() || !it->is_string()) return {};
  const std::string& realm = it->get_ref<const std::string&>();
  if (std::any_of(realm.begin(), realm.end(),
                  [](char c) { return c == '"' || c == '\\' || is_control(c); })) {
    field = "realm";
    return "must not contain '\"', '\\' or control characters (it is sent as a quoted string)";
  }
  return {};
}

// A username with ':' or a control character, or a password with a control character, cannot be sent in a
// Basic header (RFC 7617: the user ends at the first ':'; control characters are refused): such a credential
// would never authenticate, so it is refused when written.
std::string check_basic_auth(const nlohmann::json& conf, bool consumer_side, std::string& field) {
  if (!consumer_side) return check_realm(conf, field);
  const std::string& user = conf.at("username").get_ref<const std::string&>();
  if (std::any_of(user.begin(), user.end(), [](char c) { return c == ':' || is_control(c); })) {
    field = "username";
    return "must not contain ':' or control characters (a Basic credential could not carry it)";
  }
  const std::string& password = conf.at("password").get_ref<const std::string&>();
  if (std::any_of(password.begin(), password.end(), is_control)) {
    field = "password";
    return "must not contain control characters (a Basic credential could not carry it)";
  }
  return {};
}

// The consumer side: the key material fits the algorithm, whatever APISIX would find out (or not) at the
// first request. The verifier is the one the snapshot builds (plugins/jwt.h), so what passes here builds.
std::string check_jwt_auth(const nlohmann::json& conf, bool consumer_side, std::string& field) {
  if (!consumer_side) return check_realm(conf, field);
  plugins::jwt::KeyConfig key;
  key.algorithm = conf.at("algorithm").get<std::string>();
  key.secret = conf.value("secret", std::string());
  key.public_key = conf.value("public_key", std::string());
  key.base64_secret = conf.at("base64_secret").get<bool>();
  const auto alg = plugins::jwt::algorithm_from_name(key.algorithm);
  const bool hmac = alg && plugins::jwt::is_hmac(*alg);
  // A field the algorithm does not use is refused rather than ignored: an RS256 consumer that also carries a
  // secret, or an HS256 one with a public key, is a configuration that does not say what it means.
  if (hmac && conf.contains("public_key")) {
    field = "public_key";
    return "is not used when \"algorithm\" is \"" + key.algorithm + "\" (the secret verifies)";
  }
  if (!hmac && conf.contains("secret")) {
    field = "secret";
    return "is not used when \"algorithm\" is \"" + key.algorithm + "\" (the public_key verifies)";
  }
  if (!hmac && key.base64_secret) {
    field = "base64_secret";
    return "is not used when \"algorithm\" is \"" + key.algorithm + "\" (the public_key verifies)";
  }
  std::string error;
  if (!plugins::jwt::Verifier::create(key, error)) {
    field = hmac ? "secret" : "public_key";
    return error;
  }
  return {};
}

std::vector<PluginDef> make_defs() {
  std::vector<PluginDef> defs;
  PluginDef& key_auth = defs.emplace_back(plugin_def("key-auth", 2500, kKeyAuthSchema));
  key_auth.type = PluginType::auth;
  key_auth.consumer_schema = kKeyAuthConsumerSchema;
  key_auth.encrypt_fields = kKeyAuthSecrets;

  PluginDef& basic_auth = defs.emplace_back(plugin_def("basic-auth", 2520, kBasicAuthSchema));
  basic_auth.type = PluginType::auth;
  basic_auth.consumer_schema = kBasicAuthConsumerSchema;
  basic_auth.encrypt_fields = kBasicAuthSecrets;
  basic_auth.check = check_basic_auth;

  PluginDef& jwt_auth = defs.emplace_back(plugin_def("jwt-auth", 2510, kJwtAuthSchema));
  jwt_auth.type = PluginType::auth;
  jwt_auth.consumer_schema = kJwtAuthConsumerSchema;
  jwt_auth.encrypt_fields = kJwtAuthSecrets;
  jwt_auth.check = check_jwt_auth;
  return defs;
}

}  // namespace

std::span<const PluginDef> auth_plugin_defs() {
  static const std::vector<PluginDef> defs = make_defs();
  return defs;
}

}  // namespace portico::config::detail
