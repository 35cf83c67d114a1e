// The plugin endpoints (plugins_api.h): what APISIX answers, status codes and error bodies included.
#include "controlplane/plugins_api.h"

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string_view>
#include <vector>

#include "config/plugin_catalog.h"

namespace portico::controlplane {

using admin::AdminRequest;
using admin::AdminResponse;
using admin::error_response;
using nlohmann::json;

namespace {

AdminResponse ok(const json& body) {
  return AdminResponse{200, body.dump(), {}};
}

// Every plugin of the catalog, highest priority first (APISIX's order; names break ties).
std::vector<const config::PluginDef*> by_priority() {
  std::vector<const config::PluginDef*> out;
  for (const config::PluginDef& d : config::plugin_catalog()) out.push_back(&d);
  std::stable_sort(out.begin(), out.end(), [](const config::PluginDef* a, const config::PluginDef* b) {
    return a->priority > b->priority;
  });
  return out;
}

// APISIX answers the list's bad subsystem with a bare text body; Portico keeps its JSON error shape.
AdminResponse list(const std::string& query) {
  bool given = false;
  const std::string subsystem = admin::query_arg(query, "subsystem", &given);
  if (given && subsystem != "http" && subsystem != "stream")
    return error_response(400, "invalid subsystem passed");
  json names = json::array();
  if (subsystem != "stream") {  // no stream (L4) plugins in this version
    for (const config::PluginDef* d : by_priority()) names.push_back(std::string(d->name));
  }
  return ok(names);
}

AdminResponse all(const std::string& subsystem) {
  json out = json::object();
  if (subsystem == "stream") return ok(out);
  for (const config::PluginDef* d : by_priority()) {
    json entry = {{"priority", d->priority}, {"schema", config::plugin_schema_document(d->name, false)}};
    if (d->type == config::PluginType::auth) {
      entry["type"] = "auth";
      entry["consumer_schema"] = config::plugin_schema_document(d->name, true);
    }
    out[std::string(d->name)] = std::move(entry);
  }
  return ok(out);
}

AdminResponse one(std::string_view name, const std::string& query) {
  bool given = false;
  std::string subsystem = admin::query_arg(query, "subsystem", &given);
  if (given && subsystem != "http" && subsystem != "stream") {
    return error_response(400, "unsupported subsystem: " + subsystem);
  }
  if (!given) subsystem = "http";
  if (admin::query_arg(query, "all") == "true") return all(subsystem);
  const config::PluginDef* def = subsystem == "http" ? config::find_plugin(name) : nullptr;
  if (def == nullptr) return error_response(404, "plugin not found in subsystem " + subsystem);
  const bool consumer_side = admin::query_arg(query, "schema_type") == "consumer";
  // APISIX: only auth plugins have a consumer schema.
  if (consumer_side && def->type != config::PluginType::auth) return error_response(400, "not found schema");
  return ok(config::plugin_schema_document(name, consumer_side));
}

}  // namespace

bool is_plugins_request(const AdminRequest& request) {
  return request.path == "/plugins" || request.path.starts_with("/plugins/");
}

AdminResponse plugins_api(const AdminRequest& request) {
  if (request.method != "GET") {
    AdminResponse r = error_response(405, "the plugin endpoints are read-only");
    r.headers.emplace_back("Allow", "GET");
    return r;
  }
  std::string_view rest = std::string_view(request.path).substr(std::string_view("/plugins").size());
  if (rest.starts_with('/')) rest.remove_prefix(1);
  if (rest == "list") return list(request.query);
  if (rest.find('/') != std::string_view::npos)
    return error_response(404, "plugin not found in subsystem http");
  return one(rest, request.query);
}

}  // namespace portico::controlplane
