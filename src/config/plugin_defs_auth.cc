// The authentication plugins' schemas (APISIX 3.x): each has a route-side schema and a consumer-side schema
// (the credential), and names the credential fields kept encrypted at rest. consumer-restriction, which acts
// on who authenticated, lives here too.
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/plugin_defs.h"

namespace portico::config::detail {

namespace {

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

// consumer-restriction: not an authentication plugin (it reads who authenticated), kept with them. Statuses
// are bounded to what a status line can carry; allowed_by_methods entries are closed objects.
constexpr std::string_view kConsumerRestrictionSchema = R"({
  "type": "object",
  "properties": {
    "type": {"type": "string", "default": "consumer_name",
             "enum": ["consumer_name", "service_id", "route_id", "consumer_group_id"]},
    "blacklist": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    "whitelist": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    "allowed_by_methods": {
      "type": "array",
      "items": {
        "type": "object",
        "properties": {
          "user": {"type": "string"},
          "methods": {"type": "array", "minItems": 1,
                      "items": {"type": "string", "enum": ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD",
                                                           "OPTIONS", "CONNECT", "TRACE", "PURGE"]}}
        },
        "additionalProperties": false
      }
    },
    "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 403},
    "rejected_msg": {"type": "string"}
  },
  "anyOf": [{"required": ["blacklist"]}, {"required": ["whitelist"]}, {"required": ["allowed_by_methods"]}]
})";

std::string check_consumer_restriction(const nlohmann::json& conf, bool, std::string& field) {
  if (conf.at("type") == "consumer_group_id") {
    field = "type";
    return "consumer groups are not supported by this version";
  }
  return {};
}

std::vector<PluginDef> make_defs() {
  std::vector<PluginDef> defs;
  PluginDef& key_auth = defs.emplace_back(plugin_def("key-auth", 2500, kKeyAuthSchema));
  key_auth.type = PluginType::auth;
  key_auth.consumer_schema = kKeyAuthConsumerSchema;
  key_auth.encrypt_fields = kKeyAuthSecrets;
  defs.emplace_back(plugin_def("consumer-restriction", 2400, kConsumerRestrictionSchema)).check =
      check_consumer_restriction;
  return defs;
}

}  // namespace

std::span<const PluginDef> auth_plugin_defs() {
  static const std::vector<PluginDef> defs = make_defs();
  return defs;
}

}  // namespace portico::config::detail
