// Whole-document validation: top-level shape, unique ids, references between resources.
#include <limits>
#include <unordered_map>

#include <nlohmann/json.hpp>

#include "config/assembler.h"
#include "config/limit_groups.h"
#include "config/resources.h"

namespace portico::config {
namespace detail {
namespace {

std::string_view name_of(SectionKind s) {
  return kSectionNames[static_cast<size_t>(s)];
}

// Singular resource names for messages ("duplicate route id").
std::string_view noun_of(SectionKind s) {
  static constexpr std::string_view kNouns[] = {"route", "service",     "upstream",      "consumer",
                                                "SSL",   "global rule", "plugin config", "credential"};
  return kNouns[static_cast<size_t>(s)];
}

// The field holding a resource's key.
std::string_view key_field_of(SectionKind s) {
  return s == SectionKind::consumers ? "username" : "id";
}

std::string item_path(std::string_view section, size_t index) {
  std::string out(section);
  append_index(out, index);
  return out;
}

// Top-level keys of an APISIX standalone file that this version does not implement.
bool is_unsupported_section(std::string_view key) {
  static constexpr std::string_view kKeys[] = {"consumer_groups", "plugin_metadata", "stream_routes",
                                               "protos",          "secrets",         "plugins",
                                               "stream_plugins"};
  for (std::string_view k : kKeys) {
    if (key == k) return true;
  }
  return false;
}

}  // namespace

bool section_of(std::string_view name, SectionKind& out) {
  for (size_t i = 0; i < std::size(kSectionNames); ++i) {
    if (name == kSectionNames[i]) {
      out = static_cast<SectionKind>(i);
      return true;
    }
  }
  return false;
}

template <typename T>
void Assembler::keep_in(std::vector<T>& kept, SectionKind kind, size_t index, std::optional<T> value,
                        std::string id) {
  Section& s = section(kind);
  Definition definition{index, value ? static_cast<long>(kept.size()) : -1};
  if (value) {
    kept.push_back(std::move(*value));
    s.index.push_back(index);
  }
  if (id.empty()) return;
  auto [first, inserted] = s.by_id.insert(std::move(id), definition);
  if (!inserted) {  // `id` was not moved from
    const std::string_view name = name_of(kind);
    std::string path = item_path(name, index);
    append_key(path, key_field_of(kind));
    errors_.add(std::move(path), "duplicate " + std::string(noun_of(kind)) + " " +
                                     std::string(key_field_of(kind)) + " \"" + id + "\" (first defined at " +
                                     item_path(name, first->index) + ")");
  }
}

void Assembler::keep(size_t index, std::optional<Route> route, std::string id) {
  keep_in(config_.routes, SectionKind::routes, index, std::move(route), std::move(id));
}
void Assembler::keep(size_t index, std::optional<Service> service, std::string id) {
  keep_in(config_.services, SectionKind::services, index, std::move(service), std::move(id));
}
void Assembler::keep(size_t index, std::optional<Upstream> upstream, std::string id) {
  keep_in(config_.upstreams, SectionKind::upstreams, index, std::move(upstream), std::move(id));
}
void Assembler::keep(size_t index, std::optional<Consumer> consumer, std::string id) {
  keep_in(config_.consumers, SectionKind::consumers, index, std::move(consumer), std::move(id));
}
void Assembler::keep(size_t index, std::optional<Ssl> ssl, std::string id) {
  keep_in(config_.ssls, SectionKind::ssls, index, std::move(ssl), std::move(id));
}
void Assembler::keep(size_t index, std::optional<GlobalRule> rule, std::string id) {
  keep_in(config_.global_rules, SectionKind::global_rules, index, std::move(rule), std::move(id));
}
void Assembler::keep(size_t index, std::optional<PluginConfig> config, std::string id) {
  keep_in(config_.plugin_configs, SectionKind::plugin_configs, index, std::move(config), std::move(id));
}

void Assembler::keep(size_t index, std::optional<Credential> credential, std::string id) {
  keep_in(config_.credentials, SectionKind::credentials, index, std::move(credential), std::move(id));
}

void Assembler::add(SectionKind section, size_t index, const json& item) {
  const Path root("");
  const Path section_path = root.key(name_of(section));
  const Path p = section_path.index(index);
  // The key is taken even from an invalid resource, so that references to it are not reported as dangling
  // too.
  std::string id;
  if (item.is_object()) {
    if (auto it = item.find(key_field_of(section)); it != item.end()) {
      if (section == SectionKind::consumers) {
        id = peek_username(*it);
      } else if (section == SectionKind::credentials) {
        std::string_view user, own;
        if (it->is_string() && split_credential_id(it->get_ref<const std::string&>(), user, own))
          id = it->get<std::string>();
      } else {
        id = peek_id(*it);
      }
    }
  }
  const ValidateOptions options;
  switch (section) {
    case SectionKind::routes:
      keep(index, route_at(item, p, errors_, options), std::move(id));
      break;
    case SectionKind::services:
      keep(index, service_at(item, p, errors_, options), std::move(id));
      break;
    case SectionKind::upstreams:
      keep(index, upstream_at(item, p, errors_, false, options), std::move(id));
      break;
    case SectionKind::consumers:
      keep(index, consumer_at(item, p, errors_, options), std::move(id));
      break;
    case SectionKind::ssls:
      keep(index, ssl_at(item, p, errors_, options), std::move(id));
      break;
    case SectionKind::global_rules:
      keep(index, global_rule_at(item, p, errors_, options), std::move(id));
      break;
    case SectionKind::plugin_configs:
      keep(index, plugin_config_at(item, p, errors_, options), std::move(id));
      break;
    case SectionKind::credentials:
      keep(index, credential_at(item, p, errors_, options), std::move(id));
      break;
  }
}

void Assembler::check_document(const json& document) {
  const Path root("");
  if (!document.is_object()) {
    fail_type(errors_, root, "a mapping of resource lists (`routes`, `services`, `upstreams`, ...)",
              document);
    return;
  }
  for (auto it = document.begin(); it != document.end(); ++it) {
    const std::string& key = it.key();
    const json& value = it.value();
    const Path p = root.key(key);
    SectionKind section;
    if (section_of(key, section)) {
      if (value.is_null()) continue;  // `routes:` with nothing under it: an empty list
      if (!value.is_array()) {
        fail_type(errors_, p, "a list", value);
        continue;
      }
      for (size_t i = 0; i < value.size(); ++i) add(section, i, value[i]);
    } else if (key.size() > 13 && key.ends_with("_conf_version")) {
      int64_t version = 0;  // APISIX standalone API mode writes <type>_conf_version counters; tolerated
      read_int(value, p, errors_, int64_t{0}, std::numeric_limits<int64_t>::max(), version);
    } else if (is_unsupported_section(key)) {
      errors_.add(p.str(), "'" + key + "' is not supported by this version");
    } else {
      fail_unknown(errors_, root, key,
                   {"routes", "services", "upstreams", "consumers", "ssls", "global_rules", "plugin_configs",
                    "credentials"});
    }
  }
}

bool Assembler::link() {
  const size_t before = errors_.total();
  const Section& routes = section(SectionKind::routes);
  const Section& services = section(SectionKind::services);
  const Section& upstreams = section(SectionKind::upstreams);
  const Section& plugin_configs = section(SectionKind::plugin_configs);
  const Section& consumers = section(SectionKind::consumers);
  const Section& credentials = section(SectionKind::credentials);
  auto kept_service = [&](const Definition* d) {
    return d != nullptr && d->kept >= 0 ? &config_.services[static_cast<size_t>(d->kept)] : nullptr;
  };
  for (size_t k = 0; k < config_.routes.size(); ++k) {
    const Route& r = config_.routes[k];
    RouteRefs refs;
    refs.upstream_defined = !r.upstream_id.empty() && upstreams.by_id.contains(r.upstream_id);
    refs.plugin_config_defined =
        !r.plugin_config_id.empty() && plugin_configs.by_id.contains(r.plugin_config_id);
    if (!r.service_id.empty()) {
      const Definition* d = services.by_id.find(r.service_id);
      refs.service_defined = d != nullptr;
      refs.service = kept_service(d);
    }
    check_route_refs(r, refs, item_path("routes", routes.index[k]), errors_);
  }
  for (size_t k = 0; k < config_.services.size(); ++k) {
    const Service& s = config_.services[k];
    check_service_refs(s, !s.upstream_id.empty() && upstreams.by_id.contains(s.upstream_id),
                       item_path("services", services.index[k]), errors_);
  }
  // The upstreams traffic-split names, wherever it is configured.
  auto upstream_defined = [&](const std::string& id) { return upstreams.by_id.contains(id); };
  for (size_t k = 0; k < config_.routes.size(); ++k) {
    check_plugin_upstream_refs(config_.routes[k].plugins, upstream_defined,
                               item_path("routes", routes.index[k]), errors_);
  }
  for (size_t k = 0; k < config_.services.size(); ++k) {
    check_plugin_upstream_refs(config_.services[k].plugins, upstream_defined,
                               item_path("services", services.index[k]), errors_);
  }
  for (size_t k = 0; k < config_.plugin_configs.size(); ++k) {
    check_plugin_upstream_refs(config_.plugin_configs[k].plugins, upstream_defined,
                               item_path("plugin_configs", plugin_configs.index[k]), errors_);
  }
  // upstream tls.client_cert_id: an ssl of type client (APISIX refuses the upstream otherwise).
  const Section& ssls = section(SectionKind::ssls);
  auto check_cert_ref = [&](const Upstream* u, const std::string& path) {
    if (!u || !u->tls || u->tls->client_cert_id.empty()) return;
    const std::string& id = u->tls->client_cert_id;
    const Definition* d = ssls.by_id.find(id);
    if (d == nullptr) {
      errors_.add(path + ".tls.client_cert_id", "ssl \"" + id + "\" is not defined in ssls");
    } else if (d->kept >= 0 && config_.ssls[static_cast<size_t>(d->kept)].type != SslType::client) {
      errors_.add(path + ".tls.client_cert_id", "ssl \"" + id + "\" is not of type client");
    }
  };
  for (size_t k = 0; k < config_.upstreams.size(); ++k)
    check_cert_ref(&config_.upstreams[k], item_path("upstreams", upstreams.index[k]));
  for (size_t k = 0; k < config_.services.size(); ++k)
    check_cert_ref(config_.services[k].upstream ? &*config_.services[k].upstream : nullptr,
                   item_path("services", services.index[k]) + ".upstream");
  for (size_t k = 0; k < config_.routes.size(); ++k)
    check_cert_ref(config_.routes[k].upstream ? &*config_.routes[k].upstream : nullptr,
                   item_path("routes", routes.index[k]) + ".upstream");
  for (size_t k = 0; k < config_.credentials.size(); ++k) {
    const Credential& c = config_.credentials[k];
    if (!consumers.by_id.contains(c.username)) {
      errors_.add(item_path("credentials", credentials.index[k]) + ".id",
                  "consumer \"" + c.username + "\" is not defined in consumers");
    }
  }
  if (errors_.total() != before) return false;
  int64_t global_limit = -1;
  for (const GlobalRule& g : config_.global_rules) {
    if (g.max_body_size >= 0) global_limit = g.max_body_size;
  }
  for (Route& r : config_.routes) {
    const PluginConfig* pc = nullptr;
    if (!r.plugin_config_id.empty()) {
      const long kept = plugin_configs.by_id.find(r.plugin_config_id)->kept;
      if (kept >= 0) pc = &config_.plugin_configs[static_cast<size_t>(kept)];
    }
    const Service* service = r.service_id.empty() ? nullptr : kept_service(services.by_id.find(r.service_id));
    r.max_body_size = folded_max_body_size(r, pc, service, global_limit);
  }
  return true;
}

void Assembler::check_limit_groups() {
  // APISIX refuses a limit-count whose `group` another configuration uses differently ("group conf
  // mismatched", on the fields limit_group_view keeps): the routes of a group share one counter, so they must
  // agree on what it counts. APISIX compares with the first configuration its process saw; here, with the
  // first of the document (routes, services, plugin configs, global rules, consumers in that order).
  std::unordered_map<std::string, std::string> first;
  auto visit = [&](const PluginMap& plugins, SectionKind kind, size_t index) {
    for (const PluginSpec& p : plugins) {
      if (p.name != "limit-count" || !p.conf) continue;
      std::string view = limit_group_view(*p.conf);
      if (view.empty()) continue;
      const auto [it, inserted] = first.emplace(p.conf->at("group").get<std::string>(), std::move(view));
      if (!inserted && it->second != limit_group_view(*p.conf)) {
        std::string path = item_path(name_of(kind), index);
        append_key(path, "plugins");
        append_key(path, "limit-count");
        errors_.add(std::move(path), std::string(kGroupConfMismatched));
      }
    }
  };
  for (size_t k = 0; k < config_.routes.size(); ++k)
    visit(config_.routes[k].plugins, SectionKind::routes, section(SectionKind::routes).index[k]);
  for (size_t k = 0; k < config_.services.size(); ++k)
    visit(config_.services[k].plugins, SectionKind::services, section(SectionKind::services).index[k]);
  for (size_t k = 0; k < config_.plugin_configs.size(); ++k) {
    visit(config_.plugin_configs[k].plugins, SectionKind::plugin_configs,
          section(SectionKind::plugin_configs).index[k]);
  }
  for (size_t k = 0; k < config_.global_rules.size(); ++k) {
    visit(config_.global_rules[k].plugins, SectionKind::global_rules,
          section(SectionKind::global_rules).index[k]);
  }
  for (size_t k = 0; k < config_.consumers.size(); ++k)
    visit(config_.consumers[k].plugins, SectionKind::consumers, section(SectionKind::consumers).index[k]);
}

}  // namespace detail

bool check_route_refs(const Route& r, const RouteRefs& refs, std::string_view path, Errors& errors) {
  const size_t before = errors.total();
  auto field = [&](std::string_view name) {
    std::string out(path);
    detail::append_key(out, name);
    return out;
  };
  if (!r.upstream_id.empty() && !refs.upstream_defined) {
    errors.add(field("upstream_id"), "upstream \"" + r.upstream_id + "\" is not defined in upstreams");
  }
  if (!r.plugin_config_id.empty() && !refs.plugin_config_defined) {
    errors.add(field("plugin_config_id"),
               "plugin config \"" + r.plugin_config_id + "\" is not defined in plugin_configs");
  }
  if (!r.service_id.empty()) {
    if (!refs.service_defined) {
      errors.add(field("service_id"), "service \"" + r.service_id + "\" is not defined in services");
    } else if (refs.service != nullptr && !r.upstream && r.upstream_id.empty() && !refs.service->upstream &&
               refs.service->upstream_id.empty()) {
      errors.add(
          field("service_id"),
          "service \"" + r.service_id +
              "\" has no upstream and the route sets none (set upstream or upstream_id on the route or "
              "on the service)");
    }
  }
  return errors.total() == before;
}

namespace {

// traffic-split's configuration in `plugins`, or null (PluginMap is sorted by name).
const nlohmann::json* traffic_split_conf(const PluginMap& plugins) {
  constexpr std::string_view kName = "traffic-split";
  auto it = std::lower_bound(plugins.begin(), plugins.end(), kName,
                             [](const PluginSpec& p, std::string_view n) { return p.name < n; });
  return it != plugins.end() && it->name == kName && it->conf ? it->conf.get() : nullptr;
}

// Calls f(id, rule index, weighted upstream index) for each upstream_id traffic-split names.
template <typename F>
void for_each_split_ref(const nlohmann::json& conf, F&& f) {
  auto rules = conf.find("rules");
  if (rules == conf.end() || !rules->is_array()) return;
  for (size_t i = 0; i < rules->size(); ++i) {
    auto ups = (*rules)[i].find("weighted_upstreams");
    if (ups == (*rules)[i].end() || !ups->is_array()) continue;
    for (size_t j = 0; j < ups->size(); ++j) {
      auto id = (*ups)[j].find("upstream_id");
      if (id == (*ups)[j].end()) continue;
      f(id->is_string() ? id->get<std::string>() : id->dump(), i, j);
    }
  }
}

}  // namespace

std::vector<PluginUpstreamRef> plugin_upstream_refs(const PluginMap& plugins) {
  std::vector<PluginUpstreamRef> out;
  const nlohmann::json* conf = traffic_split_conf(plugins);
  if (conf == nullptr) return out;
  for_each_split_ref(*conf, [&](std::string id, size_t i, size_t j) {
    std::string field = "plugins.traffic-split.rules";
    detail::append_index(field, i);
    field += ".weighted_upstreams";
    detail::append_index(field, j);
    field += ".upstream_id";
    out.push_back({std::move(id), std::move(field)});
  });
  return out;
}

bool plugin_refs_upstream(const PluginMap& plugins, std::string_view id) {
  const nlohmann::json* conf = traffic_split_conf(plugins);
  if (conf == nullptr) return false;
  bool found = false;
  for_each_split_ref(*conf, [&](const std::string& ref, size_t, size_t) { found |= ref == id; });
  return found;
}

bool check_plugin_upstream_refs(const PluginMap& plugins,
                                const std::function<bool(const std::string&)>& defined, std::string_view path,
                                Errors& errors) {
  bool ok = true;
  for (const PluginUpstreamRef& ref : plugin_upstream_refs(plugins)) {
    if (defined(ref.id)) continue;
    errors.add(std::string(path) + "." + ref.field,
               "upstream \"" + ref.id + "\" is not defined in upstreams");
    ok = false;
  }
  return ok;
}

bool check_service_refs(const Service& s, bool upstream_defined, std::string_view path, Errors& errors) {
  if (s.upstream_id.empty() || upstream_defined) return true;
  std::string field(path);
  detail::append_key(field, "upstream_id");
  errors.add(std::move(field), "upstream \"" + s.upstream_id + "\" is not defined in upstreams");
  return false;
}

int64_t folded_max_body_size(const Route& route, const PluginConfig* plugin_config, const Service* service,
                             int64_t global_limit) {
  // Plugin precedence (APISIX): route > plugin config > service; global rules run before the route's plugins,
  // so their client-control applies only where none of those sets one.
  if (route.own_max_body_size >= 0) return route.own_max_body_size;
  if (plugin_config != nullptr && plugin_config->max_body_size >= 0) return plugin_config->max_body_size;
  if (service != nullptr && service->max_body_size >= 0) return service->max_body_size;
  return global_limit;
}

bool check_config(Config& config, Errors& errors) {
  const size_t before = errors.total();
  detail::Assembler assembler(errors);
  auto keep_all = [&assembler](auto& resources, auto key_of) {
    for (size_t i = 0; i < resources.size(); ++i) {
      std::string key = key_of(resources[i]);
      assembler.keep(i, std::move(resources[i]), std::move(key));
    }
  };
  auto id = [](const auto& resource) { return resource.id; };
  keep_all(config.routes, id);
  keep_all(config.services, id);
  keep_all(config.upstreams, id);
  keep_all(config.consumers, [](const Consumer& c) { return c.username; });
  keep_all(config.ssls, id);
  keep_all(config.global_rules, id);
  keep_all(config.plugin_configs, id);
  keep_all(config.credentials, id);
  assembler.link();
  config = assembler.take();
  return errors.total() == before;
}

std::optional<Config> validate_config(const nlohmann::json& document, Errors& errors) {
  const size_t before = errors.total();
  detail::Assembler assembler(errors);
  assembler.check_document(document);
  if (!assembler.link() || errors.total() != before) return std::nullopt;
  return assembler.take();
}

}  // namespace portico::config
