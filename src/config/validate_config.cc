// Whole-document validation: top-level shape, unique ids, references between resources.
#include <limits>

#include "config/assembler.h"
#include "config/resources.h"

namespace portico::config {
namespace detail {
namespace {

constexpr std::string_view kSectionNames[] = {"routes", "services", "upstreams"};

std::string_view name_of(SectionKind s) {
  return kSectionNames[static_cast<int>(s)];
}

// Singular resource names for messages ("duplicate route id").
std::string_view noun_of(std::string_view section) {
  if (section == "routes") return "route";
  if (section == "services") return "service";
  return "upstream";
}

std::string item_path(std::string_view section, size_t index) {
  std::string out(section);
  append_index(out, index);
  return out;
}

// Top-level keys of an APISIX standalone file that this version does not implement.
bool is_unsupported_section(std::string_view key) {
  static constexpr std::string_view kKeys[] = {
      "consumers",     "consumer_groups", "ssls",    "global_rules", "plugin_configs", "plugin_metadata",
      "stream_routes", "protos",          "secrets", "plugins",      "stream_plugins", "credentials"};
  for (std::string_view k : kKeys) {
    if (key == k) return true;
  }
  return false;
}

}  // namespace

bool section_of(std::string_view name, SectionKind& out) {
  for (int i = 0; i < 3; ++i) {
    if (name == kSectionNames[i]) {
      out = static_cast<SectionKind>(i);
      return true;
    }
  }
  return false;
}

template <typename T>
void Assembler::keep_in(std::vector<T>& kept, Section& section, std::string_view name, size_t index,
                        std::optional<T> value, std::string id) {
  Definition definition{index, value ? static_cast<long>(kept.size()) : -1};
  if (value) {
    kept.push_back(std::move(*value));
    section.index.push_back(index);
  }
  if (id.empty()) return;
  auto [first, inserted] = section.by_id.insert(std::move(id), definition);
  if (!inserted) {  // `id` was not moved from
    std::string path = item_path(name, index);
    append_key(path, "id");
    errors_.add(std::move(path), "duplicate " + std::string(noun_of(name)) + " id \"" + id +
                                     "\" (first defined at " + item_path(name, first->index) + ")");
  }
}

void Assembler::keep(size_t index, std::optional<Route> route, std::string id) {
  keep_in(config_.routes, routes_, "routes", index, std::move(route), std::move(id));
}
void Assembler::keep(size_t index, std::optional<Service> service, std::string id) {
  keep_in(config_.services, services_, "services", index, std::move(service), std::move(id));
}
void Assembler::keep(size_t index, std::optional<Upstream> upstream, std::string id) {
  keep_in(config_.upstreams, upstreams_, "upstreams", index, std::move(upstream), std::move(id));
}

void Assembler::add(SectionKind section, size_t index, const json& item) {
  const Path root("");
  const Path section_path = root.key(name_of(section));
  const Path p = section_path.index(index);
  // The id is taken even from an invalid resource, so that references to it are not reported as dangling too.
  std::string id;
  if (item.is_object()) {
    if (auto it = item.find("id"); it != item.end()) id = peek_id(*it);
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
  }
}

void Assembler::check_document(const json& document) {
  const Path root("");
  if (!document.is_object()) {
    fail_type(errors_, root, "a mapping with `routes`, `services` and `upstreams` lists", document);
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
      fail_unknown(errors_, root, key, {"routes", "services", "upstreams"});
    }
  }
}

bool Assembler::link() {
  const size_t before = errors_.total();
  auto field_path = [](std::string_view section, size_t index, std::string_view field) {
    std::string path = item_path(section, index);
    append_key(path, field);
    return path;
  };
  for (size_t k = 0; k < config_.routes.size(); ++k) {
    const Route& r = config_.routes[k];
    const size_t index = routes_.index[k];
    if (!r.upstream_id.empty() && !upstreams_.by_id.contains(r.upstream_id)) {
      errors_.add(field_path("routes", index, "upstream_id"),
                  "upstream \"" + r.upstream_id + "\" is not defined in upstreams");
    }
    if (r.service_id.empty()) continue;
    const Definition* definition = services_.by_id.find(r.service_id);
    if (definition == nullptr) {
      errors_.add(field_path("routes", index, "service_id"),
                  "service \"" + r.service_id + "\" is not defined in services");
      continue;
    }
    if (definition->kept < 0) continue;  // invalid service: already reported
    const Service& service = config_.services[static_cast<size_t>(definition->kept)];
    if (!r.upstream && r.upstream_id.empty() && !service.upstream && service.upstream_id.empty()) {
      errors_.add(
          field_path("routes", index, "service_id"),
          "service \"" + r.service_id +
              "\" has no upstream and the route sets none (set upstream or upstream_id on the route or "
              "on the service)");
    }
  }
  for (size_t k = 0; k < config_.services.size(); ++k) {
    const Service& s = config_.services[k];
    if (!s.upstream_id.empty() && !upstreams_.by_id.contains(s.upstream_id)) {
      errors_.add(field_path("services", services_.index[k], "upstream_id"),
                  "upstream \"" + s.upstream_id + "\" is not defined in upstreams");
    }
  }
  if (errors_.total() != before) return false;
  // Plugin precedence is route > service: a route without its own body limit takes its service's.
  for (Route& r : config_.routes) {
    if (r.service_id.empty() || r.max_body_size >= 0) continue;
    const long kept = services_.by_id.find(r.service_id)->kept;
    if (kept >= 0) r.max_body_size = config_.services[static_cast<size_t>(kept)].max_body_size;
  }
  return true;
}

}  // namespace detail

bool check_config(Config& config, Errors& errors) {
  const size_t before = errors.total();
  detail::Assembler assembler(errors);
  for (size_t i = 0; i < config.routes.size(); ++i) {
    std::string id = config.routes[i].id;
    assembler.keep(i, std::move(config.routes[i]), std::move(id));
  }
  for (size_t i = 0; i < config.services.size(); ++i) {
    std::string id = config.services[i].id;
    assembler.keep(i, std::move(config.services[i]), std::move(id));
  }
  for (size_t i = 0; i < config.upstreams.size(); ++i) {
    std::string id = config.upstreams[i].id;
    assembler.keep(i, std::move(config.upstreams[i]), std::move(id));
  }
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
