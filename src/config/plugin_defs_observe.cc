// The observability plugins' schemas (APISIX 3.x): prometheus.
#include <string_view>
#include <vector>

#include "config/plugin_defs.h"

namespace portico::config::detail {

namespace {

// prometheus: per-route metrics on the status listener's /metrics (src/status/http_series.h).
constexpr std::string_view kPrometheusSchema = R"({
  "type": "object",
  "properties": {
    "prefer_name": {"type": "boolean", "default": false}
  }
})";

std::vector<PluginDef> make_defs() {
  std::vector<PluginDef> defs;
  defs.emplace_back(plugin_def("prometheus", 500, kPrometheusSchema));
  return defs;
}

}  // namespace

std::span<const PluginDef> observe_plugin_defs() {
  static const std::vector<PluginDef> defs = make_defs();
  return defs;
}

}  // namespace portico::config::detail
