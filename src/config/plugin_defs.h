// Private to src/config. The plugin definitions of the catalog (plugin_catalog.h), in groups, each in its own
// file: a plugin's schema is declared next to the others of its kind.
#pragma once

#include <span>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "config/plugin_catalog.h"

namespace portico::config::detail {

// A definition with the common fields set; the caller sets the others (type, consumer schema, ...).
inline PluginDef plugin_def(std::string_view name, int priority, std::string_view schema) {
  PluginDef def;
  def.name = name;
  def.priority = priority;
  def.schema = schema;
  return def;
}

// The traffic plugins' checks beyond their schemas (plugin_checks_traffic.cc): templates, regexes, header
// names, what this version does not implement.
std::string check_proxy_rewrite(const nlohmann::json& conf, bool consumer_side, std::string& field);
std::string check_response_rewrite(const nlohmann::json& conf, bool consumer_side, std::string& field);
std::string check_redirect(const nlohmann::json& conf, bool consumer_side, std::string& field);
std::string check_request_id(const nlohmann::json& conf, bool consumer_side, std::string& field);
// ... and of cors, ip-restriction, fault-injection, mocking, traffic-split (plugin_checks_traffic2.cc).
std::string check_cors(const nlohmann::json& conf, bool consumer_side, std::string& field);
std::string check_ip_restriction(const nlohmann::json& conf, bool consumer_side, std::string& field);
std::string check_fault_injection(const nlohmann::json& conf, bool consumer_side, std::string& field);
std::string check_mocking(const nlohmann::json& conf, bool consumer_side, std::string& field);
std::string check_traffic_split(const nlohmann::json& conf, bool consumer_side, std::string& field);

// The rate-limit plugins' check (plugin_defs_limits.cc): the key's variables, the policies this version runs.
std::string check_limit(const nlohmann::json& conf, bool consumer_side, std::string& field);

std::span<const PluginDef> limit_plugin_defs();    // plugin_defs_limits.cc
std::span<const PluginDef> auth_plugin_defs();     // plugin_defs_auth.cc
std::span<const PluginDef> traffic_plugin_defs();  // plugin_defs_traffic.cc
std::span<const PluginDef> observe_plugin_defs();  // plugin_defs_observe.cc

}  // namespace portico::config::detail
