// Delta application: validate what changed, find what relies on it, rebuild only the overlay layer.
#include "snapshot/snapshot_builder.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <array>
#include <atomic>
#include <set>
#include <thread>
#include <tuple>
#include <unordered_set>

#include "base/log.h"
#include "config/json_input.h"
#include "config/validate.h"
#include "plugins/consumers.h"
#include "plugins/pipeline.h"
#include "tls/cert_store.h"

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

// `models` with `pending` applied, both left as they are (the pending values are committed after the checks).
template <typename T>
Models<T> merged_copy(const Pending<T>& pending, const Models<T>& models) {
  Models<T> out = models;
  for (const auto& [id, value] : pending) {
    if (value) {
      out.insert_or_assign(id, *value);
    } else {
      out.erase(id);
    }
  }
  return out;
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

// Consumers changed since the whole consumer index was built, past which a delta rebuilds it whole.
constexpr size_t kMaxConsumerOverlay = 1024;

// One `Holder<Model>` per resource kind other than routes.
template <template <typename> class Holder>
struct PerKind {
  Holder<config::Service> services;
  Holder<config::Upstream> upstreams;
  Holder<config::Consumer> consumers;
  Holder<config::Ssl> ssls;
  Holder<config::GlobalRule> global_rules;
  Holder<config::PluginConfig> plugin_configs;
  Holder<config::Credential> credentials;  // by full id "<username>/credentials/<id>": grouped by consumer
};

// The resources other than routes, by id: what a rebuild needs besides the routes.
using Resources = PerKind<Models>;

using RuntimeMap = std::unordered_map<std::string, std::shared_ptr<UpstreamRuntime>>;

// A base layer and what deltas need to know of it.
struct Base {
  std::shared_ptr<const Layer> layer;
  std::unordered_map<std::string_view, uint32_t> index;  // route id -> index (views into layer)
  bool ordered = false;                                  // routes in id order
  RuntimeMap runtimes;                                   // its upstream runtimes by key
  std::string error;                                     // set when the build failed (layer null)
};

Base make_base(std::shared_ptr<const Layer> layer) {
  Base b;
  const auto& routes = layer->config.routes;
  b.ordered = std::is_sorted(routes.begin(), routes.end(),
                             [](const config::Route& x, const config::Route& y) { return x.id < y.id; });
  b.index.reserve(routes.size());
  for (size_t i = 0; i < routes.size(); ++i) b.index.emplace(routes[i].id, static_cast<uint32_t>(i));
  for (const auto& up : layer->upstreams) b.runtimes.insert_or_assign(up->key, up);
  b.layer = std::move(layer);
  return b;
}

// Everything a whole rebuild reads, owned or immutable, so that it can run on another thread.
struct RebuildInput {
  std::shared_ptr<const Layer> base;
  std::shared_ptr<const Layer> overlay;  // may be null
  std::vector<uint64_t> overridden;
  Models<std::optional<config::Route>> overlay_routes;
  Resources resources;
};

// The whole configuration of `in` (routes in id order) built into a new base, reusing the runtimes of the
// input layers whose spec is unchanged.
Base rebuild(const RebuildInput& in, const BuildContext& context) {
  config::Config c;
  const auto& base = in.base->config.routes;
  c.routes.reserve(base.size() + in.overlay_routes.size());
  auto next = in.overlay_routes.begin();
  auto take_overlay_before = [&](const std::string* id) {
    for (; next != in.overlay_routes.end() && (id == nullptr || next->first < *id); ++next) {
      if (next->second) c.routes.push_back(*next->second);
    }
  };
  for (size_t i = 0; i < base.size(); ++i) {
    if (test_bit(in.overridden, static_cast<uint32_t>(i))) continue;
    take_overlay_before(&base[i].id);
    c.routes.push_back(base[i]);
  }
  take_overlay_before(nullptr);
  c.services = list_models(in.resources.services);
  c.upstreams = list_models(in.resources.upstreams);
  c.consumers = list_models(in.resources.consumers);
  c.ssls = list_models(in.resources.ssls);
  c.global_rules = list_models(in.resources.global_rules);
  c.plugin_configs = list_models(in.resources.plugin_configs);
  c.credentials = list_models(in.resources.credentials);

  std::unordered_map<std::string_view, const std::shared_ptr<UpstreamRuntime>*> existing;
  for (const auto* layer : {in.base.get(), in.overlay.get()}) {
    if (layer == nullptr) continue;
    for (const auto& up : layer->upstreams) existing.insert_or_assign(up->key, &up);
  }
  auto reuse = [&](const std::string& key, const config::Upstream& spec) -> std::shared_ptr<UpstreamRuntime> {
    auto it = existing.find(key);
    return it != existing.end() && (*it->second)->spec == spec ? *it->second : nullptr;
  };
  std::string error;
  auto layer = build_layer(std::move(c), context, reuse, &error);
  if (!layer) {
    Base failed;
    failed.error = error;
    return failed;
  }
  return make_base(std::move(layer));
}

// A whole rebuild running on its own thread while deltas keep going to the overlay.
struct BackgroundRebuild {
  std::thread thread;
  std::atomic<bool> finished{false};
  bool stale = false;                    // another base was installed meanwhile: drop the result
  std::set<std::string> touched_since;   // route ids deltas touched after the input was taken
  std::set<std::string> runtimes_since;  // upstream runtime keys deltas built or dropped after that
  Base result;
};

}  // namespace

