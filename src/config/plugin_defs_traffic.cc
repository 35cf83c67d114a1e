// The traffic plugins' schemas (APISIX 3.x): request and response rewriting, redirects, CORS, IP rules,
// request ids, fault injection, mocking, and client-control (the body limit, applied by the proxy itself).
// What a schema cannot say (templates, regexes, reserved headers) is checked in plugin_checks_traffic.cc
// (proxy-rewrite, response-rewrite, redirect, request-id) and plugin_checks_traffic2.cc (cors,
// ip-restriction, fault-injection, mocking). Where Portico is stricter than APISIX (nested objects closed,
// statuses bounded to three digits), docs/plugins/traffic2.md says why.
#include <string_view>
#include <vector>

#include "config/plugin_defs.h"

namespace portico::config::detail {

namespace {

// client-control: max_body_size, bytes; 0 = no limit (APISIX). Folded into Route::max_body_size.
constexpr std::string_view kClientControlSchema = R"({
  "type": "object",
  "properties": {
    "max_body_size": {"type": "integer", "minimum": 0}
  }
})";

// proxy-rewrite: `headers` is either {add, set, remove} or a flat mapping (the older form, meaning `set`).
constexpr std::string_view kProxyRewriteSchema = R"({
  "type": "object",
  "properties": {
    "uri": {"type": "string", "minLength": 1, "maxLength": 4096, "pattern": "^\\/.*"},
    "method": {
      "type": "string",
      "enum": ["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE", "PROPFIND",
               "LOCK", "UNLOCK", "PATCH", "TRACE"]
    },
    "regex_uri": {"type": "array", "minItems": 2, "items": {"type": "string"}},
    "host": {"type": "string", "pattern": "^[0-9a-zA-Z-.]+(:\\d{1,5})?$"},
    "headers": {
      "oneOf": [
        {
          "type": "object",
          "minProperties": 1,
          "additionalProperties": false,
          "properties": {
            "add": {
              "type": "object",
              "minProperties": 1,
              "patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}}
            },
            "set": {
              "type": "object",
              "minProperties": 1,
              "patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}}
            },
            "remove": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[^:]+$"}}
          }
        },
        {
          "type": "object",
          "minProperties": 1,
          "patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}}
        }
      ]
    },
    "use_real_request_uri_unsafe": {"type": "boolean", "default": false}
  },
  "minProperties": 1
})";

// response-rewrite: `headers.add` items are "Name: value" strings; body and filters exclude each other.
constexpr std::string_view kResponseRewriteSchema = R"({
  "type": "object",
  "properties": {
    "headers": {
      "anyOf": [
        {
          "type": "object",
          "minProperties": 1,
          "patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}}
        },
        {
          "properties": {
            "add": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[^:]+:[^:]+[^/]$"}},
            "set": {
              "type": "object",
              "minProperties": 1,
              "patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}}
            },
            "remove": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[^:]+$"}}
          }
        }
      ]
    },
    "body": {"type": "string"},
    "body_base64": {"type": "boolean", "default": false},
    "status_code": {"type": "integer", "minimum": 200, "maximum": 598},
    "vars": {"type": "array"},
    "filters": {
      "type": "array",
      "minItems": 1,
      "items": {
        "type": "object",
        "required": ["regex", "replace"],
        "properties": {
          "regex": {"type": "string", "minLength": 1},
          "scope": {"type": "string", "enum": ["once", "global"], "default": "once"},
          "replace": {"type": "string"},
          "options": {"type": "string", "default": "jo"}
        }
      }
    }
  },
  "dependencies": {
    "body": {"not": {"required": ["filters"]}},
    "filters": {"not": {"required": ["body"]}}
  }
})";

// redirect: exactly one of uri, regex_uri, http_to_https. The `uri` pattern is APISIX's template grammar
// (it refuses little: a string of backslashes). ret_code has a maximum here (a status has three digits).
constexpr std::string_view kRedirectSchema = R"json({
  "type": "object",
  "properties": {
    "ret_code": {"type": "integer", "minimum": 200, "maximum": 599, "default": 302},
    "uri": {
      "type": "string",
      "minLength": 2,
      "pattern": "(\\\\\\$[0-9a-zA-Z_]+)|\\$\\{([0-9a-zA-Z_]+)\\}|\\$([0-9a-zA-Z_]+)|(\\$|[^$\\\\]+)"
    },
    "regex_uri": {"type": "array", "minItems": 2, "maxItems": 2, "items": {"type": "string"}},
    "http_to_https": {"type": "boolean"},
    "encode_uri": {"type": "boolean", "default": false},
    "append_query_string": {"type": "boolean", "default": false}
  },
  "oneOf": [{"required": ["uri"]}, {"required": ["regex_uri"]}, {"required": ["http_to_https"]}]
})json";

