// Whole-document validation: top-level shape, unique ids, references between resources.
#include <limits>

#include "config/assembler.h"
#include "config/resources.h"

namespace portico::config {
namespace detail {
namespace {

constexpr std::string_view kSectionNames[] = {"routes", "services", "upstreams"};

std::string_view name_of(Section s) { return kSectionNames[static_cast<int>(s)]; }

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
      "consumers",   "consumer_groups", "ssls",    "global_rules",  "plugin_configs", "plugin_metadata",
      "stream_routes", "protos",        "secrets", "plugins",       "stream_plugins", "credentials"};
  for (std::string_view k : kKeys) {
    if (key == k) return true;
  }
  return false;
}

}  // namespace

bool section_of(std::string_view name, Section& out) {
  for (int i = 0; i < 3; ++i) {
    if (name == kSectionNames[i]) {
      out = static_cast<Section>(i);
      return true;
    }
  }
  return false;
}

template <typename T>
void Assembler::keep_in(Table<T>& table, std::string_view section, size_t index, std::optional<T> value,
                        std::string id) {
  if (!id.empty()) {
    auto [it, inserted] = table.by_id.emplace(id, table.slots.size());
    if (!inserted) {
      std::string path = item_path(section, index);
      append_key(path, "id");
      errors_.add(std::move(path), "duplicate " + std::string(noun_of(section)) + " id \"" + id +
                                       "\" (first defined at " +
                                       item_path(section, table.slots[it->second].index) + ")");
    }
  }
  table.slots.push_back(Slot<T>{std::move(value), std::move(id), index});
}

void Assembler::keep(size_t index, std::optional<Route> route, std::string id) {
  keep_in(routes_, "routes", index, std::move(route), std::move(id));
}
void Assembler::keep(size_t index, std::optional<Service> service, std::string id) {
  keep_in(services_, "services", index, std::move(service), std::move(id));
}
void Assembler::keep(size_t index, std::optional<Upstream> upstream, std::string id) {
  keep_in(upstreams_, "upstreams", index, std::move(upstream), std::move(id));
}

void Assembler::add(Section section, size_t index, const json& item) {
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
    case Section::routes:
      keep(index, route_at(item, p, errors_, options), std::move(id));
      break;
    case Section::services:
      keep(index, service_at(item, p, errors_, options), std::move(id));
      break;
    case Section::upstreams:
      keep(index, upstream_at(item, p, errors_, false, options), std::move(id));
      break;
  }
}

void Assembler::check_document(const json& document, bool add_items) {
  const Path root("");
  if (!document.is_object()) {
    fail_type(errors_, root, "a mapping with `routes`, `services` and `upstreams` lists", document);
    return;
  }
  for (auto it = document.begin(); it != document.end(); ++it) {
    const std::string& key = it.key();
    const json& value = it.value();
    const Path p = root.key(key);
    Section section;
    if (section_of(key, section)) {
      if (value.is_null()) continue;  // `routes:` with nothing under it: an empty list
      if (!value.is_array()) {
        fail_type(errors_, p, "a list", value);
        continue;
      }
      if (!add_items) continue;
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
  for (auto& slot : routes_.slots) {
    if (!slot.value) continue;
    Route& r = *slot.value;
    if (!r.upstream_id.empty() && !upstreams_.by_id.contains(r.upstream_id)) {
      std::string path = item_path("routes", slot.index);
      append_key(path, "upstream_id");
      errors_.add(std::move(path), "upstream \"" + r.upstream_id + "\" is not defined in upstreams");
    }
    if (r.service_id.empty()) continue;
    std::string path = item_path("routes", slot.index);
    append_key(path, "service_id");
    auto it = services_.by_id.find(r.service_id);
    if (it == services_.by_id.end()) {
      errors_.add(std::move(path), "service \"" + r.service_id + "\" is not defined in services");
      continue;
    }
    const std::optional<Service>& service = services_.slots[it->second].value;
    if (!service) continue;  // invalid service: already reported
    if (!r.upstream && r.upstream_id.empty() && !service->upstream && service->upstream_id.empty()) {
      errors_.add(std::move(path), "service \"" + r.service_id +
                                       "\" has no upstream and the route sets none (set upstream or upstream_id "
                                       "on the route or on the service)");
    }
    if (r.max_body_size < 0) r.max_body_size = service->max_body_size;
  }
  for (auto& slot : services_.slots) {
    if (!slot.value || slot.value->upstream_id.empty()) continue;
    if (!upstreams_.by_id.contains(slot.value->upstream_id)) {
      std::string path = item_path("services", slot.index);
      append_key(path, "upstream_id");
      errors_.add(std::move(path), "upstream \"" + slot.value->upstream_id + "\" is not defined in upstreams");
    }
  }
  return errors_.total() == before;
}

Config Assembler::take() {
  Config config;
  config.routes.reserve(routes_.slots.size());
  for (auto& slot : routes_.slots) {
    if (slot.value) config.routes.push_back(std::move(*slot.value));
  }
  config.services.reserve(services_.slots.size());
  for (auto& slot : services_.slots) {
    if (slot.value) config.services.push_back(std::move(*slot.value));
  }
  config.upstreams.reserve(upstreams_.slots.size());
  for (auto& slot : upstreams_.slots) {
    if (slot.value) config.upstreams.push_back(std::move(*slot.value));
  }
  return config;
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
  assembler.check_document(document, true);
  if (!assembler.link() || errors.total() != before) return std::nullopt;
  return assembler.take();
}

}  // namespace portico::config