struct SnapshotBuilder::State {
  BuildContext context;
  SnapshotBuilderOptions options;
  std::shared_ptr<const Snapshot> last;  // null: no base to apply deltas to

  Resources resources;
  int64_t global_limit = -1;
  // Compiled apart from the layers, rebuilt only when global rules or consumers change.
  std::shared_ptr<const plugins::GlobalRules> global_rules;
  std::shared_ptr<const plugins::ConsumerIndex> consumers;
  std::set<std::string> consumers_changed;    // usernames changed or removed since the whole consumer index
  std::shared_ptr<const tls::CertStore> tls;  // rebuilt only when ssls change

  Base base;
  Models<std::optional<config::Route>> overlay;  // routes changed since the base; nullopt = removed
  std::vector<uint64_t> overridden;              // bits over base routes
  size_t overridden_count = 0;
  // Every upstream runtime in use, by key, for reuse by the next layer.
  RuntimeMap runtimes;
  std::unique_ptr<BackgroundRebuild> background;
  bool overlay_stale = false;  // the last published overlay layer does not match `base` and `overlay`

  std::thread reaper;  // frees what a harvested rebuild replaced (maps of every route), off the caller

  ~State() {
    join_background();
    if (reaper.joinable()) reaper.join();
  }

  void join_background() {
    if (background && background->thread.joinable()) background->thread.join();
  }

  // The current model of route `id`, or null when there is none.
  const config::Route* route(std::string_view id) const {
    if (auto it = overlay.find(id); it != overlay.end()) return it->second ? &*it->second : nullptr;
    auto it = base.index.find(id);
    return it == base.index.end() ? nullptr : &base.layer->config.routes[it->second];
  }

  std::shared_ptr<UpstreamRuntime> reuse(const std::string& key, const config::Upstream& spec) const {
    auto it = runtimes.find(key);
    return it != runtimes.end() && it->second->spec == spec ? it->second : nullptr;
  }

  void remember_runtimes(const Layer& layer) {
    for (const auto& up : layer.upstreams) {
      runtimes.insert_or_assign(up->key, up);
      if (background && !background->stale) background->runtimes_since.insert(up->key);
    }
  }

  void forget_runtime(const std::string& key) {
    runtimes.erase(key);
    if (background && !background->stale) background->runtimes_since.insert(key);
  }

  // Frees `garbage` (whole layers and maps of every route) on the reaper thread, off the caller.
  template <typename T>
  void reap(std::shared_ptr<T> garbage) {
    if (reaper.joinable()) reaper.join();
    reaper = std::thread([garbage = std::move(garbage)]() mutable { garbage.reset(); });
  }

  RebuildInput rebuild_input() const {
    return RebuildInput{base.layer, last ? last->overlay : nullptr, overridden, overlay, resources};
  }

