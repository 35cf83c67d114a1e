// The resource schemas (resource_schemas.h). The definitions every resource shares are written once in
// kDefinitions and referenced as {"$ref": "#/definitions/<name>"}, as APISIX's schema_def.lua shares its Lua
// locals (id_schema, desc_def, labels_def...); the references are inlined before compiling, since the
// engine itself takes no $ref.
//
// Patterns end with \z, not $: PCRE's $ also matches before a final newline, and "a\n" is no id.
#include "config/resource_schemas.h"

#include <array>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace portico::config::detail {

namespace {

using json = nlohmann::json;

// - id: APISIX's id_schema (a string of 1..64 of [a-zA-Z0-9_.-], or an integer >= 1) minus "." and "..",
//   path segments of etcd keys and URLs (valid_id_text). Each keyword applies to its own type only.
// - labels: values of 1..256 characters without whitespace (APISIX 3.x: 1..256, ^\S+$).
// - plugins: an object; each member is a plugin's configuration, checked by read_plugins against the
//   plugin's own schema.
constexpr std::string_view kDefinitions = R"({
  "id": {
    "type": ["string", "integer"],
    "minLength": 1, "maxLength": 64, "pattern": "^(?!\\.\\.?\\z)[a-zA-Z0-9_.-]+\\z",
    "minimum": 1
  },
  "username": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^[a-zA-Z0-9_-]+\\z"},
  "name": {"type": "string", "minLength": 1, "maxLength": 256},
  "desc": {"type": "string", "maxLength": 256},
  "labels": {
    "type": "object",
    "patternProperties": {
      ".*": {"type": "string", "minLength": 1, "maxLength": 256, "pattern": "^\\S+\\z"}
    }
  },
  "timestamp": {"type": "integer", "minimum": 0},
  "plugins": {"type": "object"}
})";

// APISIX 3.13+ (usernames may hold '-'). `id` is in APISIX's schema and ignored: consumers are keyed by
// username. `group_id` is declared so that the validator refuses it with a reason (consumer groups are not
// supported) rather than as an unknown field.
constexpr std::string_view kConsumer = R"({
  "type": "object",
  "properties": {
    "username": {"$ref": "#/definitions/username"},
    "id": {"$ref": "#/definitions/id"},
    "group_id": {},
    "plugins": {"$ref": "#/definitions/plugins"},
    "desc": {"$ref": "#/definitions/desc"},
    "labels": {"$ref": "#/definitions/labels"},
    "create_time": {"$ref": "#/definitions/timestamp"},
    "update_time": {"$ref": "#/definitions/timestamp"}
  },
  "required": ["username"],
  "additionalProperties": false
})";

// APISIX 3.x. `id` is the full name "<username>/credentials/<credential id>" (APISIX keeps the two parts in
// its etcd key); one credential holds one authentication plugin.
constexpr std::string_view kCredential = R"({
  "type": "object",
  "properties": {
    "id": {
      "type": "string",
      "pattern": "^[a-zA-Z0-9_-]{1,256}/credentials/(?!\\.\\.?\\z)[a-zA-Z0-9_.-]{1,64}\\z"
    },
    "plugins": {"type": "object", "maxProperties": 1},
    "name": {"$ref": "#/definitions/name"},
    "desc": {"$ref": "#/definitions/desc"},
    "labels": {"$ref": "#/definitions/labels"},
    "create_time": {"$ref": "#/definitions/timestamp"},
    "update_time": {"$ref": "#/definitions/timestamp"}
  },
  "required": ["id"],
  "additionalProperties": false
})";

constexpr std::string_view kGlobalRule = R"({
  "type": "object",
  "properties": {
    "id": {"$ref": "#/definitions/id"},
    "plugins": {"$ref": "#/definitions/plugins"},
    "create_time": {"$ref": "#/definitions/timestamp"},
    "update_time": {"$ref": "#/definitions/timestamp"}
  },
  "required": ["id", "plugins"],
  "additionalProperties": false
})";

constexpr std::string_view kPluginConfig = R"({
  "type": "object",
  "properties": {
    "id": {"$ref": "#/definitions/id"},
    "plugins": {"$ref": "#/definitions/plugins"},
    "name": {"$ref": "#/definitions/name"},
    "desc": {"$ref": "#/definitions/desc"},
    "labels": {"$ref": "#/definitions/labels"},
    "create_time": {"$ref": "#/definitions/timestamp"},
    "update_time": {"$ref": "#/definitions/timestamp"}
  },
  "required": ["id", "plugins"],
  "additionalProperties": false
})";

constexpr std::string_view kRefPrefix = "#/definitions/";

// Replaces every {"$ref": "#/definitions/x"} below `node` by the definition. Definitions hold no
// references, so one level of substitution suffices.
void inline_refs(json& node, const json& definitions) {
  if (node.is_array()) {
    for (json& item : node) inline_refs(item, definitions);
    return;
  }
  if (!node.is_object()) return;
  if (auto ref = node.find("$ref"); ref != node.end()) {
    const std::string target = ref->get<std::string>();
    if (node.size() != 1 || !target.starts_with(kRefPrefix) ||
        !definitions.contains(target.substr(kRefPrefix.size()))) {
      throw std::logic_error("resource schema: bad reference " + target);
    }
    node = definitions.at(target.substr(kRefPrefix.size()));
    return;
  }
  for (auto& [key, value] : node.items()) inline_refs(value, definitions);
}

struct Compiled {
  std::shared_ptr<const Schema> keyed;    // the key is required (a file, an etcd value)
  std::shared_ptr<const Schema> keyless;  // the key may come from the URL
};

Compiled compile(std::string_view text, std::string_view key) {
  static const json definitions = json::parse(kDefinitions);
  json doc = json::parse(text);
  inline_refs(doc, definitions);
  Compiled out;
  out.keyed = Schema::parse(doc.dump());
  json& required = doc["required"];
  for (auto it = required.begin(); it != required.end(); ++it) {
    if (*it == key) {
      required.erase(it);
      break;
    }
  }
  out.keyless = Schema::parse(doc.dump());
  return out;
}

}  // namespace

const Schema& resource_schema(ResourceKind kind, bool key_required) {
  static const std::array<Compiled, 4> schemas = {
      compile(kConsumer, "username"),
      compile(kCredential, "id"),
      compile(kGlobalRule, "id"),
      compile(kPluginConfig, "id"),
  };
  const Compiled& c = schemas[static_cast<size_t>(kind)];
  return key_required ? *c.keyed : *c.keyless;
}

}  // namespace portico::config::detail
