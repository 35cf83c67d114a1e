// Delta application: validate what changed, find what relies on it, rebuild only the overlay layer.
#include "snapshot/snapshot_builder.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <set>
#include <unordered_set>

#include "config/validate.h"

namespace portico::snapshot {
namespace {

template <typename T>
using Models = std::map<std::string, T, std::less<>>;
// Changes of one kind within a delta: nullopt = removed.
template <typename T>
using Pending = std::map<std::string, std::optional<T>, std::less<>>;

// What a pending change or, failing that, the current model says about `id`: the model, or null when it does
// not exist (or is being removed).
template <typename T>
const T* lookup(const Pending<T>& pending, const Models<T>& models, std::string_view id) {
  if (auto it = pending.find(id); it != pending.end()) return it->second ? &*it->second : nullptr;
  auto it = models.find(id);
  return it == models.end() ? nullptr : &it->second;
}

template <typename T>
void commit(Pending<T>& pending, Models<T>& models) {
  for (auto& [id, value] : pending) {
    if (value) {
      models.insert_or_assign(id, std::move(*value));
    } else {
      models.erase(id);
    }
  }
}

template <typename T, typename KeyOf>
Models<T> index_models(const std::vector<T>& list, KeyOf key_of) {
  Models<T> out;
  for (const T& item : list) out.insert_or_assign(key_of(item), item);
  return out;
}

template <typename T>
std::vector<T> list_models(const Models<T>& models) {
  std::vector<T> out;
  out.reserve(models.size());
  for (const auto& [id, model] : models) out.push_back(model);
  return out;
}

// The body limit of the global rules: the last rule (in id order) that sets one.
int64_t global_limit_of(const Models<config::GlobalRule>& rules) {
  int64_t limit = -1;
  for (const auto& [id, rule] : rules) {
    if (rule.max_body_size >= 0) limit = rule.max_body_size;
  }
  return limit;
}

bool set_bit(std::vector<uint64_t>& bits, uint32_t i) {
  uint64_t& word = bits[i >> 6];
  const uint64_t mask = uint64_t{1} << (i & 63);
  if ((word & mask) != 0) return false;
  word |= mask;
  return true;
}

bool test_bit(const std::vector<uint64_t>& bits, uint32_t i) {
  return (bits[i >> 6] >> (i & 63) & 1) != 0;
}

}  // namespace

struct SnapshotBuilder::State {
  BuildContext context;
  SnapshotBuilderOptions options;
  std::shared_ptr<const Snapshot> last;  // null: no base to apply deltas to
  bool ordered = false;                  // the base's routes are in id order

  Models<config::Service> services;
  Models<config::Upstream> upstreams;
  Models<config::Consumer> consumers;
  Models<config::Ssl> ssls;
  Models<config::GlobalRule> global_rules;
  Models<config::PluginConfig> plugin_configs;
  int64_t global_limit = -1;

  std::unordered_map<std::string_view, uint32_t>
      base_index;                                // route id -> index in last->base (views into it)
  Models<std::optional<config::Route>> overlay;  // routes changed since the base; nullopt = removed
  std::vector<uint64_t> overridden;              // bits over base routes
  size_t overridden_count = 0;
  // Every upstream runtime in use, by key, for reuse by the next layer.
  std::unordered_map<std::string, std::shared_ptr<UpstreamRuntime>> runtimes;

  // The current model of route `id`, or null when there is none.
  const config::Route* route(std::string_view id) const {
    if (auto it = overlay.find(id); it != overlay.end()) return it->second ? &*it->second : nullptr;
    auto it = base_index.find(id);
    return it == base_index.end() ? nullptr : &last->base->config.routes[it->second];
  }

  std::shared_ptr<UpstreamRuntime> reuse(const std::string& key, const config::Upstream& spec) const {
    auto it = runtimes.find(key);
    return it != runtimes.end() && it->second->spec == spec ? it->second : nullptr;
  }

  void remember_runtimes(const Layer& layer) {
    for (const auto& up : layer.upstreams) runtimes.insert_or_assign(up->key, up);
  }

  // Makes `layer` the base of a one-layer snapshot.
  std::shared_ptr<const Snapshot> install_base(std::shared_ptr<const Layer> layer, std::string hash,
                                               std::string source, uint64_t generation) {
    auto snap = std::make_shared<Snapshot>();
    snap->generation = generation;
    snap->hash = std::move(hash);
    snap->source = std::move(source);
    snap->route_count = layer->config.routes.size();
    snap->base = std::move(layer);
    const auto& routes = snap->base->config.routes;
    ordered = std::is_sorted(routes.begin(), routes.end(),
                             [](const config::Route& a, const config::Route& b) { return a.id < b.id; });
    base_index.clear();
    base_index.reserve(routes.size());
    for (size_t i = 0; i < routes.size(); ++i) base_index.emplace(routes[i].id, static_cast<uint32_t>(i));
    overlay.clear();
    overridden.assign((routes.size() + 63) / 64, 0);
    overridden_count = 0;
    runtimes.clear();
    remember_runtimes(*snap->base);
    last = snap;
    return snap;
  }