  // Makes `b` the base, with an empty overlay; a background rebuild still running is now stale. What it
  // replaces (and `old_runtimes`) is freed by the reaper.
  void adopt_base(Base b, RuntimeMap old_runtimes = {}) {
    auto garbage = std::make_shared<std::tuple<Base, RuntimeMap, RuntimeMap>>(
        std::move(base), std::move(runtimes), std::move(old_runtimes));
    base = std::move(b);
    overlay.clear();
    overridden.assign((base.layer->config.routes.size() + 63) / 64, 0);
    overridden_count = 0;
    runtimes = std::move(base.runtimes);
    base.runtimes.clear();
    if (background) background->stale = true;
    reap(std::move(garbage));
  }

  // Routes in the overlay that exist (the rest mark removed base routes).
  size_t live_overlay_routes() const {
    return static_cast<size_t>(std::count_if(overlay.begin(), overlay.end(),
                                             [](const auto& entry) { return entry.second.has_value(); }));
  }

  std::shared_ptr<const Snapshot> publish(std::shared_ptr<const Layer> overlay_layer, std::string hash,
                                          std::string source, uint64_t generation) {
    const size_t live = live_overlay_routes();
    auto snap = std::make_shared<Snapshot>();
    snap->generation = generation;
    snap->hash = std::move(hash);
    snap->source = std::move(source);
    snap->route_count = base.layer->config.routes.size() - overridden_count + live;
    snap->base = base.layer;
    snap->overlay = std::move(overlay_layer);
    if (overridden_count != 0) snap->overridden = overridden;  // none: the router skips the mask test
    snap->global_rules = global_rules;
    snap->consumers = consumers;
    snap->tls = tls;
    last = snap;
    overlay_stale = false;
    return snap;
  }

  // Installs a finished background rebuild: its base, with the routes touched since it started as the
  // overlay. True when a new base was installed (the overlay layer must then be rebuilt).
  bool harvest_background() {
    if (!background || !background->finished.load()) return false;
    join_background();
    std::shared_ptr<BackgroundRebuild> done = std::move(background);
    if (done->stale || !done->result.layer) {
      if (!done->result.error.empty() && !done->stale) {
        PORTICO_LOG(error, "background rebuild failed: %s", done->result.error.c_str());
      }
      reap(std::move(done));
      return false;
    }
    Models<std::optional<config::Route>> current = std::move(overlay);
    RuntimeMap newest = std::move(runtimes);
    // Runtimes deltas built or dropped meanwhile are newer than the rebuild's: keep theirs.
    for (const std::string& key : done->runtimes_since) {
      auto it = newest.find(key);
      if (it != newest.end()) {
        done->result.runtimes.insert_or_assign(key, it->second);
      } else {
        done->result.runtimes.erase(key);
      }
    }
    adopt_base(std::move(done->result), std::move(newest));
    for (const std::string& id : done->touched_since) {
      auto it = current.find(id);
      const bool in_base = base.index.contains(id);
      if (it != current.end()) {
        if (it->second || in_base) overlay.insert_or_assign(id, std::move(it->second));
      } else if (in_base) {
        overlay.insert_or_assign(id, std::nullopt);  // added and removed again since the rebuild started
      }
    }
    for (const auto& [id, model] : overlay) {
      auto b = base.index.find(id);
      if (b != base.index.end() && set_bit(overridden, b->second)) ++overridden_count;
    }
    overlay_stale = true;
    return true;
  }

  void start_background() {
    background = std::make_unique<BackgroundRebuild>();
    BackgroundRebuild* job = background.get();
    job->thread = std::thread([job, input = rebuild_input(), context = context] {
      try {
        job->result = rebuild(input, context);
      } catch (const std::exception& e) {  // allocation failure: the overlay keeps growing, nothing breaks
        job->result = Base{};
        job->result.error = e.what();
      }
      job->finished.store(true);
    });
  }

