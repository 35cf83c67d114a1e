// The traffic plugins' schemas (APISIX 3.x): request and response rewriting, redirects, CORS, IP rules,
// request ids, fault injection, mocking, and client-control (the body limit, applied by the proxy itself).
// Where Portico is stricter than APISIX (nested objects closed, statuses bounded to three digits, header
// names and values that would break the response head refused), the docs say why (docs/plugins/traffic2.md).
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/fields.h"
#include "config/plugin_defs.h"
#include "config/var_refs.h"

namespace portico::config::detail {

namespace {

// client-control: max_body_size, bytes; 0 = no limit (APISIX). Folded into Route::max_body_size.
constexpr std::string_view kClientControlSchema = R"({
  "type": "object",
  "properties": {
    "max_body_size": {"type": "integer", "minimum": 0}
  }
})";

// ---- checks shared by cors, fault-injection and mocking --------------------------------------------------

bool has_control_chars(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return true;
  }
  return false;
}

// A field name of the response head a plugin may set: an RFC 9110 token, not one Portico owns (framing and
// connection management: proxy/head_writer.h is_reserved_field).
std::string check_header_name(std::string_view name) {
  static constexpr std::string_view kTokenPunct = "!#$%&'*+-.^_`|~";
  for (char c : name) {
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
    if (!alnum && kTokenPunct.find(c) == std::string_view::npos) return "is not a valid header name";
  }
  std::string lower(name);
  for (char& c : lower) c = static_cast<char>(c >= 'A' && c <= 'Z' ? c + 32 : c);
  for (std::string_view reserved : {"connection", "keep-alive", "proxy-connection", "te", "trailer",
                                    "transfer-encoding", "upgrade", "content-length", "host"}) {
    if (lower == reserved) return "is set by Portico itself and cannot be configured";
  }
  return {};
}

// A mapping of header names to string or number values (abort.headers, response_headers); strings may hold
// variables when `with_vars`. `where` is the mapping's path below the plugin.
std::string check_headers(const json& headers, std::string_view where, bool with_vars, std::string& field) {
  for (auto it = headers.begin(); it != headers.end(); ++it) {
    field = std::string(where);
    append_key(field, it.key());
    if (std::string why = check_header_name(it.key()); !why.empty()) return why;
    if (!it->is_string()) continue;
    const std::string& value = it->get_ref<const std::string&>();
    if (has_control_chars(value)) return "must not contain control characters (CR, LF, ...)";
    if (with_vars) {
      if (std::string why = check_var_refs(value); !why.empty()) return why;
    }
  }
  field.clear();
  return {};
}

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

std::string check_cors(const json& conf, bool, std::string& field) {
  if (conf.contains("allow_origins_by_metadata")) {
    field = "allow_origins_by_metadata";
    return "plugin metadata is not supported by this version: list the origins in allow_origins or "
           "allow_origins_by_regex";
  }
  for (const char* key :
       {"allow_origins", "allow_methods", "allow_headers", "expose_headers", "timing_allow_origins"}) {
    auto it = conf.find(key);
    if (it != conf.end() && has_control_chars(it->get_ref<const std::string&>())) {
      field = key;
      return "must not contain control characters (CR, LF, ...)";
    }
  }
  if (conf.at("allow_credential").get<bool>()) {
    for (const char* key :
         {"allow_origins", "allow_methods", "allow_headers", "expose_headers", "timing_allow_origins"}) {
      auto it = conf.find(key);
      if (it != conf.end() && *it == "*") {
        return "you can not set '*' for other option when 'allow_credential' is true";
      }
    }
  }
  for (const char* key : {"allow_origins_by_regex", "timing_allow_origins_by_regex"}) {
    auto list = conf.find(key);
    if (list == conf.end()) continue;
    for (size_t i = 0; i < list->size(); ++i) {
      std::string why = check_regex((*list)[i].get<std::string>(), false);
      if (!why.empty()) {
        field = key;
        append_index(field, i);
        return why;
      }
    }
  }
  return {};
}

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

