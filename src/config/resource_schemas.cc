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

#include "config/validate.h"

namespace portico::config::detail {

namespace {

using json = nlohmann::json;

// The schemas' literal bounds (JSON Schema text cannot name a C++ constant).
static_assert(kMaxSeconds == 31536000 && kMinCheckInterval == 0.1 && kMaxCount == 65535);

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
  "plugins": {"type": "object"},
  "pem": {"type": "string", "maxLength": 65536},
  "uri": {"type": "string", "minLength": 1, "maxLength": 4096},
  "port": {"type": "integer", "minimum": 1, "maximum": 65535},
  "weight": {"type": "integer", "minimum": 0, "maximum": 2147483647},
  "duration": {"type": "number", "minimum": 0, "maximum": 31536000},
  "timeout": {"type": "number", "exclusiveMinimum": 0, "maximum": 31536000},
  "check_interval": {"type": "number", "minimum": 0.1, "maximum": 31536000},
  "check_type": {"type": "string", "enum": ["http", "https", "tcp"]},
  "http_statuses": {
    "type": "array", "minItems": 1,
    "items": {"type": "integer", "minimum": 200, "maximum": 599}
  }
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

// APISIX's upstream_schema (and health_checker), with this version's bounds: durations at most 365 days
// (kMaxSeconds), check intervals >= 0.1 s, counts <= 65535, weights within an int. `nodes` takes both forms
// in one schema ({"host:port": weight} or a list of nodes): each keyword applies to its own type only.
// Duplicate statuses and headers are the validator's to report, at the repeated item (uniqueItems would
// name the list). The fields this version refuses by name (service discovery, schemes other than http,
// https, grpc and grpcs) are declared so that the validator can say why (validate_upstream.cc); `id` is
// declared for the inline form too, which the validator refuses with its reason.
constexpr std::string_view kUpstream = R"({
  "type": "object",
  "properties": {
    "id": {"$ref": "#/definitions/id"},
    "name": {"$ref": "#/definitions/name"},
    "desc": {"$ref": "#/definitions/desc"},
    "labels": {"$ref": "#/definitions/labels"},
    "create_time": {"$ref": "#/definitions/timestamp"},
    "update_time": {"$ref": "#/definitions/timestamp"},
    "nodes": {
      "type": ["object", "array"],
      "patternProperties": {".*": {"$ref": "#/definitions/weight"}},
      "items": {
        "type": "object",
        "properties": {
          "host": {"type": "string"},
          "port": {"$ref": "#/definitions/port"},
          "weight": {"$ref": "#/definitions/weight"},
          "priority": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647},
          "metadata": {"type": "object"}
        },
        "required": ["host", "weight"],
        "additionalProperties": false
      }
    },
    "type": {"type": "string", "enum": ["roundrobin", "chash", "ewma", "least_conn"]},
    "hash_on": {"type": "string", "enum": ["vars", "header", "cookie", "consumer", "vars_combinations"]},
    "key": {"type": "string", "minLength": 1},
    "checks": {
      "type": "object",
      "properties": {
        "active": {
          "type": "object",
          "properties": {
            "type": {"$ref": "#/definitions/check_type"},
            "timeout": {"$ref": "#/definitions/timeout"},
            "concurrency": {"type": "integer", "minimum": 1, "maximum": 65535},
            "http_path": {"type": "string"},
            "host": {"type": "string"},
            "port": {"$ref": "#/definitions/port"},
            "https_verify_certificate": {"type": "boolean"},
            "req_headers": {
              "type": "array", "minItems": 1, "items": {"type": "string"}
            },
            "healthy": {
              "type": "object",
              "properties": {
                "interval": {"$ref": "#/definitions/check_interval"},
                "successes": {"type": "integer", "minimum": 1, "maximum": 254},
                "http_statuses": {"$ref": "#/definitions/http_statuses"}
              },
              "additionalProperties": false
            },
            "unhealthy": {
              "type": "object",
              "properties": {
                "interval": {"$ref": "#/definitions/check_interval"},
                "http_statuses": {"$ref": "#/definitions/http_statuses"},
                "http_failures": {"type": "integer", "minimum": 1, "maximum": 254},
                "tcp_failures": {"type": "integer", "minimum": 1, "maximum": 254},
                "timeouts": {"type": "integer", "minimum": 1, "maximum": 254}
              },
              "additionalProperties": false
            }
          },
          "additionalProperties": false
        },
        "passive": {
          "type": "object",
          "properties": {
            "type": {"$ref": "#/definitions/check_type"},
            "healthy": {
              "type": "object",
              "properties": {
                "http_statuses": {"$ref": "#/definitions/http_statuses"},
                "successes": {"type": "integer", "minimum": 0, "maximum": 254}
              },
              "additionalProperties": false
            },
            "unhealthy": {
              "type": "object",
              "properties": {
                "http_statuses": {"$ref": "#/definitions/http_statuses"},
                "http_failures": {"type": "integer", "minimum": 0, "maximum": 254},
                "tcp_failures": {"type": "integer", "minimum": 0, "maximum": 254},
                "timeouts": {"type": "integer", "minimum": 0, "maximum": 254}
              },
              "additionalProperties": false
            }
          },
          "additionalProperties": false
        }
      },
      "anyOf": [{"required": ["active"]}, {"required": ["passive"]}],
      "additionalProperties": false
    },
    "retries": {"type": "integer", "minimum": 0, "maximum": 65535},
    "retry_timeout": {"$ref": "#/definitions/duration"},
    "timeout": {
      "type": "object",
      "properties": {
        "connect": {"$ref": "#/definitions/timeout"},
        "send": {"$ref": "#/definitions/timeout"},
        "read": {"$ref": "#/definitions/timeout"}
      },
      "additionalProperties": false
    },
    "scheme": {
      "type": "string", "enum": ["grpc", "grpcs", "http", "https", "tcp", "tls", "udp", "kafka"]
    },
    "pass_host": {"type": "string", "enum": ["pass", "node", "rewrite"]},
    "upstream_host": {"type": "string", "minLength": 1},
    "keepalive_pool": {
      "type": "object",
      "properties": {
        "size": {"type": "integer", "minimum": 1, "maximum": 65535},
        "idle_timeout": {"$ref": "#/definitions/duration"},
        "requests": {"type": "integer", "minimum": 1, "maximum": 2147483647}
      },
      "additionalProperties": false
    },
    "tls": {
      "type": "object",
      "properties": {
        "client_cert": {"$ref": "#/definitions/pem"},
        "client_key": {"$ref": "#/definitions/pem"},
        "client_cert_id": {"$ref": "#/definitions/id"},
        "verify": {"type": "boolean"}
      },
      "additionalProperties": false
    },
    "service_name": {},
    "discovery_type": {},
    "discovery_args": {}
  },
  "required": ["id"],
  "additionalProperties": false
})";