  // The overlay layer's config: its live routes with the services and upstreams they use.
  // The consumer index after the consumers named in `changed` (their own resource or one of their
  // credentials) were committed: an overlay over the whole index holding every consumer changed since it was
  // built (a delta costs the consumers changed, not all of them), or a new whole index once that overlay
  // passes kMaxConsumerOverlay.
  void update_consumers(const std::set<std::string>& changed) {
    consumers_changed.insert(changed.begin(), changed.end());
    if (!consumers || consumers_changed.size() > kMaxConsumerOverlay) {
      consumers =
          build_consumers(list_models(resources.consumers), list_models(resources.credentials), context);
      consumers_changed.clear();
      return;
    }
    std::vector<config::Consumer> current;
    std::vector<config::Credential> credentials;
    std::vector<std::string> masked(consumers_changed.begin(), consumers_changed.end());
    for (const std::string& name : consumers_changed) {
      if (auto it = resources.consumers.find(name); it != resources.consumers.end())
        current.push_back(it->second);
      const std::string prefix = name + std::string(config::kCredentialsInfix);
      for (auto it = resources.credentials.lower_bound(prefix);
           it != resources.credentials.end() && it->first.starts_with(prefix); ++it) {
        credentials.push_back(it->second);
      }
    }
    plugins::BuildEnv env;
    env.workers = context.workers;
    env.metrics = context.metrics;
    env.redis = context.redis;
    env.limits = context.limits;
    plugins::PluginCache cache;
    std::vector<std::string> problems;
    consumers = plugins::ConsumerIndex::layer(plugins::ConsumerIndex::whole_of(consumers), current,
                                              credentials, masked, env, cache, problems);
    for (const std::string& p : problems) PORTICO_LOG(warn, "consumers: %s", p.c_str());
  }

