// The authentication plugins' schemas (APISIX 3.x): each has a route-side schema and a consumer-side schema
// (the credential), and names the credential fields kept encrypted at rest.
#include <string_view>
#include <vector>

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

std::vector<PluginDef> make_defs() {
  std::vector<PluginDef> defs;
  PluginDef& key_auth = defs.emplace_back(plugin_def("key-auth", 2500, kKeyAuthSchema));
  key_auth.type = PluginType::auth;
  key_auth.consumer_schema = kKeyAuthConsumerSchema;
  key_auth.encrypt_fields = kKeyAuthSecrets;
  return defs;
}

}  // namespace

std::span<const PluginDef> auth_plugin_defs() {
  static const std::vector<PluginDef> defs = make_defs();
  return defs;
}

}  // namespace portico::config::detail