// APISIX's service. `upstream` is checked by the upstream's own schema (validate_upstream.cc), at its path;
// `script` and `plugin_config_id` are declared so that the validator refuses them with a reason. Duplicate
// hosts are the validator's (compared lower-cased, reported at the repeated item).
constexpr std::string_view kService = R"({
  "type": "object",
  "properties": {
    "id": {"$ref": "#/definitions/id"},
    "name": {"$ref": "#/definitions/name"},
    "desc": {"$ref": "#/definitions/desc"},
    "labels": {"$ref": "#/definitions/labels"},
    "create_time": {"$ref": "#/definitions/timestamp"},
    "update_time": {"$ref": "#/definitions/timestamp"},
    "plugins": {"$ref": "#/definitions/plugins"},
    "upstream": {},
    "upstream_id": {"$ref": "#/definitions/id"},
    "enable_websocket": {"type": "boolean"},
    "hosts": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    "script": {},
    "plugin_config_id": {}
  },
  "required": ["id"],
  "additionalProperties": false
})";

// APISIX's ssl. PEM texts are at most 64 KiB; what they hold is the validator's (OpenSSL parses them). The
// SNIs are strings here; their patterns, duplicates (compared lower-cased) and "sni or snis" are the
// validator's. ssl_protocols keeps APISIX's enum so that "TLSv1.1" is refused by the validator with a reason
// (Portico never speaks it), and one item at least (an empty list would serve no handshake). The
// skip_mtls_uri_regex bounds are Portico's (each is tried per request without a verified certificate); the
// validator compiles each pattern.
constexpr std::string_view kSsl = R"({
  "type": "object",
  "properties": {
    "id": {"$ref": "#/definitions/id"},
    "desc": {"$ref": "#/definitions/desc"},
    "labels": {"$ref": "#/definitions/labels"},
    "create_time": {"$ref": "#/definitions/timestamp"},
    "update_time": {"$ref": "#/definitions/timestamp"},
    "type": {"type": "string", "enum": ["server", "client"]},
    "cert": {"$ref": "#/definitions/pem"},
    "key": {"$ref": "#/definitions/pem"},
    "certs": {"type": "array", "items": {"$ref": "#/definitions/pem"}},
    "keys": {"type": "array", "items": {"$ref": "#/definitions/pem"}},
    "sni": {"type": "string"},
    "snis": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    "status": {"type": "integer", "enum": [1, 0]},
    "client": {
      "type": "object",
      "properties": {
        "ca": {"$ref": "#/definitions/pem"},
        "depth": {"type": "integer", "minimum": 0, "default": 1},
        "skip_mtls_uri_regex": {
          "type": "array",
          "minItems": 1,
          "maxItems": 32,
          "uniqueItems": true,
          "items": {"type": "string", "minLength": 1, "maxLength": 1024}
        }
      },
      "required": ["ca"]
    },
    "ssl_protocols": {
      "type": "array",
      "minItems": 1,
      "maxItems": 3,
      "uniqueItems": true,
      "items": {"type": "string", "enum": ["TLSv1.1", "TLSv1.2", "TLSv1.3"]}
    }
  },
  "required": ["id", "cert", "key"],
  "additionalProperties": false
})";

