// Validation of configuration resources given as JSON trees (nlohmann::json). This is the one validator of
// the project: the file loader (config/loader.h) converts YAML or JSON into such trees and runs these
// functions, and the Admin API validates request bodies with them, so a resource is accepted or rejected the
// same way whichever way it arrives. Field names and semantics follow APISIX 3.x; see src/config/README.md
// for the rules, the defaults and what this version does not support.
//
// Contract:
// - Every error names the exact path of the offending field, built from `path_prefix`, e.g. with prefix
//   "routes[3]": "routes[3].upstream.nodes[1].port"; with an empty prefix: "upstream.nodes[1].port". Keys
//   that are not plain identifiers are quoted: `upstreams[0].nodes["10.0.0.1:80"]`.
// - A function returns a value only when it added no error; the value then has every default applied.
// - Errors are appended to `errors`, which keeps the first `limit` of them (default kMaxErrors) and counts
//   the rest. Validation keeps going after an error so that one pass reports as many problems as possible.
// - Stateless; any thread may call these functions concurrently with distinct `errors` objects.
#pragma once

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/loader.h"
#include "config/model.h"

namespace portico::config {

inline constexpr size_t kMaxErrors = 20;

// Bounds on numbers where APISIX's schema sets none, so that no accepted value can misbehave at run time:
// - Every duration (timeouts, retry_timeout, idle_timeout, health-check intervals) is at most a year. A
//   deadline is `now + duration` in std::chrono nanoseconds, which overflows past ~292 years (a timeout of
//   1e10 s would expire at once); a year is far above any real setting.
// - Health-check intervals are at least 0.1 s (APISIX: integers >= 1), so a probe loop cannot spin.
// - retries, keepalive_pool.size and checks.active.concurrency are at most 65535 (the proxy makes at most 16
//   tries anyway; `retries + 1` must not overflow).
inline constexpr double kMaxSeconds = 86400.0 * 365;

// The rule for an id written as text (a resource id in a document or an Admin API URL, a node id): 1 to 64
// of a-z A-Z 0-9 '_' '-' '.', not "." or ".." (path segments of etcd keys and URLs).
bool valid_id_text(std::string_view text);
inline constexpr double kMinCheckInterval = 0.1;
inline constexpr int kMaxCount = 65535;

// An error list that keeps the first `limit` errors and counts the ones it drops.
class Errors {
 public:
  explicit Errors(size_t limit = kMaxErrors) : limit_(limit) {}

  void add(std::string path, std::string reason);

  size_t total() const { return total_; }  // every error added, kept or dropped
  bool full() const { return list_.size() >= limit_; }
  bool truncated() const { return total_ > list_.size(); }
  const std::vector<FieldError>& list() const { return list_; }
  std::vector<FieldError> take() { return std::move(list_); }

