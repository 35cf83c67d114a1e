// The rate-limit plugins' schemas (APISIX 3.x apisix/plugins/limit-count/init.lua, limit-req.lua,
// limit-conn.lua and apisix/utils/redis-schema.lua): limit-count, limit-req, limit-conn. The Redis fields are
// declared at the top (objects are closed here) and required and defaulted by the policy's `then` branch, as
// APISIX's if/then/else does. What a schema cannot say (a key naming a variable this version does not know,
// cluster nodes that are not host:port, a batched sliding window) is checked by check_limit.
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/plugin_defs.h"
#include "config/var_template.h"

namespace portico::config::detail {

namespace {

// Every field of redis-schema.lua's two policies, without defaults (declared, so a closed object takes them).
constexpr std::string_view kRedisFields = R"(
    "redis_host": {"type": "string", "minLength": 2},
    "redis_port": {"type": "integer", "minimum": 1},
    "redis_username": {"type": "string", "minLength": 1},
    "redis_password": {"type": "string", "minLength": 0},
    "redis_database": {"type": "integer", "minimum": 0},
    "redis_timeout": {"type": "integer", "minimum": 1},
    "redis_ssl": {"type": "boolean"},
    "redis_ssl_verify": {"type": "boolean"},
    "sync_interval": {"type": "number"},
    "redis_cluster_nodes": {
      "type": "array", "minItems": 1, "items": {"type": "string", "minLength": 2, "maxLength": 100}
    },
    "redis_cluster_name": {"type": "string"},
    "redis_cluster_ssl": {"type": "boolean"},
    "redis_cluster_ssl_verify": {"type": "boolean"})";

// redis-schema.lua's policy_to_additional_properties, as the if/then/else every limit plugin ends with.
constexpr std::string_view kPolicyBranches = R"(
  "if": {"properties": {"policy": {"enum": ["redis"]}}, "required": ["policy"]},
  "then": {
    "properties": {
      "redis_host": {"type": "string", "minLength": 2},
      "redis_port": {"type": "integer", "minimum": 1, "default": 6379},
      "redis_username": {"type": "string", "minLength": 1},
      "redis_password": {"type": "string", "minLength": 0},
      "redis_database": {"type": "integer", "minimum": 0, "default": 0},
      "redis_timeout": {"type": "integer", "minimum": 1, "default": 1000},
      "redis_ssl": {"type": "boolean", "default": false},
      "redis_ssl_verify": {"type": "boolean", "default": false},
      "sync_interval": {"type": "number", "default": -1}
    },
    "required": ["redis_host"]
  },
  "else": {
    "if": {"properties": {"policy": {"enum": ["redis-cluster"]}}, "required": ["policy"]},
    "then": {
      "properties": {
        "redis_cluster_nodes": {
          "type": "array", "minItems": 1, "items": {"type": "string", "minLength": 2, "maxLength": 100}
        },
        "redis_password": {"type": "string", "minLength": 0},
        "redis_timeout": {"type": "integer", "minimum": 1, "default": 1000},
        "redis_cluster_name": {"type": "string"},
        "redis_cluster_ssl": {"type": "boolean", "default": false},
        "redis_cluster_ssl_verify": {"type": "boolean", "default": false},
        "sync_interval": {"type": "number", "default": -1}
      },
      "required": ["redis_cluster_nodes", "redis_cluster_name"]
    }
  })";

std::string with_redis(std::string_view own_properties, std::string_view rest) {
  std::string s = "{\n  \"type\": \"object\",\n  \"properties\": {";
  s += own_properties;
  s += ",";
  s += kRedisFields;
  s += "\n  },";
  s += rest;
  s += ",";
  s += kPolicyBranches;
  s += "\n}";
  return s;
}

// limit-count; `window_type` is Portico's (a sliding window besides APISIX's fixed one).
const std::string& limit_count_schema() {
  static const std::string s = with_redis(R"(
    "count": {"type": "integer", "exclusiveMinimum": 0},
    "time_window": {"type": "integer", "exclusiveMinimum": 0},
    "group": {"type": "string"},
    "key": {"type": "string", "default": "remote_addr"},
    "key_type": {"type": "string", "enum": ["var", "var_combination", "constant"], "default": "var"},
    "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 503},
    "rejected_msg": {"type": "string", "minLength": 1},
    "policy": {"type": "string", "enum": ["local", "redis", "redis-cluster"], "default": "local"},
    "allow_degradation": {"type": "boolean", "default": false},
    "show_limit_quota_header": {"type": "boolean", "default": true},
    "window_type": {"type": "string", "enum": ["fixed", "sliding"], "default": "fixed"})",
                                          R"(
  "required": ["count", "time_window"])");
  return s;
}