std::string check_ip_restriction(const json& conf, bool, std::string& field) {
  for (const char* key : {"whitelist", "blacklist"}) {
    auto list = conf.find(key);
    if (list == conf.end()) continue;
    for (size_t i = 0; i < list->size(); ++i) {
      const std::string& text = (*list)[i].get_ref<const std::string&>();
      if (!check_cidr(text).empty()) {
        field = key;
        append_index(field, i);
        return "invalid ip address: " + text;
      }
    }
  }
  return {};
}

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

// Each `vars` alternative is a route-style expression list (validate.h read_vars_expressions).
std::string check_vars(const json& action, const std::string& where, std::string& field) {
  auto vars = action.find("vars");
  if (vars == action.end()) return {};
  for (size_t i = 0; i < vars->size(); ++i) {
    std::string prefix = where + ".vars";
    append_index(prefix, i);
    Errors errors;
    std::vector<VarExpr> exprs;
    if (!read_vars_expressions((*vars)[i], prefix, errors, exprs)) {
      field = errors.list().front().path;
      return errors.list().front().reason;
    }
  }
  return {};
}

std::string check_fault_injection(const json& conf, bool, std::string& field) {
  if (auto abort = conf.find("abort"); abort != conf.end()) {
    if (auto body = abort->find("body"); body != abort->end()) {
      if (std::string why = check_var_refs(body->get_ref<const std::string&>()); !why.empty()) {
        field = "abort.body";
        return why;
      }
    }
    if (auto headers = abort->find("headers"); headers != abort->end()) {
      if (std::string why = check_headers(*headers, "abort.headers", true, field); !why.empty()) return why;
    }
    if (std::string why = check_vars(*abort, "abort", field); !why.empty()) return why;
  }
  if (auto delay = conf.find("delay"); delay != conf.end()) {
    if (std::string why = check_vars(*delay, "delay", field); !why.empty()) return why;
  }
  return {};
}

// ---- mocking ---------------------------------------------------------------------------------------------

// response_status is bounded to what a status line can carry; delay to config::kMaxSeconds.
constexpr std::string_view kMockingSchema = R"({
  "type": "object",
  "properties": {
    "delay": {"type": "integer", "default": 0, "maximum": 31536000},
    "response_status": {"type": "integer", "default": 200, "minimum": 100, "maximum": 599},
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

std::string check_mocking(const json& conf, bool, std::string& field) {
  if (conf.contains("response_schema")) {
    field = "response_schema";
    return "generating bodies from a JSON schema is not supported by this version: give response_example";
  }
  const std::string& content_type = conf.at("content_type").get_ref<const std::string&>();
  std::string_view type = std::string_view(content_type).substr(0, content_type.find(';'));
  bool supported = false;
  for (std::string_view t : {"application/xml", "application/json", "text/plain", "text/html", "text/xml"}) {
    supported = supported || type == t;
  }
  if (!supported || has_control_chars(content_type)) {
    field = "content_type";
    return "unsupported content type!";
  }
  if (std::string why = check_var_refs(conf.at("response_example").get_ref<const std::string&>());
      !why.empty()) {
    field = "response_example";
    return why;
  }
  if (auto headers = conf.find("response_headers"); headers != conf.end()) {
    return check_headers(*headers, "response_headers", false, field);
  }
  return {};
}

std::vector<PluginDef> make_defs() {
  std::vector<PluginDef> defs;
  defs.emplace_back(plugin_def("client-control", 22000, kClientControlSchema)).builtin = true;
  defs.emplace_back(plugin_def("cors", 4000, kCorsSchema)).check = check_cors;
  defs.emplace_back(plugin_def("ip-restriction", 3000, kIpRestrictionSchema)).check = check_ip_restriction;
  defs.emplace_back(plugin_def("fault-injection", 11000, kFaultInjectionSchema)).check =
      check_fault_injection;
  defs.emplace_back(plugin_def("mocking", 10900, kMockingSchema)).check = check_mocking;
  return defs;
}

}  // namespace

std::span<const PluginDef> traffic_plugin_defs() {
  static const std::vector<PluginDef> defs = make_defs();
  return defs;
}

}  // namespace portico::config::detail