  config::Config overlay_config() const {
    config::Config c;
    std::unordered_set<std::string_view> service_ids;
    std::unordered_set<std::string_view> upstream_ids;
    for (const auto& [id, route] : overlay) {
      if (!route) continue;
      c.routes.push_back(*route);
      if (!route->service_id.empty() && service_ids.insert(route->service_id).second) {
        const config::Service& s = resources.services.at(route->service_id);
        c.services.push_back(s);
        if (!s.upstream_id.empty()) upstream_ids.insert(s.upstream_id);
      }
      if (!route->upstream_id.empty()) upstream_ids.insert(route->upstream_id);
    }
    std::unordered_set<std::string_view> plugin_config_ids;
    for (const auto& [id, route] : overlay) {
      if (route && !route->plugin_config_id.empty() &&
          plugin_config_ids.insert(route->plugin_config_id).second) {
        c.plugin_configs.push_back(resources.plugin_configs.at(route->plugin_config_id));
      }
    }
    // The upstreams traffic-split names, wherever it is configured. Views into the models, which outlive c.
    std::vector<std::string> split_ids;
    auto add_split = [&](const config::PluginMap& plugins) {
      for (config::PluginUpstreamRef& ref : config::plugin_upstream_refs(plugins)) {
        split_ids.push_back(std::move(ref.id));
      }
    };
    for (const auto& [id, route] : overlay) {
      if (route) add_split(route->plugins);
    }
    for (const config::Service& sv : c.services) add_split(sv.plugins);
    for (const config::PluginConfig& pc : c.plugin_configs) add_split(pc.plugins);
    for (const std::string& id : split_ids) {
      if (auto it = resources.upstreams.find(id); it != resources.upstreams.end())
        upstream_ids.insert(it->first);
    }
    for (std::string_view id : upstream_ids) c.upstreams.push_back(resources.upstreams.find(id)->second);
    // Upstream tls.client_cert_id is resolved at build time.
    for (const auto& [id, ssl] : resources.ssls) {
      if (ssl.type == config::SslType::client) c.ssls.push_back(ssl);
    }
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
  Resources resources;
  resources.services = index_models(config.services, id);
  resources.upstreams = index_models(config.upstreams, id);
  resources.consumers = index_models(config.consumers, [](const auto& c) { return c.username; });
  resources.ssls = index_models(config.ssls, id);
  resources.global_rules = index_models(config.global_rules, id);
  resources.plugin_configs = index_models(config.plugin_configs, id);
  resources.credentials = index_models(config.credentials, id);
  std::string global_error;
  auto global_rules = build_global_rules(config.global_rules, s.context, &global_error);
  if (!global_rules && !global_error.empty()) {
    if (error) *error = global_error;
    return nullptr;
  }
  auto consumers = build_consumers(config.consumers, config.credentials, s.context);
  auto tls_store = build_tls(config.ssls, s.tls.get());
  auto layer = build_layer(std::move(config), s.context, nullptr, error);
  if (!layer) return nullptr;
  s.global_rules = std::move(global_rules);
  s.consumers = std::move(consumers);
  s.consumers_changed.clear();
  s.tls = std::move(tls_store);
  s.resources = std::move(resources);
  s.global_limit = global_limit_of(s.resources.global_rules);
  s.adopt_base(make_base(std::move(layer)));
  return s.publish(nullptr, std::move(hash), std::move(source), generation);
}

void SnapshotBuilder::wait_for_background_rebuild() {
  state_->join_background();
}

SnapshotBuilder::Result SnapshotBuilder::apply(std::span<const ResourceChange> changes, std::string hash,
                                               std::string source, uint64_t generation) {
  State& s = *state_;
  Result result;
  const bool new_base = s.last && s.harvest_background();  // the content stays the same
  if (!s.last || !s.base.ordered) return result;

  // 1. Each changed resource on its own, with the loader's validators.
  config::Errors errors;
  Pending<config::Route> routes;
  PerKind<Pending> pending;
  auto& [services, upstreams, consumers, ssls, global_rules, plugin_configs, credentials] = pending;
  for (const ResourceChange& change : changes) {
    const std::string path = std::string(change.kind) + "/" + std::string(change.id);
    std::optional<nlohmann::json> value;
    if (change.value != nullptr) {
      // The strict reader (depth-bounded, no repeated keys), as for every JSON value that enters.
      value = config::parse_json(*change.value, errors, path);
      if (!value) continue;
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
    } else if (change.kind == "credentials") {
      record(credentials, config::validate_credential, id, "id");
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

  // A credential belongs to a consumer that exists; a consumer is removed with its credentials.
  auto consumer_defined = [&](const std::string& name) {
    return lookup(consumers, s.resources.consumers, name) != nullptr;
  };
  for (const auto& [id, model] : credentials) {
    if (model && !consumer_defined(model->username)) {
      errors.add("credentials/" + id + ".id",
                 "consumer \"" + model->username + "\" is not defined in consumers");
    }
  }
  for (const auto& [name, model] : consumers) {
    if (model) continue;
    const std::string prefix = name + std::string(config::kCredentialsInfix);
    for (auto it = s.resources.credentials.lower_bound(prefix);
         it != s.resources.credentials.end() && it->first.starts_with(prefix); ++it) {
      if (lookup(credentials, s.resources.credentials, it->first) != nullptr) {
        errors.add("credentials/" + it->first + ".id",
                   "consumer \"" + name + "\" is not defined in consumers (removed by this change)");
        break;
      }
    }
  }
  if (errors.total() != 0) return refuse();

  // 2. What the change touches: the changed routes, and every route relying on a changed or removed service,
  // upstream or plugin config (through its service, for an upstream). A changed global body limit touches
  // all.
  int64_t global_limit = s.global_limit;
  if (!global_rules.empty()) {
    global_limit = global_limit_of(merged_copy(global_rules, s.resources.global_rules));
  }
  // A client certificate (ssls of type client) is compiled into the TLS contexts of the upstreams naming it
  // (tls.client_cert_id): a change to one rebuilds every upstream runtime that uses it, through a rebuild.
  bool client_ssl_changed = false;
  for (const auto& [id, model] : ssls) {
    const auto old = s.resources.ssls.find(id);
    if ((model && model->type == config::SslType::client) ||
        (old != s.resources.ssls.end() && old->second.type == config::SslType::client)) {
      client_ssl_changed = true;
    }
  }
  const bool touch_all = global_limit != s.global_limit || client_ssl_changed;
  std::unordered_set<std::string_view> touched_services;
  for (const auto& [id, model] : services) touched_services.insert(id);
  std::vector<std::string_view> services_to_check;  // changed, or relying on a changed upstream
  for (const auto& [id, model] : services) {
    if (model) services_to_check.push_back(id);
  }
  // traffic-split may name an upstream from a route, a service or a plugin config.
  auto plugins_rely = [&](const config::PluginMap& plugins) {
    for (const auto& [id, model] : upstreams) {
      if (config::plugin_refs_upstream(plugins, id)) return true;
    }
    return false;
  };
  std::unordered_set<std::string_view> touched_plugin_configs;  // relying on a changed upstream
  std::vector<std::string_view> plugin_configs_to_check;        // changed, or relying on a changed upstream
  for (const auto& [id, model] : plugin_configs) {
    if (model) plugin_configs_to_check.push_back(id);
  }
  if (!upstreams.empty()) {
    for (const auto& [id, service] : s.resources.services) {
      if (services.contains(id)) continue;
      if ((!service.upstream_id.empty() && upstreams.contains(service.upstream_id)) ||
          plugins_rely(service.plugins)) {
        touched_services.insert(id);
        services_to_check.push_back(id);
      }
    }
    for (const auto& [id, pc] : s.resources.plugin_configs) {
      if (!plugin_configs.contains(id) && plugins_rely(pc.plugins)) {
        touched_plugin_configs.insert(id);
        plugin_configs_to_check.push_back(id);
      }
    }
  }
  std::set<std::string_view> touched;  // route ids, in id order
  for (const auto& [id, model] : routes) touched.insert(id);
  if (touch_all || !touched_services.empty() || !upstreams.empty() || !plugin_configs.empty()) {
    auto relies = [&](const config::Route& r) {
      return touch_all || (!r.service_id.empty() && touched_services.contains(r.service_id)) ||
             (!r.upstream_id.empty() && upstreams.contains(r.upstream_id)) ||
             (!r.plugin_config_id.empty() && (plugin_configs.contains(r.plugin_config_id) ||
                                              touched_plugin_configs.contains(r.plugin_config_id))) ||
             (!upstreams.empty() && plugins_rely(r.plugins));
    };
    const auto& base = s.base.layer->config.routes;
    for (size_t i = 0; i < base.size(); ++i) {
      if (!test_bit(s.overridden, static_cast<uint32_t>(i)) && relies(base[i])) touched.insert(base[i].id);
    }
    for (const auto& [id, route] : s.overlay) {
      if (route && relies(*route)) touched.insert(id);
    }
  }

  // 3. The cross-resource rules for what is touched, against the configuration as it will be.
  auto find_service = [&](std::string_view id) { return lookup(services, s.resources.services, id); };
  auto upstream_defined = [&](const std::string& id) {
    return !id.empty() && lookup(upstreams, s.resources.upstreams, id) != nullptr;
  };
  auto split_defined = [&](const std::string& id) { return upstream_defined(id); };
  for (std::string_view id : services_to_check) {
    const config::Service* service = find_service(id);
    if (service != nullptr) {
      config::check_service_refs(*service, upstream_defined(service->upstream_id),
                                 "services/" + std::string(id), errors);
      config::check_plugin_upstream_refs(service->plugins, split_defined, "services/" + std::string(id),
                                         errors);
    }
  }
  for (std::string_view id : plugin_configs_to_check) {
    if (const config::PluginConfig* pc = lookup(plugin_configs, s.resources.plugin_configs, id)) {
      config::check_plugin_upstream_refs(pc->plugins, split_defined, "plugin_configs/" + std::string(id),
                                         errors);
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
    refs.plugin_config_defined =
        !r->plugin_config_id.empty() &&
        lookup(plugin_configs, s.resources.plugin_configs, r->plugin_config_id) != nullptr;
    if (!r->service_id.empty()) {
      refs.service = find_service(r->service_id);
      refs.service_defined = refs.service != nullptr;
    }
    config::check_route_refs(*r, refs, "routes/" + std::string(id), errors);
    config::check_plugin_upstream_refs(r->plugins, split_defined, "routes/" + std::string(id), errors);
  }
  if (errors.total() != 0) return refuse();

  // The global rules' plugins and the consumer index, when they changed (before anything is committed: a
  // plugin that cannot be built refuses the delta).
  std::shared_ptr<const plugins::GlobalRules> new_global_rules = s.global_rules;
  if (!global_rules.empty()) {
    std::string global_error;
    new_global_rules = build_global_rules(list_models(merged_copy(global_rules, s.resources.global_rules)),
                                          s.context, &global_error);
    if (!new_global_rules && !global_error.empty()) {
      errors.add("global_rules", global_error);
      return refuse();
    }
  }
  // 4. Commit: the touched routes, folded as check_config folds them, go to the overlay.
  std::vector<std::pair<std::string, std::optional<config::Route>>> folded;
  folded.reserve(updates.size());
  for (const Touched& t : updates) {
    std::optional<config::Route> r;
    if (t.model != nullptr) {
      r = *t.model;
      const config::PluginConfig* pc =
          r->plugin_config_id.empty()
              ? nullptr
              : lookup(plugin_configs, s.resources.plugin_configs, r->plugin_config_id);
      const config::Service* service = r->service_id.empty() ? nullptr : find_service(r->service_id);
      r->max_body_size = config::folded_max_body_size(*r, pc, service, global_limit);
    }
    folded.emplace_back(std::string(t.id), std::move(r));
  }
  for (const auto& [id, model] : routes) {
    if (!model) s.forget_runtime("route:" + id);
  }
  for (const auto& [id, model] : services) {
    if (!model) s.forget_runtime("service:" + id);
  }
  for (const auto& [id, model] : upstreams) {
    if (!model) s.forget_runtime(id);
  }
  commit(services, s.resources.services);
  commit(upstreams, s.resources.upstreams);
  commit(consumers, s.resources.consumers);
  commit(ssls, s.resources.ssls);
  if (!ssls.empty()) s.tls = build_tls(list_models(s.resources.ssls), s.tls.get());
  commit(global_rules, s.resources.global_rules);
  commit(plugin_configs, s.resources.plugin_configs);
  std::set<std::string> consumers_touched;
  for (const auto& [name, model] : consumers) consumers_touched.insert(name);
  for (const auto& [id, model] : credentials) {
    std::string_view username, own;
    if (config::split_credential_id(id, username, own)) consumers_touched.emplace(username);
  }
  commit(credentials, s.resources.credentials);
  s.global_limit = global_limit;
  s.global_rules = std::move(new_global_rules);
  if (!consumers_touched.empty()) s.update_consumers(consumers_touched);
  if (s.background && !s.background->stale) {  // it works from the state before this delta
    for (const auto& [id, model] : folded) s.background->touched_since.insert(id);
  }
  std::vector<uint64_t> overridden = s.overridden;  // the published snapshot keeps its own bits
  for (auto& [id, model] : folded) {
    auto base = s.base.index.find(id);
    if (base != s.base.index.end() && set_bit(overridden, base->second)) ++s.overridden_count;
    if (model || base != s.base.index.end()) {
      s.overlay.insert_or_assign(std::move(id), std::move(model));
    } else {
      s.overlay.erase(id);  // added and removed again since the base
    }
  }
  s.overridden = std::move(overridden);

  // 5. Build the overlay layer, or everything when every route was touched or the overlay has grown far
  // beyond its limit (a bulk import); past the limit, a whole rebuild starts in the background and a later
  // delta installs it.
  const size_t live = s.live_overlay_routes();
  auto fail = [&](std::string why) {
    s.last.reset();
    result.internal_error = std::move(why);
    return std::move(result);
  };
  // Removed routes count too: their base entries and runtimes stay until a rebuild.
  const size_t overlaid = s.overlay.size();
  if (touch_all || overlaid > s.options.max_overlay_routes * 8 ||
      (overlaid > s.options.max_overlay_routes && !s.options.rebuild_in_background)) {
    Base b = rebuild(s.rebuild_input(), s.context);
    if (!b.layer) return fail(b.error);
    s.adopt_base(std::move(b));
    result.outcome = Outcome::built;
    result.rebuilt = true;
    result.snapshot = s.publish(nullptr, std::move(hash), std::move(source), generation);
    return result;
  }
  auto reuse = [&s](const std::string& key, const config::Upstream& spec) { return s.reuse(key, spec); };
  std::shared_ptr<const Layer> layer;
  if (touched.empty() && !s.overlay_stale) {
    layer = s.last->overlay;  // no route touched (consumers, SSLs, unused resources): same overlay
  } else if (live > 0) {
    std::string error;
    layer = build_layer(s.overlay_config(), s.context, reuse, &error);
    if (!layer) return fail(error);
    s.remember_runtimes(*layer);
  }
  result.outcome = Outcome::built;
  result.rebuilt = new_base;
  result.snapshot = s.publish(std::move(layer), std::move(hash), std::move(source), generation);
  if (overlaid > s.options.max_overlay_routes && !s.background) s.start_background();
  return result;
}

}  // namespace portico::snapshot