 private:
  std::vector<FieldError> list_;
  size_t limit_;
  size_t total_ = 0;
};

struct ValidateOptions {
  // A resource read from a file must carry its key: `id`, or `username` for a consumer. An Admin API body may
  // leave it to the URL (the caller then fills the key in the returned value).
  bool id_required = true;
};

// One resource each. References to other resources (upstream_id, service_id, plugin_config_id) are checked
// for syntax only; whether they resolve is check_config's job, which needs the whole configuration. Every
// kind accepts `create_time` and `update_time` (integers >= 0, unix seconds, as the Admin API stores them),
// which the model does not keep. `plugins` is read by read_plugins against the plugin catalog
// (plugin_catalog.h), everywhere. Consumers, credentials, global rules and plugin configs are checked by
// their schema (resource_schemas.h); routes, services, upstreams and SSLs by field readers.
std::optional<Route> validate_route(const nlohmann::json& route, std::string_view path_prefix, Errors& errors,
                                    const ValidateOptions& options = {});
std::optional<Service> validate_service(const nlohmann::json& service, std::string_view path_prefix,
                                        Errors& errors, const ValidateOptions& options = {});
// A top-level upstream (the `upstreams` list). Upstreams written inline in a route or a service are validated
// by validate_route / validate_service and must not carry an id.
std::optional<Upstream> validate_upstream(const nlohmann::json& upstream, std::string_view path_prefix,
                                          Errors& errors, const ValidateOptions& options = {});
// An upstream written inline (a route's, a service's, a traffic-split weighted upstream's): as
// validate_upstream, without an id.
std::optional<Upstream> validate_inline_upstream(const nlohmann::json& upstream, std::string_view path_prefix,
                                                 Errors& errors);
// A consumer: `username` is its key (required unless !options.id_required); `desc`, `labels`, `plugins`.
std::optional<Consumer> validate_consumer(const nlohmann::json& consumer, std::string_view path_prefix,
                                          Errors& errors, const ValidateOptions& options = {});
// An SSL: besides the syntax, every cert/key pair is parsed with OpenSSL and the key must match the
// certificate (`key: does not match cert`). CPU cost: a few key operations per pair.
std::optional<Ssl> validate_ssl(const nlohmann::json& ssl, std::string_view path_prefix, Errors& errors,
                                const ValidateOptions& options = {});
// A credential (APISIX 3.x): `id` is its full name "<username>/credentials/<credential id>" (a consumer's
// username, then an id), required unless !options.id_required; `plugins` holds at most one plugin, an
// authentication plugin, validated with its consumer schema (secret fields decrypted with the process
// keyring); `name`, `desc`, `labels`. Whether the consumer exists is check_config's job.
std::optional<Credential> validate_credential(const nlohmann::json& credential, std::string_view path_prefix,
                                              Errors& errors, const ValidateOptions& options = {});
// "jack/credentials/key-1" -> "jack", "key-1"; false when `id` is not a credential's full name (a username,
// "/credentials/", an id as valid_id_text).
bool split_credential_id(std::string_view id, std::string_view& username, std::string_view& credential_id);
inline constexpr std::string_view kCredentialsInfix = "/credentials/";
// A global rule: `plugins` is required (it may be an empty mapping).
std::optional<GlobalRule> validate_global_rule(const nlohmann::json& rule, std::string_view path_prefix,
                                               Errors& errors, const ValidateOptions& options = {});
// A plugin config: `plugins` is required (it may be an empty mapping); `name`, `desc`, `labels`.
std::optional<PluginConfig> validate_plugin_config(const nlohmann::json& config, std::string_view path_prefix,
                                                   Errors& errors, const ValidateOptions& options = {});

// A `vars` list as routes take it ([[var, op, value], ...]), for the plugins that take one too
// (response-rewrite): the expressions, or nullopt with the errors at `path_prefix` + "[i]...".
std::optional<std::vector<VarExpr>> validate_vars(const nlohmann::json& vars, std::string_view path_prefix,
                                                  Errors& errors);

// Whole-configuration rules over already validated resources: ids are unique per resource type (usernames
// among consumers); upstream_id, service_id and plugin_config_id references resolve; every route ends up with
// an upstream (its own, or its service's); every credential's consumer exists. Paths use the indices of the
// vectors in `config`
// ("routes[i].upstream_id"). On success (returns true) a route that sets no client-control body limit takes
// the first one set by its plugin config, its service, then the global rules (Route::max_body_size); nothing
// else changes.
bool check_config(Config& config, Errors& errors);

// The rules of check_config that concern one route, for callers that keep the rest of the configuration
// themselves (a data plane applying a delta). `refs` says what the route's references resolve to; `path`
// names the route in messages ("routes[3]"). Adds an error per broken rule and returns false if any; the
// messages are check_config's.
struct RouteRefs {
  bool upstream_defined = false;       // route.upstream_id names an upstream (ignored when empty)
  bool plugin_config_defined = false;  // route.plugin_config_id names a plugin config (ignored when empty)
  bool service_defined = false;        // route.service_id names a service (ignored when empty)
  const Service* service = nullptr;    // that service when it is valid; null when undefined or invalid
};
bool check_route_refs(const Route& route, const RouteRefs& refs, std::string_view path, Errors& errors);
// The upstreams a resource's plugins name by id: traffic-split's rules[i].weighted_upstreams[j].upstream_id,
// each with its field path under the resource ("plugins.traffic-split.rules[0].weighted_upstreams[1].
// upstream_id"), in order. Empty for plugins without such references (the common case: one lookup).
struct PluginUpstreamRef {
  std::string id;
  std::string field;
};
std::vector<PluginUpstreamRef> plugin_upstream_refs(const PluginMap& plugins);
// True when `plugins` names upstream `id` (as above).
bool plugin_refs_upstream(const PluginMap& plugins, std::string_view id);
// Every upstream `plugins` names must be defined: an error at `path` + "." + the reference's field otherwise,
// with check_route_refs's message. Returns false if one is missing.
bool check_plugin_upstream_refs(const PluginMap& plugins,
                                const std::function<bool(const std::string&)>& defined, std::string_view path,
                                Errors& errors);
// A service's upstream_id must name an upstream.
bool check_service_refs(const Service& service, bool upstream_defined, std::string_view path, Errors& errors);

// The body limit check_config folds into a route: its own (Route::own_max_body_size) if set, else its plugin
// config's, else its service's, else `global_limit` (the last global rule setting one; -1 = none). Null
// pointers: the route names none.
int64_t folded_max_body_size(const Route& route, const PluginConfig* plugin_config, const Service* service,
                             int64_t global_limit);

// A whole document ({"routes": [...], "services": [...], "upstreams": [...], "consumers": [...], "ssls":
// [...], "global_rules": [...], "plugin_configs": [...], "credentials": [...]}): every resource, then
// check_config. This is what the loader does, minus the file handling (the loader streams resources out of
// the parser instead of building the whole tree first; results are identical).
std::optional<Config> validate_config(const nlohmann::json& document, Errors& errors);

}  // namespace portico::config
