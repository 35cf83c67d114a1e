// A runtime plugin: one configured instance of a plugin of the catalog (config/plugin_catalog.h), compiled
// from its validated configuration when a snapshot is built, immutable after, and shared by every worker and
// every route using that configuration. Per-request state lives in the RequestContext, never in the plugin.
//
// Phases are APISIX's: rewrite and access run before the request goes upstream (and may answer it), the
// response filter (APISIX's header_filter and body_filter) runs on the response before it is sent, log runs
// after it was sent. A plugin overrides the phases it takes part in and declares them in phases(), so the
// pipeline calls nothing else.
//
// Thread-safety: every method is const and may run on any worker concurrently.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "plugins/context.h"

namespace portico::status {
class Metrics;
}
namespace portico::plugins {
struct LimitStores;
}
namespace portico::redis {
class Registry;
}

namespace portico::plugins {

enum Phase : uint8_t {
  kRewrite = 1 << 0,
  kAccess = 1 << 1,
  kResponse = 1 << 2,  // header_filter and body_filter
  kLog = 1 << 3,
};

class Plugin {
 public:
  virtual ~Plugin() = default;

  std::string_view name() const { return name_; }
  int priority() const { return priority_; }
  uint8_t phases() const { return phases_; }
  // APISIX's run_policy "prefer_route": in a global rule, the plugin is skipped for a request whose route
  // runs it too (prometheus: a request is counted once, by the route's configuration).
  bool prefer_route() const { return prefer_route_; }

  virtual void rewrite(RequestContext&) const {}
  virtual void access(RequestContext&) const {}
  // After access() suspended the request (RequestContext::suspend) and the wait completed: the plugin reads
  // the outcome of its I/O (kept in a PluginState) and goes on as access() would have (reply, headers).
  virtual void resume(RequestContext&) const {}
  virtual void on_response(RequestContext&, const ResponseInfo&) const {}
  virtual void log(const RequestContext&, const LogInfo&) const {}

 protected:
  Plugin(std::string_view name, int priority, uint8_t phases, bool prefer_route = false)
      : name_(name), priority_(priority), phases_(phases), prefer_route_(prefer_route) {}

 private:
  std::string name_;
  int priority_;
  uint8_t phases_;
  bool prefer_route_;
};

// What a factory may use besides the configuration.
struct BuildEnv {
  size_t workers = 1;
  status::Metrics* metrics = nullptr;  // the process's metrics (outlive every snapshot); null in tests
  // The rate limits' process-wide counters (limits.h; outlive every snapshot). Null: each limit plugin keeps
  // its own (tests; counters then start over when the plugin is rebuilt).
  LimitStores* limits = nullptr;
  redis::Registry* redis = nullptr;  // the process's Redis targets (redis/registry.h); null in tests
};

// Builds the runtime plugin `name` from its validated configuration (defaults applied, `_meta` removed).
// Returns null with `error` set when the configuration cannot be compiled (a case the schema and the
// catalog's check should already have refused). `priority` is the effective one (`_meta.priority` or the
// catalog's).
std::shared_ptr<const Plugin> create_plugin(std::string_view name, const nlohmann::json& conf, int priority,
                                            const BuildEnv& env, std::string* error);

// True when this version has a runtime for `name` (every non-builtin catalog entry must).
bool has_runtime(std::string_view name);

}  // namespace portico::plugins
