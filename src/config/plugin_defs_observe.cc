// The observability plugins' schemas (APISIX 3.x): prometheus.
#include <string_view>

#include "config/plugin_defs.h"

namespace portico::config::detail {

std::span<const PluginDef> observe_plugin_defs() {
  return {};
}

}  // namespace portico::config::detail
