// The Admin API's plugin endpoints (APISIX 3.x apisix/admin/plugins.lua), answered from the plugin catalog
// (config/plugin_catalog.h) of this build, never from etcd:
//   GET /apisix/admin/plugins/list[?subsystem=http|stream]   names, highest priority first
//   GET /apisix/admin/plugins/<name>[?schema_type=consumer]  the plugin's JSON Schema
//   GET /apisix/admin/plugins?all=true                       every plugin: priority, schema(s), type
// docs/admin-api.md ("Plugins") has the answers and the errors.
//
// Stateless; any thread.
#pragma once

#include "admin/admin_server.h"

namespace portico::controlplane {

// True when `request.path` is one of the endpoints above ("/plugins", "/plugins/...").
bool is_plugins_request(const admin::AdminRequest& request);
admin::AdminResponse plugins_api(const admin::AdminRequest& request);

}  // namespace portico::controlplane
