// The traffic plugins' checks beyond their schemas (plugin_defs.h): templates parse and name known
// variables, regexes compile, header names are tokens Portico lets plugins write, and what this version
// does not implement is refused rather than ignored. Messages follow APISIX's check_schema where it has one.
#include <nlohmann/json.hpp>

#include "config/fields.h"
#include "config/header_ops.h"
#include "config/plugin_defs.h"
#include "config/var_template.h"

namespace portico::config::detail {

namespace {

// Every regex_uri pair: the regex compiles, the replacement is a valid ngx.re.sub template. `message`
// frames the reason the way the plugin's APISIX check does.
std::string check_regex_pairs(const json& regex_uri, std::string& field,
                              std::string (*message)(const std::string&, const std::string&,
                                                     const std::string&)) {
  for (size_t i = 0; i + 1 < regex_uri.size(); i += 2) {
    const std::string re = regex_uri[i].get<std::string>();
    const std::string tpl = regex_uri[i + 1].get<std::string>();
    std::string why = check_regex(re, false);
    size_t bad = i;
    if (why.empty()) {
      std::vector<TemplatePiece> pieces;
      if (!parse_template(tpl, TemplateSyntax::replacement, pieces, &why)) bad = i + 1;
    }
    if (!why.empty()) {
      field = "regex_uri";
      append_index(field, bad);
      return message(re, tpl, why);
    }
  }
  return {};
}

std::string check_template(const json& conf, std::string_view key, std::string& field) {
  auto it = conf.find(std::string(key));
  if (it == conf.end()) return {};
  std::vector<TemplatePiece> pieces;
  std::string why;
  if (parse_template(it->get<std::string>(), TemplateSyntax::vars, pieces, &why)) return {};
  field = key;
  return why;
}

std::string check_headers(const json& conf, const HeaderOpsSyntax& syntax, std::string& field) {
  auto it = conf.find("headers");
  if (it == conf.end()) return {};
  std::vector<HeaderOp> ops;
  std::string below;
  std::string why = read_header_ops(*it, syntax, ops, below);
  if (why.empty()) return {};
  field = "headers";
  if (!below.empty()) field += (below.front() == '[' ? "" : ".") + below;
  return why;
}

// Strict standard base64, as the plugin decodes it (plugins/base64.h): padding optional but complete when
// present, no character outside the alphabet, zero unused bits in the last digit.
bool is_base64(std::string_view s) {
  size_t padding = 0;
  if (!s.empty() && s.size() % 4 == 0) {
    while (padding < 2 && s[s.size() - 1 - padding] == '=') ++padding;
  }
  s.remove_suffix(padding);
  if (s.size() % 4 == 1) return false;
  uint32_t acc = 0;
  int bits = 0;
  for (char c : s) {
    int v = c >= 'A' && c <= 'Z'   ? c - 'A'
            : c >= 'a' && c <= 'z' ? c - 'a' + 26
            : c >= '0' && c <= '9' ? c - '0' + 52
            : c == '+'             ? 62
            : c == '/'             ? 63
                                   : -1;
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      acc &= (1u << bits) - 1;
    }
  }
  return acc == 0;
}

// The variables a `vars` condition can read in the response phase: the router's (router/vars.h) and
// `status`. Any other name would never be set, so the condition could never hold as written.
bool known_condition_var(std::string_view var) {
  static constexpr std::string_view kNames[] = {"uri",         "request_uri",    "host",
                                                "remote_addr", "scheme",         "args",
                                                "status",      "request_method", "query_string"};
  for (std::string_view n : kNames) {
    if (var == n) return true;
  }
  for (std::string_view prefix : {"http_", "arg_", "cookie_"}) {
    if (var.size() > prefix.size() && var.substr(0, prefix.size()) == prefix) return true;
  }
  return false;
}

}  // namespace

