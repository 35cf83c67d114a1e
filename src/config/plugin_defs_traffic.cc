// The traffic plugins' schemas (APISIX 3.x): request and response rewriting, redirects, CORS, IP rules,
// request ids, fault injection, and client-control (the body limit, applied by the proxy itself).
#include <string_view>
#include <vector>

#include "config/plugin_defs.h"

namespace portico::config::detail {

namespace {

// client-control: max_body_size, bytes; 0 = no limit (APISIX). Folded into Route::max_body_size.
constexpr std::string_view kClientControlSchema = R"({
  "type": "object",
  "properties": {
    "max_body_size": {"type": "integer", "minimum": 0}
  }
})";

std::vector<PluginDef> make_defs() {
  std::vector<PluginDef> defs;
  defs.emplace_back(plugin_def("client-control", 22000, kClientControlSchema)).builtin = true;
  return defs;
}

}  // namespace

std::span<const PluginDef> traffic_plugin_defs() {
  static const std::vector<PluginDef> defs = make_defs();
  return defs;
}

}  // namespace portico::config::detail
