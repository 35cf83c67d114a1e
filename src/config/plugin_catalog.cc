// The plugin catalog (plugin_catalog.h) and the one reader of `plugins` mappings (resources.h read_plugins).
#include "config/plugin_catalog.h"

#include <algorithm>
#include <limits>
#include <memory>
#include <mutex>
#include <stdexcept>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/plugin_defs.h"
#include "config/resources.h"
#include "config/schema.h"
#include "config/secrets.h"

namespace portico::config {

namespace {

constexpr int64_t kNoBodyLimit = std::numeric_limits<int64_t>::max();

// APISIX injects `_meta` into every plugin's schema (apisix/schema_def.lua plugin_injected_schema). Portico
// runs `disable` and `priority`; the other members (filter, error_response, pre_function) are refused rather
// than ignored, since ignoring them would change what a request gets.
constexpr std::string_view kMetaSchema = R"({
  "type": "object",
  "properties": {
    "disable": {"type": "boolean"},
    "priority": {"type": "integer", "minimum": -100000, "maximum": 100000}
  },
  "additionalProperties": false
})";

struct Compiled {
  const PluginDef* def;
  std::shared_ptr<const Schema> schema;
  std::shared_ptr<const Schema> consumer_schema;  // null: same as schema
};

// Objects are closed: a property the schema does not declare is an error unless the schema says otherwise.
// APISIX ignores most unknown properties; Portico refuses them, because an option it does not implement
// (anonymous_consumer, say) silently ignored would change what a request gets (docs/admin-api.md).
std::shared_ptr<const Schema> compile(std::string_view text) {
  nlohmann::json doc = nlohmann::json::parse(text);
  if (doc.is_object() && doc.value("type", "") == "object" && !doc.contains("additionalProperties")) {
    doc["additionalProperties"] = false;
    if (!doc.contains("properties")) doc["properties"] = nlohmann::json::object();
  }
  return Schema::parse(doc.dump());
}

struct Catalog {
  std::vector<PluginDef> defs;
  std::vector<Compiled> compiled;  // parallel to defs
  std::shared_ptr<const Schema> meta;

  Catalog() {
    for (auto group : {detail::auth_plugin_defs(), detail::traffic_plugin_defs(),
                       detail::observe_plugin_defs(), detail::limit_plugin_defs()})
      defs.insert(defs.end(), group.begin(), group.end());
    std::sort(defs.begin(), defs.end(),
              [](const PluginDef& a, const PluginDef& b) { return a.name < b.name; });
    for (size_t i = 1; i < defs.size(); ++i) {
      if (defs[i].name == defs[i - 1].name)
        throw std::logic_error("plugin declared twice: " + std::string(defs[i].name));
    }
    compiled.reserve(defs.size());
    for (const PluginDef& d : defs) {
      Compiled c{&d, compile(d.schema), nullptr};
      if (!d.consumer_schema.empty()) c.consumer_schema = compile(d.consumer_schema);
      compiled.push_back(std::move(c));
    }
    meta = Schema::parse(kMetaSchema);
  }

  const Compiled* find(std::string_view name) const {
    auto it = std::lower_bound(defs.begin(), defs.end(), name,
                               [](const PluginDef& d, std::string_view n) { return d.name < n; });
    if (it == defs.end() || it->name != name) return nullptr;
    return &compiled[static_cast<size_t>(it - defs.begin())];
  }
};

const Catalog& catalog() {
  static const Catalog instance;
  return instance;
}

std::string supported_list() {
  std::string out;
  for (const PluginDef& d : catalog().defs) {
    if (!out.empty()) out += ", ";
    out += d.name;
  }
  return out;
}

}  // namespace

std::span<const PluginDef> plugin_catalog() {
  return catalog().defs;
}

const PluginDef* find_plugin(std::string_view name) {
  const Compiled* c = catalog().find(name);
  return c ? c->def : nullptr;
}

const Schema& plugin_schema(const PluginDef& plugin, bool consumer_side) {
  const Compiled* c = catalog().find(plugin.name);
  if (c == nullptr) throw std::logic_error("plugin not in the catalog: " + std::string(plugin.name));
  return consumer_side && c->consumer_schema ? *c->consumer_schema : *c->schema;
}

