// Private to src/config. The resource validators behind validate.h, taking a Path so that callers walking a
// whole document (validate_config, the streaming loader) build no prefix strings for valid resources.
#pragma once

#include <cstdint>
#include <optional>

#include "config/fields.h"
#include "config/model.h"
#include "config/validate.h"

namespace portico::config::detail {

std::optional<Route> route_at(const json& v, const Path& p, Errors& e, const ValidateOptions& options);
std::optional<Service> service_at(const json& v, const Path& p, Errors& e, const ValidateOptions& options);
// `inline_upstream`: written inside a route or service (no id allowed) rather than in `upstreams`.
std::optional<Upstream> upstream_at(const json& v, const Path& p, Errors& e, bool inline_upstream,
                                    const ValidateOptions& options);
std::optional<Consumer> consumer_at(const json& v, const Path& p, Errors& e, const ValidateOptions& options);
std::optional<Ssl> ssl_at(const json& v, const Path& p, Errors& e, const ValidateOptions& options);
std::optional<GlobalRule> global_rule_at(const json& v, const Path& p, Errors& e,
                                         const ValidateOptions& options);
std::optional<Credential> credential_at(const json& v, const Path& p, Errors& e,
                                        const ValidateOptions& options);
std::optional<PluginConfig> plugin_config_at(const json& v, const Path& p, Errors& e,
                                             const ValidateOptions& options);

bool split_credential_id(std::string_view id, std::string_view& username, std::string_view& credential_id);
// A consumer's username ([A-Za-z0-9_-], 1..256 characters) without reporting; empty when `v` is not one.
std::string peek_username(const json& v);

// After a resource schema accepted `v.id` (or another id field, `key`): an integer id must be written as an
// integer (5.0 and 1e3 are integers to the schema, but an id is kept as its decimal text). Silent when the
// schema refused the value.
void check_integer_id(const json& v, const Path& p, Errors& e, const char* key = "id");

// A `vars` list: [[var, op, value] or [var, "!", op, value], ...]; regexes compiled, operands checked.
void read_vars(const json& v, const Path& p, Errors& e, std::vector<VarExpr>& out);

// What a `plugins` mapping holds: client-control's body limit (folded into routes, not run as a plugin) and
// every other plugin, each validated against its schema in the catalog (config/plugin_catalog.h). A name the
// catalog does not know is an error rather than silently ignored: accepting, say, an authentication plugin
// that is not enforced would open what the operator meant to close.
struct PluginSettings {
  int64_t max_body_size =
      -1;  // client-control; -1 = not set; 0 ("no limit" in APISIX) is stored as INT64_MAX
  PluginMap plugins;
};
// Where a `plugins` mapping is: on a consumer, auth plugins are credentials (their consumer schema, secret
// fields decrypted with the process keyring); elsewhere auth plugins take their route-side schema.
enum class PluginScope { route, consumer, credential };
// `plugins` of any resource kind: a mapping of plugin names to their configuration.
void read_plugins(const json& v, const Path& p, Errors& e, PluginSettings& out,
                  PluginScope scope = PluginScope::route);

}  // namespace portico::config::detail
