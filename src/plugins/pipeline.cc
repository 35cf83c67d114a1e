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

bool Pipeline::run_request(RequestContext& ctx) const {
  ctx.cursor = {};
  return run_from(ctx);
}

bool Pipeline::resume_request(RequestContext& ctx) const {
  const Plugin* p = ctx.cursor.suspended;
  ctx.cursor.suspended = nullptr;
  ctx.clear_wait();
  if (p != nullptr) {
    ctx.global_rule = ctx.cursor.stage == 0;
    p->resume(ctx);
    if (ctx.suspended()) {  // it waits once more
      ctx.cursor.suspended = p;
      return false;
    }
    if (ctx.replied()) return true;
  }
  return run_from(ctx);
}

// Runs the request phases from ctx.cursor on. Each loop keeps its position in the cursor, advanced past a
// plugin before it runs, so that after a suspension the walk continues with the next plugin.
bool Pipeline::run_from(RequestContext& ctx) const {
  ResumeCursor& c = ctx.cursor;
  // False: stop here (a reply, or a suspension: c.suspended is set).
  auto call = [&](const Plugin& p, uint8_t phase) {
    ctx.global_rule = c.stage == 0;
    phase == kRewrite ? p.rewrite(ctx) : p.access(ctx);
    if (ctx.suspended()) {
      c.suspended = &p;
      return false;
    }
    return !ctx.replied();
  };
  auto stopped = [&] { return !ctx.suspended(); };  // what run_from returns after call() said stop
  if (c.stage == 0) {
    if (globals_ != nullptr && (globals_->phases & (kRewrite | kAccess)) != 0) {
      for (; c.chain < globals_->chains.size(); ++c.chain, c.phase = 0, c.i = 0) {
        const Chain& chain = *globals_->chains[c.chain];
        for (; c.phase < 2; ++c.phase, c.i = 0) {
          const uint8_t phase = c.phase == 0 ? kRewrite : kAccess;
          if ((chain.phases & phase) == 0) continue;
          while (c.i < chain.plugins.size()) {
            const Plugin& p = *chain.plugins[c.i++];
            if ((p.phases() & phase) == 0 || yields_to_route(p, route_)) continue;
            if (!call(p, phase)) return stopped();
          }
        }
      }
    }
    c.stage = 1;
    c.i = 0;
  }
  if (c.stage == 1) {
    if (route_ != nullptr && (route_->phases & kRewrite) != 0) {
      while (c.i < route_->plugins.size()) {
        const Plugin& p = *route_->plugins[c.i++];
        if ((p.phases() & kRewrite) != 0 && !call(p, kRewrite)) return stopped();
      }
    }
    c.stage = 2;
    c.i = 0;
  }
  // The consumer is known from here on (auth plugins run in the rewrite phase above).
  const Chain* consumer = consumer_chain(ctx);
  if (c.stage == 2) {
    if (consumer != nullptr && (consumer->phases & kRewrite) != 0) {
      while (c.i < consumer->plugins.size()) {
        const Plugin& p = *consumer->plugins[c.i++];
        if ((p.phases() & kRewrite) != 0 && !call(p, kRewrite)) return stopped();
      }
    }
    c.stage = 3;
    c.i = 0;
    c.j = 0;
  }
  if (c.stage == 3) {
    // for_merged's walk, with its two positions in the cursor.
    const auto none = std::span<const std::shared_ptr<const Plugin>>();
    auto r = route_ ? std::span(route_->plugins) : none;
    auto k = consumer ? std::span(consumer->plugins) : none;
    while (c.i < r.size() || c.j < k.size()) {
      const Plugin* next;
      if (c.j >= k.size() || (c.i < r.size() && r[c.i]->priority() > k[c.j]->priority())) {
        next = r[c.i++].get();
        if (consumer != nullptr && in_chain(consumer, next->name())) continue;
      } else {
        next = k[c.j++].get();
      }
      if ((next->phases() & kAccess) != 0 && !call(*next, kAccess)) return stopped();
    }
    c.stage = 4;
  }
  ctx.global_rule = false;
  return true;
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
