// The catalog of plugins this version knows: for each, its name, APISIX's priority and phases, and its
// configuration schema, declared once (as JSON Schema text, the way APISIX's plugins declare theirs) and
// checked by the one schema engine (config/schema.h). Every way a plugin configuration enters (a file, an
// Admin API body, a data plane delta) goes through read_plugins (fields.h), which uses this table; the
// runtime behaviour lives in src/plugins/, keyed by the same names (as Envoy keeps its config API apart
// from the filters implementing it).
//
// Immutable after static initialisation; any thread.
#pragma once

#include <nlohmann/json_fwd.hpp>
#include <span>
#include <string>
#include <string_view>

namespace portico::config {

class Schema;

enum class PluginType { auth, other };

// A check the schema language cannot express (a regular expression compiles, a CIDR parses, a PEM key
// loads). Returns an empty string when `conf` is fine; otherwise the reason, and sets `field` to the
// offending field's path below the plugin ("regex_uri[0]"; empty: the plugin itself).
using PluginCheck = std::string (*)(const nlohmann::json& conf, bool consumer_side, std::string& field);

struct PluginDef {
  std::string_view name;
  int priority = 0;  // APISIX's: higher runs first within a phase
  PluginType type = PluginType::other;
  std::string_view schema;           // where routes, services, plugin configs and global rules set it
  std::string_view consumer_schema;  // auth plugins: a consumer's credential; empty: same as `schema`
  // Fields holding secrets (APISIX's encrypt_fields): encrypted at rest, never shown in clear. An
  // authentication plugin's are of its consumer-side configuration; any other plugin's, of its one schema.
  std::span<const std::string_view> encrypt_fields;
  PluginCheck check = nullptr;
  // client-control only: handled by the body limit (Route::max_body_size), not by src/plugins/.
  bool builtin = false;
};

// Whether `plugin`'s encrypt_fields apply where it is configured: an authentication plugin's in consumers and
// credentials only (its route-side configuration holds no credential), any other plugin's everywhere
// (`consumer_resource`: a consumer's or credential's `plugins`).
inline bool has_secrets(const PluginDef& plugin, bool consumer_resource) {
  return !plugin.encrypt_fields.empty() && (plugin.type != PluginType::auth || consumer_resource);
}

// Every plugin, sorted by name.
std::span<const PluginDef> plugin_catalog();
const PluginDef* find_plugin(std::string_view name);

// The compiled schema of `plugin` (consumer side for auth plugins when `consumer_side`). Compiled once.
const Schema& plugin_schema(const PluginDef& plugin, bool consumer_side);

// The JSON Schema of `name` as GET /apisix/admin/plugins/<name> serves it (APISIX: the schema with `_meta`
// injected; ?schema_type=consumer gives the consumer schema). Null (is_null()) for an unknown name.
nlohmann::json plugin_schema_document(std::string_view name, bool consumer_side);

}  // namespace portico::config
