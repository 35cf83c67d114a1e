// Chain compilation and the order of the phases (pipeline.h).
#include "plugins/pipeline.h"

#include <algorithm>

#include <nlohmann/json.hpp>

#include "plugins/consumers.h"

namespace portico::plugins {

std::shared_ptr<const Chain> compile_chain(std::span<const config::PluginMap* const> layers,
                                           const BuildEnv& env, PluginCache& cache, std::string* error) {
  // The effective spec per name: a later layer (higher precedence) replaces an earlier one's.
  std::vector<const config::PluginSpec*> effective;
  for (const config::PluginMap* layer : layers) {
    if (layer == nullptr) continue;
    for (const config::PluginSpec& spec : *layer) {
      auto same = std::find_if(effective.begin(), effective.end(),
                               [&](const config::PluginSpec* s) { return s->name == spec.name; });
      if (same != effective.end()) {
        *same = &spec;
      } else {
        effective.push_back(&spec);
      }
    }
  }
  auto chain = std::make_shared<Chain>();
  for (const config::PluginSpec* spec : effective) {
    if (spec->disabled || !spec->conf) continue;
    const void* key = spec->conf.get();
    auto hit = std::find_if(cache.begin(), cache.end(), [&](const auto& e) { return e.first == key; });
    std::shared_ptr<const Plugin> plugin;
    if (hit != cache.end() && hit->second->priority() == spec->priority) {
      plugin = hit->second;
    } else {
      plugin = create_plugin(spec->name, *spec->conf, spec->priority, env, error);
      if (!plugin) return nullptr;
      cache.emplace_back(key, plugin);
    }
    chain->phases |= plugin->phases();
    chain->plugins.push_back(std::move(plugin));
  }
  if (chain->plugins.empty()) return nullptr;
  std::stable_sort(chain->plugins.begin(), chain->plugins.end(), [](const auto& a, const auto& b) {
    return a->priority() != b->priority() ? a->priority() > b->priority() : a->name() < b->name();
  });
  return chain;
}

namespace {

bool in_chain(const Chain* chain, std::string_view name) {
  if (chain == nullptr) return false;
  for (const auto& p : chain->plugins) {
    if (p->name() == name) return true;
  }
  return false;
}

// Calls `fn` for the plugins of the merged chain (route's plugins overridden by the consumer's), in priority
// order, while `fn` returns true.
template <typename Fn>
void for_merged(const Chain* route, const Chain* consumer, uint8_t phase, Fn&& fn) {
  const auto none = std::span<const std::shared_ptr<const Plugin>>();
  auto r = route ? std::span(route->plugins) : none;
  auto c = consumer ? std::span(consumer->plugins) : none;
  size_t i = 0, j = 0;
  while (i < r.size() || j < c.size()) {
    const Plugin* next;
    if (j >= c.size() || (i < r.size() && r[i]->priority() > c[j]->priority())) {
      next = r[i++].get();
      if (consumer != nullptr && in_chain(consumer, next->name())) continue;
    } else {
      next = c[j++].get();
    }
    if ((next->phases() & phase) != 0 && !fn(*next)) return;
  }
}

const Chain* consumer_chain(const RequestContext& ctx) {
  return ctx.consumer != nullptr ? ctx.consumer->chain.get() : nullptr;
}

// A global rule's plugin that gives way to the route's own configuration of it (Plugin::prefer_route).
bool yields_to_route(const Plugin& p, const Chain* route) {
  return p.prefer_route() && in_chain(route, p.name());
}

}  // namespace

void Pipeline::run_request(RequestContext& ctx) const {
  if (globals_ != nullptr && (globals_->phases & (kRewrite | kAccess)) != 0) {
    for (const auto& chain : globals_->chains) {
      for (uint8_t phase : {uint8_t{kRewrite}, uint8_t{kAccess}}) {
        if ((chain->phases & phase) == 0) continue;
        for (const auto& p : chain->plugins) {
          if ((p->phases() & phase) == 0 || yields_to_route(*p, route_)) continue;
          phase == kRewrite ? p->rewrite(ctx) : p->access(ctx);
          if (ctx.replied()) return;
        }
      }
    }
  }
  if (route_ != nullptr && (route_->phases & kRewrite) != 0) {
    for (const auto& p : route_->plugins) {
      if ((p->phases() & kRewrite) == 0) continue;
      p->rewrite(ctx);
      if (ctx.replied()) return;
    }
  }
  const Chain* consumer = consumer_chain(ctx);
  if (consumer != nullptr && (consumer->phases & kRewrite) != 0) {
    for (const auto& p : consumer->plugins) {
      if ((p->phases() & kRewrite) == 0) continue;
      p->rewrite(ctx);
      if (ctx.replied()) return;
    }
  }
  for_merged(route_, consumer, kAccess, [&](const Plugin& p) {
    p.access(ctx);
    return !ctx.replied();
  });
}

void Pipeline::run_response(RequestContext& ctx, const ResponseInfo& info) const {
  if (globals_ != nullptr && (globals_->phases & kResponse) != 0) {
    for (const auto& chain : globals_->chains) {
      for (const auto& p : chain->plugins) {
        if ((p->phases() & kResponse) != 0 && !yields_to_route(*p, route_)) p->on_response(ctx, info);
      }
    }
  }
  for_merged(route_, consumer_chain(ctx), kResponse, [&](const Plugin& p) {
    p.on_response(ctx, info);
    return true;
  });
}

void Pipeline::run_log(const RequestContext& ctx, const LogInfo& info) const {
  if (globals_ != nullptr && (globals_->phases & kLog) != 0) {
    for (const auto& chain : globals_->chains) {
      for (const auto& p : chain->plugins) {
        if ((p->phases() & kLog) != 0 && !yields_to_route(*p, route_)) p->log(ctx, info);
      }
    }
  }
  for_merged(route_, consumer_chain(ctx), kLog, [&](const Plugin& p) {
    p.log(ctx, info);
    return true;
  });
}

}  // namespace portico::plugins
