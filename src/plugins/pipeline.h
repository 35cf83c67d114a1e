// The compiled plugin chains of a snapshot and the order they run in.
//
// - Chain: the plugins of one route (its own merged over its plugin config's and its service's: route >
//   plugin_config > service, `_meta.disable` dropped), of one global rule, or of one consumer (its non-auth
//   plugins), sorted by priority, highest first. Built with the snapshot by compile_chain; immutable.
// - Pipeline: the order of one request, as APISIX runs it:
//     1. each global rule (in id order): its rewrite, then its access phase;
//     2. the route's rewrite phase (auth plugins run here and may set the consumer);
//     3. once a consumer is known, its plugins are merged over the route's (a plugin configured on both runs
//        with the consumer's configuration), and the consumer's own plugins run their rewrite phase;
//     4. the access phase of the merged chain.
//   A plugin that replies ends these phases. A plugin's access() may suspend the request (context.h
//   Completion): run_request then returns false with the cursor in the context; once the completion came,
//   resume_request calls that plugin's resume() and goes on from the next plugin, so the order is the same
//   as without the wait. A request whose plugins never suspend pays nothing for it. The response phase then
//   runs for global rules, then the merged chain, whether the response came from the upstream or from a
//   plugin; the log phase likewise. A global rule's plugin with run_policy prefer_route
//   (Plugin::prefer_route) is skipped in every phase when the route's chain has the same plugin (APISIX's
//   plugin.filter does so for global rules).
//
// Nothing here allocates per request: the merge is a walk over two sorted arrays.
// Chains are shared by every worker; the functions run on the request's worker.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "config/model.h"
#include "plugins/context.h"
#include "plugins/plugin.h"

namespace portico::plugins {

struct Chain {
  std::vector<std::shared_ptr<const Plugin>> plugins;  // by priority, highest first (then by name)
  uint8_t phases = 0;                                  // union of the plugins' phases
};

// Compiles the effective plugins of a route from its layers (any may be null), lowest precedence first:
// service, plugin config, route. Returns null when nothing runs (no plugin, or all disabled), so such a route
// costs nothing per request. `cache` shares runtime plugins between chains built together: the same
// configuration object (a service's plugin used by many routes) is compiled once. Null with `error` when a
// plugin cannot be built.
using PluginCache = std::vector<std::pair<const void*, std::shared_ptr<const Plugin>>>;
std::shared_ptr<const Chain> compile_chain(std::span<const config::PluginMap* const> layers,
                                           const BuildEnv& env, PluginCache& cache, std::string* error);

// The global rules of a snapshot, in id order; rules whose plugins are all disabled are left out.
struct GlobalRules {
  std::vector<std::shared_ptr<const Chain>> chains;
  uint8_t phases = 0;
};

class Pipeline {
 public:
  Pipeline() = default;
  // Either may be null (no global rules; a route without plugins).
  Pipeline(const GlobalRules* globals, const Chain* route) : globals_(globals), route_(route) {}

  bool empty() const { return globals_ == nullptr && route_ == nullptr; }

  // Steps 1-4 above. True: done, and ctx.replied() says whether a plugin answered. False: a plugin
  // suspended the request (ctx.suspended()); call resume_request once ctx.waiting() is false.
  bool run_request(RequestContext& ctx) const;
  bool resume_request(RequestContext& ctx) const;
  // The response phase (ctx.consumer's plugins included when set).
  void run_response(RequestContext& ctx, const ResponseInfo& info) const;
  void run_log(const RequestContext& ctx, const LogInfo& info) const;

 private:
  bool run_from(RequestContext& ctx) const;
  const GlobalRules* globals_ = nullptr;
  const Chain* route_ = nullptr;
};

}  // namespace portico::plugins