// request-id: the default char_set is APISIX's, its "GHIGK" included.
constexpr std::string_view kRequestIdSchema = R"({
  "type": "object",
  "properties": {
    "header_name": {"type": "string", "default": "X-Request-Id"},
    "include_in_response": {"type": "boolean", "default": true},
    "algorithm": {"type": "string", "enum": ["uuid", "nanoid", "range_id", "ksuid"], "default": "uuid"},
    "range_id": {
      "type": "object",
      "properties": {
        "length": {"type": "integer", "minimum": 6, "default": 16},
        "char_set": {
          "type": "string",
          "minLength": 6,
          "default": "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789"
        }
      },
      "default": {
        "length": 16,
        "char_set": "abcdefghijklmnopqrstuvwxyzABCDEFGHIGKLMNOPQRSTUVWXYZ0123456789"
      }
    }
  }
})";

// ---- cors ------------------------------------------------------------------------------------------------

// allow_origins / timing_allow_origins: "*", "**", "null" or comma-separated scheme://host[:port] (APISIX's
// origins pattern). max_age is bounded so that it fits the header as an integer.
constexpr std::string_view kCorsSchema = R"({
  "type": "object",
  "properties": {
    "allow_origins": {"type": "string", "default": "*",
                      "pattern": "^(\\*|\\*\\*|null|\\w+://[^,]+(,\\w+://[^,]+)*)$"},
    "allow_methods": {"type": "string", "default": "*"},
    "allow_headers": {"type": "string", "default": "*"},
    "expose_headers": {"type": "string"},
    "max_age": {"type": "integer", "default": 5, "minimum": -2147483648, "maximum": 2147483647},
    "allow_credential": {"type": "boolean", "default": false},
    "allow_origins_by_regex": {"type": "array", "minItems": 1, "uniqueItems": true,
                               "items": {"type": "string", "minLength": 1, "maxLength": 4096}},
    "allow_origins_by_metadata": {"type": "array", "minItems": 1, "uniqueItems": true,
                                  "items": {"type": "string", "minLength": 1, "maxLength": 4096}},
    "timing_allow_origins": {"type": "string",
                             "pattern": "^(\\*|\\*\\*|null|\\w+://[^,]+(,\\w+://[^,]+)*)$"},
    "timing_allow_origins_by_regex": {"type": "array", "minItems": 1, "uniqueItems": true,
                                      "items": {"type": "string", "minLength": 1, "maxLength": 4096}}
  }
})";

// ---- ip-restriction --------------------------------------------------------------------------------------

// APISIX's items are anyOf four IPv4/IPv6 patterns, then check_schema parses each entry; here the check does
// both, so a bad entry gets APISIX's check message ("invalid ip address: ...") at its index.
constexpr std::string_view kIpRestrictionSchema = R"({
  "type": "object",
  "properties": {
    "message": {"type": "string", "minLength": 1, "maxLength": 1024,
                "default": "Your IP address is not allowed"},
    "response_code": {"type": "integer", "minimum": 403, "maximum": 404, "default": 403},
    "whitelist": {"type": "array", "minItems": 1, "items": {"type": "string"}},
    "blacklist": {"type": "array", "minItems": 1, "items": {"type": "string"}}
  },
  "oneOf": [{"required": ["whitelist"]}, {"required": ["blacklist"]}]
})";

// ---- fault-injection -------------------------------------------------------------------------------------

// http_status is bounded to what a status line can carry; durations to config::kMaxSeconds (one year).
constexpr std::string_view kFaultInjectionSchema = R"({
  "type": "object",
  "properties": {
    "abort": {
      "type": "object",
      "properties": {
        "http_status": {"type": "integer", "minimum": 200, "maximum": 599},
        "body": {"type": "string", "minLength": 0},
        "headers": {
          "type": "object", "minProperties": 1,
          "patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}},
          "additionalProperties": false
        },
        "percentage": {"type": "integer", "minimum": 0, "maximum": 100},
        "vars": {"type": "array", "maxItems": 20, "items": {"type": "array"}}
      },
      "required": ["http_status"],
      "additionalProperties": false
    },
    "delay": {
      "type": "object",
      "properties": {
        "duration": {"type": "number", "minimum": 0, "maximum": 31536000},
        "percentage": {"type": "integer", "minimum": 0, "maximum": 100},
        "vars": {"type": "array", "maxItems": 20, "items": {"type": "array"}}
      },
      "required": ["duration"],
      "additionalProperties": false
    }
  },
  "minProperties": 1
})";