std::string check_proxy_rewrite(const json& conf, bool, std::string& field) {
  if (conf.value("use_real_request_uri_unsafe", false)) {
    field = "use_real_request_uri_unsafe";
    return "not supported by this version: Portico forwards the path it routed on (dot segments removed, "
           "unreserved characters decoded), never the raw request-target";
  }
  if (conf.value("method", "") == "HEAD") {
    field = "method";
    return "rewriting the method to HEAD is not supported by this version: the client would wait for a "
           "body that the origin does not send";
  }
  std::string why = check_template(conf, "uri", field);
  if (!why.empty()) return why;
  if (auto it = conf.find("regex_uri"); it != conf.end()) {
    if (it->size() % 2 != 0) {
      field = "regex_uri";
      return "The length of regex_uri should be an even number";
    }
    why = check_regex_pairs(*it, field,
                            [](const std::string& re, const std::string& tpl, const std::string& err) {
                              return "invalid regex_uri(" + re + ", " + tpl + "): " + err;
                            });
    if (!why.empty()) return why;
  }
  return check_headers(
      conf, {.request_side = true, .add_as_lines = false, .values = TemplateSyntax::vars_and_captures},
      field);
}

std::string check_response_rewrite(const json& conf, bool, std::string& field) {
  if (conf.contains("filters")) {
    field = "filters";
    return "not supported by this version (regex substitutions in the body); use body to replace it";
  }
  std::string why = check_headers(
      conf, {.request_side = false, .add_as_lines = true, .values = TemplateSyntax::vars}, field);
  if (!why.empty()) return why;
  if (conf.value("body_base64", false)) {
    const std::string body = conf.value("body", "");
    if (body.empty() || !is_base64(body)) {
      field = "body";
      return "invalid base64 content";
    }
  }
  if (auto vars = conf.find("vars"); vars != conf.end()) {
    Errors errors;
    if (!validate_vars(*vars, "vars", errors)) {
      field = errors.list().front().path;
      return "failed to validate the 'vars' expression: " + errors.list().front().reason;
    }
    for (size_t i = 0; i < vars->size(); ++i) {
      const std::string var = (*vars)[i][0].get<std::string>();
      if (known_condition_var(var)) continue;
      field = "vars";
      append_index(field, i);
      append_index(field, 0);
      return "failed to validate the 'vars' expression: unknown variable \"" + var +
             "\" (supported: uri, request_uri, host, remote_addr, request_method, scheme, args, "
             "query_string, status, http_<header>, arg_<name>, cookie_<name>)";
    }
  }
  return {};
}

std::string check_redirect(const json& conf, bool, std::string& field) {
  if (conf.value("http_to_https", false) && conf.value("append_query_string", false)) {
    return "only one of `http_to_https` and `append_query_string` can be configured.";
  }
  std::string why = check_template(conf, "uri", field);
  if (!why.empty()) return why;
  if (auto it = conf.find("regex_uri"); it != conf.end()) {
    return check_regex_pairs(*it, field,
                             [](const std::string& re, const std::string& tpl, const std::string& err) {
                               return "invalid regex_uri (" + re + ", " + tpl + "), err:" + err;
                             });
  }
  return {};
}

std::string check_request_id(const json& conf, bool, std::string& field) {
  const std::string name = conf.at("header_name").get<std::string>();
  std::string why = check_header_name(name);
  if (why.empty() && is_reserved_header(name, true))
    why = name + " is managed by Portico itself and cannot be changed by a plugin";
  if (!why.empty()) {
    field = "header_name";
    return why;
  }
  const json& range = conf.at("range_id");
  // APISIX sets no bound; an id is built per request and sent in a header.
  if (range.at("length").get<int64_t>() > 4096) {
    field = "range_id.length";
    return "must be at most 4096";
  }
  for (char c : range.at("char_set").get<std::string>()) {
    if (c <= ' ' || c > '~') {
      field = "range_id.char_set";
      return "only visible ASCII characters can make up a header value";
    }
  }
  return {};
}

}  // namespace portico::config::detail
