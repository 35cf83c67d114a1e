// Private to src/config. The JSON Schemas of the resources that the schema engine (config/schema.h) checks
// before their validator builds the model: consumers, credentials, global rules, plugin configs,
// upstreams, services, SSLs and routes. Each is declared once, as JSON Schema text in the manner of APISIX's
// apisix/schema_def.lua, in resource_schemas.cc (src/config/README.md, "Resource schemas").
//
// A schema says what the engine can say: types, required fields, closed objects, lengths, patterns. The
// validators (validate_resources.cc, validate_upstream.cc, validate_route.cc, validate_ssl.cc) keep what it
// cannot: a plugin's configuration (read_plugins), integer ids written as floats, fields declared only to be
// refused with a reason (a consumer's group_id).
//
// Compiled once, on first use; immutable afterwards; any thread.
#pragma once

#include "config/schema.h"

namespace portico::config::detail {

enum class ResourceKind { consumer, credential, global_rule, plugin_config, upstream, service, ssl, route };

// The compiled schema of `kind`. With `key_required` false, the key (`username` for a consumer, `id`
// otherwise) is not in `required`: an Admin API body may leave it to the URL (ValidateOptions::id_required).
const Schema& resource_schema(ResourceKind kind, bool key_required);

}  // namespace portico::config::detail