// ---- mocking ---------------------------------------------------------------------------------------------

// response_status is bounded to what a status line can carry; delay to config::kMaxSeconds.
constexpr std::string_view kMockingSchema = R"({
  "type": "object",
  "properties": {
    "delay": {"type": "integer", "default": 0, "maximum": 31536000},
    "response_status": {"type": "integer", "default": 200, "minimum": 200, "maximum": 599},
    "content_type": {"type": "string", "default": "application/json;charset=utf8"},
    "response_example": {"type": "string"},
    "response_schema": {"type": "object"},
    "with_mock_header": {"type": "boolean", "default": true},
    "response_headers": {
      "type": "object", "minProperties": 1,
      "patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}},
      "additionalProperties": false
    }
  },
  "anyOf": [{"required": ["response_example"]}, {"required": ["response_schema"]}]
})";

// ---- traffic-split ---------------------------------------------------------------------------------------

// As APISIX 3.x: rules[].match[].vars (route-style expressions, checked by check_traffic_split) and
// rules[].weighted_upstreams[] (1 to 20; `upstream_id`, an inline `upstream` validated as a route's inline
// upstream by the check, `weight` >= 0, default 1; neither upstream: the route's own). The nested objects are
// closed, as elsewhere in Portico.
constexpr std::string_view kTrafficSplitSchema = R"({
  "type": "object",
  "properties": {
    "rules": {
      "type": "array",
      "items": {
        "type": "object",
        "properties": {
          "match": {
            "type": "array",
            "items": {
              "type": "object",
              "properties": {"vars": {"type": "array"}},
              "additionalProperties": false
            }
          },
          "weighted_upstreams": {
            "type": "array",
            "items": {
              "type": "object",
              "properties": {
                "upstream_id": {
                  "type": ["string", "integer"],
                  "minLength": 1, "maxLength": 64, "pattern": "^(?!\\.\\.?\\z)[a-zA-Z0-9_.-]+\\z",
                  "minimum": 1
                },
                "upstream": {"type": "object"},
                "weight": {"type": "integer", "default": 1, "minimum": 0, "maximum": 2147483647}
              },
              "additionalProperties": false
            },
            "default": [{"weight": 1}],
            "minItems": 1,
            "maxItems": 20
          }
        },
        "additionalProperties": false
      }
    }
  }
})";

// grpc-web: cors_allow_headers is sent as Access-Control-Allow-Headers on a preflight's answer; a CR or LF
// in it would split the response, so Portico refuses them (APISIX's schema only says "string").
constexpr std::string_view kGrpcWebSchema = R"({
  "type": "object",
  "properties": {
    "cors_allow_headers": {
      "type": "string",
      "pattern": "^[^\\r\\n\\x00]*\\z",
      "default": "content-type,x-grpc-web,x-user-agent"
    }
  }
})";

std::vector<PluginDef> make_defs() {
  std::vector<PluginDef> defs;
  defs.emplace_back(plugin_def("client-control", 22000, kClientControlSchema)).builtin = true;
  defs.emplace_back(plugin_def("proxy-rewrite", 1008, kProxyRewriteSchema)).check = check_proxy_rewrite;
  defs.emplace_back(plugin_def("response-rewrite", 899, kResponseRewriteSchema)).check =
      check_response_rewrite;
  defs.emplace_back(plugin_def("redirect", 900, kRedirectSchema)).check = check_redirect;
  defs.emplace_back(plugin_def("request-id", 12015, kRequestIdSchema)).check = check_request_id;
  defs.emplace_back(plugin_def("cors", 4000, kCorsSchema)).check = check_cors;
  defs.emplace_back(plugin_def("ip-restriction", 3000, kIpRestrictionSchema)).check = check_ip_restriction;
  defs.emplace_back(plugin_def("fault-injection", 11000, kFaultInjectionSchema)).check =
      check_fault_injection;
  defs.emplace_back(plugin_def("mocking", 10900, kMockingSchema)).check = check_mocking;
  defs.emplace_back(plugin_def("traffic-split", 966, kTrafficSplitSchema)).check = check_traffic_split;
  defs.emplace_back(plugin_def("grpc-web", 505, kGrpcWebSchema));
  return defs;
}

}  // namespace

std::span<const PluginDef> traffic_plugin_defs() {
  static const std::vector<PluginDef> defs = make_defs();
  return defs;
}

}  // namespace portico::config::detail