  // The whole current configuration, routes in id order.
  config::Config assemble() const {
    config::Config c;
    const auto& base = last->base->config.routes;
    c.routes.reserve(base.size() - overridden_count + overlay.size());
    auto next = overlay.begin();
    auto take_overlay_before = [&](const std::string* id) {
      for (; next != overlay.end() && (id == nullptr || next->first < *id); ++next) {
        if (next->second) c.routes.push_back(*next->second);
      }
    };
    for (size_t i = 0; i < base.size(); ++i) {
      if (test_bit(overridden, static_cast<uint32_t>(i))) continue;
      take_overlay_before(&base[i].id);
      c.routes.push_back(base[i]);
    }
    take_overlay_before(nullptr);
    c.services = list_models(services);
    c.upstreams = list_models(upstreams);
    c.consumers = list_models(consumers);
    c.ssls = list_models(ssls);
    c.global_rules = list_models(global_rules);
    c.plugin_configs = list_models(plugin_configs);
    return c;
  }

  // The overlay layer's config: its live routes with the services and upstreams they use.
  config::Config overlay_config() const {
    config::Config c;
    std::unordered_set<std::string_view> service_ids;
    std::unordered_set<std::string_view> upstream_ids;
    for (const auto& [id, route] : overlay) {
      if (!route) continue;
      c.routes.push_back(*route);
      if (!route->service_id.empty() && service_ids.insert(route->service_id).second) {
        const config::Service& s = services.at(route->service_id);
        c.services.push_back(s);
        if (!s.upstream_id.empty()) upstream_ids.insert(s.upstream_id);
      }
      if (!route->upstream_id.empty()) upstream_ids.insert(route->upstream_id);
    }
    for (std::string_view id : upstream_ids) c.upstreams.push_back(upstreams.find(id)->second);
    return c;
  }
};

SnapshotBuilder::SnapshotBuilder(BuildContext context, SnapshotBuilderOptions options)
    : state_(std::make_unique<State>()) {
  state_->context = context;
  state_->options = options;
}

SnapshotBuilder::~SnapshotBuilder() = default;

const std::string& SnapshotBuilder::hash() const {
  static const std::string kNone;
  return state_->last ? state_->last->hash : kNone;
}

std::shared_ptr<const Snapshot> SnapshotBuilder::build(config::Config config, std::string hash,
                                                       std::string source, uint64_t generation,
                                                       std::string* error) {
  State& s = *state_;
  auto id = [](const auto& r) { return r.id; };
  Models<config::Service> services = index_models(config.services, id);
  Models<config::Upstream> upstreams = index_models(config.upstreams, id);
  Models<config::Consumer> consumers =
      index_models(config.consumers, [](const auto& c) { return c.username; });
  Models<config::Ssl> ssls = index_models(config.ssls, id);
  Models<config::GlobalRule> global_rules = index_models(config.global_rules, id);
  Models<config::PluginConfig> plugin_configs = index_models(config.plugin_configs, id);
  auto layer = build_layer(std::move(config), s.context, nullptr, error);
  if (!layer) return nullptr;
  s.services = std::move(services);
  s.upstreams = std::move(upstreams);
  s.consumers = std::move(consumers);
  s.ssls = std::move(ssls);
  s.global_rules = std::move(global_rules);
  s.plugin_configs = std::move(plugin_configs);
  s.global_limit = global_limit_of(s.global_rules);
  return s.install_base(std::move(layer), std::move(hash), std::move(source), generation);
}

SnapshotBuilder::Result SnapshotBuilder::apply(std::span<const ResourceChange> changes, std::string hash,
                                               std::string source, uint64_t generation) {
  State& s = *state_;
  Result result;
  if (!s.last || !s.ordered) return result;

  // 1. Each changed resource on its own, with the loader's validators.
  config::Errors errors;
  Pending<config::Route> routes;
  Pending<config::Service> services;
  Pending<config::Upstream> upstreams;
  Pending<config::Consumer> consumers;
  Pending<config::Ssl> ssls;
  Pending<config::GlobalRule> global_rules;
  Pending<config::PluginConfig> plugin_configs;
  for (const ResourceChange& change : changes) {
    const std::string path = std::string(change.kind) + "/" + std::string(change.id);
    std::optional<nlohmann::json> value;
    if (change.value != nullptr) {
      value = nlohmann::json::parse(*change.value, nullptr, false);
      if (value->is_discarded()) {
        errors.add(path, "is not valid JSON");
        continue;
      }
    }
    // Validates the value (if any) and records the change; the value must carry the key it is stored under.
    auto record = [&](auto& pending, auto validate, auto key_of, std::string_view key_field) {
      using Model = typename std::remove_reference_t<decltype(pending)>::mapped_type::value_type;
      std::optional<Model> model;
      if (value) {
        model = validate(*value, path, errors, config::ValidateOptions{});
        if (!model) return;
        if (key_of(*model) != change.id) {
          errors.add(path + "." + std::string(key_field),
                     "does not match the resource's key \"" + std::string(change.id) + "\"");
          return;
        }
      }
      pending.insert_or_assign(std::string(change.id), std::move(model));
    };
    auto id = [](const auto& m) -> const std::string& { return m.id; };
    if (change.kind == "routes") {
      record(routes, config::validate_route, id, "id");
    } else if (change.kind == "services") {
      record(services, config::validate_service, id, "id");
    } else if (change.kind == "upstreams") {
      record(upstreams, config::validate_upstream, id, "id");
    } else if (change.kind == "consumers") {
      record(
          consumers, config::validate_consumer,
          [](const auto& m) -> const std::string& { return m.username; }, "username");
    } else if (change.kind == "ssls") {
      record(ssls, config::validate_ssl, id, "id");
    } else if (change.kind == "global_rules") {
      record(global_rules, config::validate_global_rule, id, "id");
    } else if (change.kind == "plugin_configs") {
      record(plugin_configs, config::validate_plugin_config, id, "id");
    } else {
      errors.add(std::string(change.kind), "is not a resource kind of this version");
    }
  }

  auto refuse = [&] {
    result.outcome = Outcome::invalid;
    result.errors_truncated = errors.truncated();
    result.errors = errors.take();
    return std::move(result);
  };
  if (errors.total() != 0) return refuse();

  // 2. What the change touches: the changed routes, and every route relying on a changed or removed service,
  // upstream or plugin config (through its service, for an upstream). A changed global body limit touches
  // all.
  int64_t global_limit = s.global_limit;
  if (!global_rules.empty()) {
    Models<config::GlobalRule> merged = s.global_rules;
    commit(global_rules, merged);
    global_limit = global_limit_of(merged);
  }
  const bool touch_all = global_limit != s.global_limit;
  std::unordered_set<std::string_view> touched_services;
  for (const auto& [id, model] : services) touched_services.insert(id);
  std::vector<std::string_view> services_to_check;  // changed, or relying on a changed upstream
  for (const auto& [id, model] : services) {
    if (model) services_to_check.push_back(id);
  }
  if (!upstreams.empty()) {
    for (const auto& [id, service] : s.services) {
      if (!service.upstream_id.empty() && upstreams.contains(service.upstream_id) && !services.contains(id)) {
        touched_services.insert(id);
        services_to_check.push_back(id);
      }
    }
  }
  std::set<std::string_view> touched;  // route ids, in id order
  for (const auto& [id, model] : routes) touched.insert(id);
  if (touch_all || !touched_services.empty() || !upstreams.empty() || !plugin_configs.empty()) {
    auto relies = [&](const config::Route& r) {
      return touch_all || (!r.service_id.empty() && touched_services.contains(r.service_id)) ||
             (!r.upstream_id.empty() && upstreams.contains(r.upstream_id)) ||
             (!r.plugin_config_id.empty() && plugin_configs.contains(r.plugin_config_id));
    };
    const auto& base = s.last->base->config.routes;
    for (size_t i = 0; i < base.size(); ++i) {
      if (!test_bit(s.overridden, static_cast<uint32_t>(i)) && relies(base[i])) touched.insert(base[i].id);
    }
    for (const auto& [id, route] : s.overlay) {
      if (route && relies(*route)) touched.insert(id);
    }
  }

  // 3. The cross-resource rules for what is touched, against the configuration as it will be.
  auto find_service = [&](std::string_view id) { return lookup(services, s.services, id); };
  auto upstream_defined = [&](const std::string& id) {
    return !id.empty() && lookup(upstreams, s.upstreams, id) != nullptr;
  };
  for (std::string_view id : services_to_check) {
    const config::Service* service = find_service(id);
    if (service != nullptr) {
      config::check_service_refs(*service, upstream_defined(service->upstream_id),
                                 "services/" + std::string(id), errors);
    }
  }
  struct Touched {
    std::string_view id;
    const config::Route* model;  // null: removed
  };
  std::vector<Touched> updates;
  updates.reserve(touched.size());
  for (std::string_view id : touched) {
    const config::Route* r = nullptr;
    if (auto it = routes.find(id); it != routes.end()) {
      r = it->second ? &*it->second : nullptr;
    } else {
      r = s.route(id);
    }
    updates.push_back({id, r});
    if (r == nullptr) continue;
    config::RouteRefs refs;
    refs.upstream_defined = upstream_defined(r->upstream_id);
    refs.plugin_config_defined = !r->plugin_config_id.empty() &&
                                 lookup(plugin_configs, s.plugin_configs, r->plugin_config_id) != nullptr;
    if (!r->service_id.empty()) {
      refs.service = find_service(r->service_id);
      refs.service_defined = refs.service != nullptr;
    }
    config::check_route_refs(*r, refs, "routes/" + std::string(id), errors);
  }
  if (errors.total() != 0) return refuse();

  // 4. Commit: the touched routes, folded as check_config folds them, go to the overlay.
  std::vector<std::pair<std::string, std::optional<config::Route>>> folded;
  folded.reserve(updates.size());
  for (const Touched& t : updates) {
    std::optional<config::Route> r;
    if (t.model != nullptr) {
      r = *t.model;
      const config::PluginConfig* pc = r->plugin_config_id.empty()
                                           ? nullptr
                                           : lookup(plugin_configs, s.plugin_configs, r->plugin_config_id);
      const config::Service* service = r->service_id.empty() ? nullptr : find_service(r->service_id);
      r->max_body_size = config::folded_max_body_size(*r, pc, service, global_limit);
    }
    folded.emplace_back(std::string(t.id), std::move(r));
  }
  for (const auto& [id, model] : routes) {
    if (!model) s.runtimes.erase("route:" + id);
  }
  for (const auto& [id, model] : services) {
    if (!model) s.runtimes.erase("service:" + id);
  }
  for (const auto& [id, model] : upstreams) {
    if (!model) s.runtimes.erase(id);
  }
  commit(services, s.services);
  commit(upstreams, s.upstreams);
  commit(consumers, s.consumers);
  commit(ssls, s.ssls);
  commit(global_rules, s.global_rules);
  commit(plugin_configs, s.plugin_configs);
  s.global_limit = global_limit;
  std::vector<uint64_t> overridden = s.overridden;  // the published snapshot keeps its own bits
  for (auto& [id, model] : folded) {
    auto base = s.base_index.find(id);
    if (base != s.base_index.end() && set_bit(overridden, base->second)) ++s.overridden_count;
    if (model || base != s.base_index.end()) {
      s.overlay.insert_or_assign(std::move(id), std::move(model));
    } else {
      s.overlay.erase(id);  // added and removed again since the base
    }
  }
  s.overridden = std::move(overridden);

  // 5. Build: the overlay, or everything when the overlay has grown too large or every route was touched.
  size_t live = 0;
  for (const auto& [id, model] : s.overlay) live += model ? 1 : 0;
  auto reuse = [&s](const std::string& key, const config::Upstream& spec) { return s.reuse(key, spec); };
  std::string error;
  if (touch_all || live > s.options.max_overlay_routes) {
    auto layer = build_layer(s.assemble(), s.context, reuse, &error);
    if (!layer) {
      s.last.reset();
      result.internal_error = error;
      return result;
    }
    result.outcome = Outcome::built;
    result.rebuilt = true;
    result.snapshot = s.install_base(std::move(layer), std::move(hash), std::move(source), generation);
    return result;
  }
  std::shared_ptr<const Layer> layer;
  if (touched.empty() && s.last->overlay) {
    layer = s.last->overlay;  // no route touched (consumers, SSLs, unused resources): same overlay
  } else if (live > 0) {
    layer = build_layer(s.overlay_config(), s.context, reuse, &error);
    if (!layer) {
      s.last.reset();
      result.internal_error = error;
      return result;
    }
    s.remember_runtimes(*layer);
  }
  auto snap = std::make_shared<Snapshot>();
  snap->generation = generation;
  snap->hash = std::move(hash);
  snap->source = std::move(source);
  snap->route_count = s.last->base->config.routes.size() - s.overridden_count + live;
  snap->base = s.last->base;
  snap->overlay = std::move(layer);
  snap->overridden = s.overridden;
  s.last = snap;
  result.outcome = Outcome::built;
  result.snapshot = std::move(snap);
  return result;
}

}  // namespace portico::snapshot