// APISIX's route. `upstream` is checked by the upstream's own schema (validate_upstream.cc), `vars` items by
// the validator (lua-resty-expr expressions: operators, operands, regexes), as APISIX does. Duplicates in the
// lists (uris, hosts compared lower-cased, remote_addrs, methods), the "x or xs" pairs and the URI, host and
// CIDR syntax are the validator's; the refused fields are declared so that it can name them.
constexpr std::string_view kRoute = R"({
  "type": "object",
  "properties": {
    "id": {"$ref": "#/definitions/id"},
    "name": {"$ref": "#/definitions/name"},
    "desc": {"$ref": "#/definitions/desc"},
    "labels": {"$ref": "#/definitions/labels"},
    "create_time": {"$ref": "#/definitions/timestamp"},
    "update_time": {"$ref": "#/definitions/timestamp"},
    "uri": {"$ref": "#/definitions/uri"},
    "uris": {"type": "array", "minItems": 1, "items": {"$ref": "#/definitions/uri"}},
    "host": {"type": "string"},
    "hosts": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    "remote_addr": {"type": "string"},
    "remote_addrs": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    "methods": {
      "type": "array",
      "items": {
        "type": "string",
        "enum": ["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE", "PURGE"]
      }
    },
    "vars": {"type": "array"},
    "priority": {"type": "integer", "minimum": -2147483648, "maximum": 2147483647},
    "status": {"type": "integer", "enum": [1, 0]},
    "plugins": {"$ref": "#/definitions/plugins"},
    "upstream": {},
    "upstream_id": {"$ref": "#/definitions/id"},
    "service_id": {"$ref": "#/definitions/id"},
    "plugin_config_id": {"$ref": "#/definitions/id"},
    "timeout": {
      "type": "object",
      "properties": {
        "connect": {"$ref": "#/definitions/timeout"},
        "send": {"$ref": "#/definitions/timeout"},
        "read": {"$ref": "#/definitions/timeout"}
      },
      "additionalProperties": false
    },
    "enable_websocket": {"type": "boolean"},
    "filter_func": {},
    "script": {},
    "script_id": {},
    "service_protocol": {}
  },
  "required": ["id"],
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
  // Indexed by ResourceKind, in its order.
  // clang-format off
  static const std::array<Compiled, 8> schemas = {
      compile(kConsumer, "username"),
      compile(kCredential, "id"),
      compile(kGlobalRule, "id"),
      compile(kPluginConfig, "id"),
      compile(kUpstream, "id"),
      compile(kService, "id"),
      compile(kSsl, "id"),
      compile(kRoute, "id"),
  };
  // clang-format on
  const Compiled& c = schemas[static_cast<size_t>(kind)];
  return key_required ? *c.keyed : *c.keyless;
}

}  // namespace portico::config::detail