nlohmann::json plugin_schema_document(std::string_view name, bool consumer_side) {
  const Compiled* c = catalog().find(name);
  if (c == nullptr) return nullptr;
  nlohmann::json doc = (consumer_side && c->consumer_schema ? c->consumer_schema : c->schema)->document();
  if (!consumer_side && doc.is_object() && doc.contains("properties")) {
    doc["properties"]["_meta"] = nlohmann::json::parse(kMetaSchema);
  }
  // APISIX declares encrypt_fields in the consumer schema itself, and serves it there.
  if (consumer_side && doc.is_object() && !c->def->encrypt_fields.empty()) {
    nlohmann::json fields = nlohmann::json::array();
    for (std::string_view f : c->def->encrypt_fields) fields.push_back(std::string(f));
    doc["encrypt_fields"] = std::move(fields);
  }
  return doc;
}

namespace detail {

namespace {

// `_meta` of one plugin: disable and priority.
void read_meta(const json& v, const Path& p, Errors& e, PluginSpec& spec) {
  json meta = v;
  if (!catalog().meta->validate(meta, p, e)) return;
  if (meta.contains("disable")) spec.disabled = meta["disable"].get<bool>();
  if (meta.contains("priority")) spec.priority = meta["priority"].get<int>();
}

// The fields holding secrets (has_secrets) arrive encrypted from etcd (the control plane encrypts them on
// write); a file may hold them in clear. Either way the model holds the clear value, which never leaves the
// process that uses it (verifies a credential, authenticates to Redis).
void decrypt_secrets(const PluginDef& def, json& conf, const Path& p, Errors& e) {
  for (std::string_view field : def.encrypt_fields) {
    auto it = conf.find(std::string(field));
    if (it == conf.end() || !it->is_string()) continue;
    const std::string& stored = it->get_ref<const std::string&>();
    if (!is_encrypted_secret(stored)) continue;
    std::string plain, error;
    if (!decrypt_secret(stored, plain, &error)) {
      fail(e, p.key(field), "cannot be decrypted: " + error);
      continue;
    }
    *it = std::move(plain);
  }
}

}  // namespace

void read_plugins(const json& v, const Path& p, Errors& e, PluginSettings& out, PluginScope scope) {
  if (!v.is_object()) {
    fail_type(e, p, "a mapping of plugin names to their configuration", v);
    return;
  }
  out.plugins.clear();
  out.plugins.reserve(v.size());
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& name = it.key();
    const Path pp = p.key(name);
    const Compiled* c = catalog().find(name);
    if (c == nullptr) {
      fail(e, pp,
           "plugin '" + name + "' is not supported by this version (supported: " + supported_list() + ")");
      continue;
    }
    const PluginDef& def = *c->def;
    const json& given = it.value();
    if (!given.is_object()) {
      fail_type(e, pp, "a mapping", given);
      continue;
    }
    if (scope == PluginScope::credential && def.type != PluginType::auth) {
      fail(e, pp, "only authentication plugins can be configured in a credential");
      continue;
    }
    const bool consumer_side = scope != PluginScope::route && def.type == PluginType::auth;
    PluginSpec spec;
    spec.name = name;
    spec.priority = def.priority;
    json conf = given;
    if (auto meta = conf.find("_meta"); meta != conf.end()) {
      read_meta(*meta, pp.key("_meta"), e, spec);
      conf.erase(meta);
    }
    const size_t before = e.total();
    if (has_secrets(def, scope != PluginScope::route)) decrypt_secrets(def, conf, pp, e);
    if (e.total() != before) continue;
    if (!plugin_schema(def, consumer_side).validate(conf, pp, e)) continue;
    if (def.check != nullptr) {
      std::string field;
      std::string reason = def.check(conf, consumer_side, field);
      if (!reason.empty()) {
        if (field.empty()) {
          fail(e, pp, std::move(reason));
        } else {
          e.add(pp.str() + "." + field, std::move(reason));
        }
        continue;
      }
    }
    if (def.builtin) {  // client-control: the body limit
      if (auto size = conf.find("max_body_size"); size != conf.end() && !spec.disabled) {
        int64_t bytes = size->get<int64_t>();
        // APISIX: with max_body_size 0 "the size of the client's request body will not be checked".
        out.max_body_size = bytes == 0 ? kNoBodyLimit : bytes;
      }
      continue;
    }
    spec.conf = std::make_shared<const json>(std::move(conf));
    out.plugins.push_back(std::move(spec));
  }
  std::sort(out.plugins.begin(), out.plugins.end(),
            [](const PluginSpec& a, const PluginSpec& b) { return a.name < b.name; });
}

}  // namespace detail

}  // namespace portico::config