const std::string& limit_req_schema() {
  static const std::string s = with_redis(R"(
    "rate": {"type": "number", "exclusiveMinimum": 0},
    "burst": {"type": "number", "minimum": 0},
    "key": {"type": "string"},
    "key_type": {"type": "string", "enum": ["var", "var_combination"], "default": "var"},
    "policy": {"type": "string", "enum": ["redis", "redis-cluster", "local"], "default": "local"},
    "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 503},
    "rejected_msg": {"type": "string", "minLength": 1},
    "nodelay": {"type": "boolean", "default": false},
    "allow_degradation": {"type": "boolean", "default": false})",
                                          R"(
  "required": ["rate", "burst", "key"])");
  return s;
}

const std::string& limit_conn_schema() {
  static const std::string s = with_redis(R"(
    "conn": {"type": "integer", "exclusiveMinimum": 0},
    "burst": {"type": "integer", "minimum": 0},
    "default_conn_delay": {"type": "number", "exclusiveMinimum": 0},
    "only_use_default_delay": {"type": "boolean", "default": false},
    "key": {"type": "string"},
    "key_type": {"type": "string", "enum": ["var", "var_combination"], "default": "var"},
    "policy": {"type": "string", "enum": ["redis", "redis-cluster", "local"], "default": "local"},
    "redis_prefix": {"type": "string", "minLength": 0, "default": "limit_conn", "pattern": "^[0-9a-zA-Z|_]+$"},
    "rejected_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 503},
    "rejected_msg": {"type": "string", "minLength": 1},
    "allow_degradation": {"type": "boolean", "default": false})",
                                          R"(
  "required": ["conn", "burst", "default_conn_delay", "key"])");
  return s;
}

constexpr std::string_view kRedisSecrets[] = {"redis_password"};

bool is_var_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'))
      return false;
  }
  return true;
}

std::vector<PluginDef> make_defs() {
  std::vector<PluginDef> defs;
  for (auto [name, priority, schema] : {std::tuple{"limit-conn", 1003, &limit_conn_schema()},
                                        std::tuple{"limit-count", 1002, &limit_count_schema()},
                                        std::tuple{"limit-req", 1001, &limit_req_schema()}}) {
    PluginDef def = plugin_def(name, priority, *schema);
    def.encrypt_fields = kRedisSecrets;
    def.check = check_limit;
    defs.push_back(def);
  }
  return defs;
}

}  // namespace

std::string check_limit(const nlohmann::json& conf, bool, std::string& field) {
  const std::string policy = conf.value("policy", std::string("local"));
  if (policy == "redis-cluster") {
    for (const auto& node : conf.at("redis_cluster_nodes")) {
      const std::string& text = node.get_ref<const std::string&>();
      const size_t colon = text.rfind(':');
      if (colon == std::string::npos || colon == 0 || colon + 1 == text.size() ||
          text.find_first_not_of("0123456789", colon + 1) != std::string::npos) {
        field = "redis_cluster_nodes";
        return "not host:port: " + text;
      }
    }
  }
  if (policy != "local" && conf.value("sync_interval", -1.0) > 0 &&
      conf.value("window_type", std::string("fixed")) == "sliding") {
    field = "sync_interval";
    return "sync_interval (batched mode) counts a fixed window: remove it or window_type \"sliding\"";
  }
  const std::string key_type = conf.value("key_type", std::string("var"));
  if (key_type == "constant") return {};
  const std::string& key = conf.at("key").get_ref<const std::string&>();
  if (key_type == "var" && !is_var_name(key)) {
    field = "key";
    return "not a variable name: " + key;
  }
  std::vector<TemplatePiece> pieces;
  std::string why;
  if (!parse_template(key_type == "var" ? "$" + key : key, TemplateSyntax::vars, pieces, &why)) {
    field = "key";
    return why;
  }
  return {};
}

std::span<const PluginDef> limit_plugin_defs() {
  static const std::vector<PluginDef> defs = make_defs();
  return defs;
}

}  // namespace portico::config::detail
