// The checks of cors, ip-restriction, fault-injection and mocking beyond their schemas (plugin_defs.h):
// regexes compile, addresses parse, `vars` and variable templates are valid (the same readers the plugins
// use: validate.h validate_vars, var_template.h parse_template), header names are tokens Portico lets
// plugins write, and what this version does not implement is refused rather than ignored. Messages follow
// APISIX's check_schema where it has one.
#include <nlohmann/json.hpp>

#include "config/fields.h"
#include "config/header_ops.h"
#include "config/plugin_defs.h"
#include "config/var_template.h"

namespace portico::config::detail {

namespace {

bool has_control_chars(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if ((u < 0x20 && c != '\t') || u == 0x7f) return true;
  }
  return false;
}

// A mapping of header names to string or number values (abort.headers, response_headers), set on a response;
// string values are variable templates when `with_vars`. `where` is the mapping's path below the plugin.
std::string check_headers(const json& headers, std::string_view where, bool with_vars, std::string& field) {
  for (auto it = headers.begin(); it != headers.end(); ++it) {
    field = std::string(where);
    append_key(field, it.key());
    std::string why = check_header_name(it.key());
    if (why.empty() && is_reserved_header(it.key(), false)) {
      why = it.key() + " is managed by Portico itself and cannot be changed by a plugin";
    }
    if (!why.empty()) return why;
    if (!it->is_string()) continue;
    const std::string& value = it->get_ref<const std::string&>();
    for (char c : value) {
      const auto b = static_cast<unsigned char>(c);
      if (b < 32 || b >= 127) return "invalid value character in header";
    }
    std::vector<TemplatePiece> pieces;
    if (with_vars && !parse_template(value, TemplateSyntax::vars, pieces, &why)) return why;
  }
  field.clear();
  return {};
}

// Each `vars` alternative of a fault-injection action is a route-style expression list.
std::string check_vars(const json& action, const std::string& where, std::string& field) {
  auto vars = action.find("vars");
  if (vars == action.end()) return {};
  for (size_t i = 0; i < vars->size(); ++i) {
    std::string prefix = where + ".vars";
    append_index(prefix, i);
    Errors errors;
    if (!validate_vars((*vars)[i], prefix, errors)) {
      field = errors.list().front().path;
      return errors.list().front().reason;
    }
  }
  return {};
}

}  // namespace

std::string check_cors(const json& conf, bool, std::string& field) {
  if (conf.contains("allow_origins_by_metadata")) {
    field = "allow_origins_by_metadata";
    return "plugin metadata is not supported by this version: list the origins in allow_origins or "
           "allow_origins_by_regex";
  }
  static constexpr const char* kHeaderValues[] = {"allow_origins", "allow_methods", "allow_headers",
                                                  "expose_headers", "timing_allow_origins"};
  for (const char* key : kHeaderValues) {
    auto it = conf.find(key);
    if (it != conf.end() && has_control_chars(it->get_ref<const std::string&>())) {
      field = key;
      return "invalid value character in header";
    }
  }
  if (conf.at("allow_credential").get<bool>()) {
    for (const char* key : kHeaderValues) {
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

std::string check_fault_injection(const json& conf, bool, std::string& field) {
  if (auto abort = conf.find("abort"); abort != conf.end()) {
    if (auto body = abort->find("body"); body != abort->end()) {
      std::vector<TemplatePiece> pieces;
      std::string why;
      if (!parse_template(body->get_ref<const std::string&>(), TemplateSyntax::vars, pieces, &why)) {
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

std::string check_mocking(const json& conf, bool, std::string& field) {
  if (conf.contains("response_schema")) {
    field = "response_schema";
    return "generating bodies from a JSON schema is not supported by this version: give response_example";
  }
  const std::string& content_type = conf.at("content_type").get_ref<const std::string&>();
  const std::string_view type = std::string_view(content_type).substr(0, content_type.find(';'));
  bool supported = false;
  for (std::string_view t : {"application/xml", "application/json", "text/plain", "text/html", "text/xml"}) {
    supported = supported || type == t;
  }
  if (!supported || has_control_chars(content_type)) {
    field = "content_type";
    return "unsupported content type!";
  }
  std::vector<TemplatePiece> pieces;
  std::string why;
  if (!parse_template(conf.at("response_example").get_ref<const std::string&>(), TemplateSyntax::vars, pieces,
                      &why)) {
    field = "response_example";
    return why;
  }
  if (auto headers = conf.find("response_headers"); headers != conf.end()) {
    return check_headers(*headers, "response_headers", false, field);
  }
  return {};
}

// traffic-split: each match entry's vars are route-style expressions; an inline upstream is a route's inline
// upstream (same rules, no id); a weighted upstream names at most one upstream. Whether an upstream_id exists
// is check_config's (check_plugin_upstream_refs).
std::string check_traffic_split(const json& conf, bool, std::string& field) {
  auto rules = conf.find("rules");
  if (rules == conf.end()) return {};
  for (size_t i = 0; i < rules->size(); ++i) {
    const json& rule = (*rules)[i];
    std::string where = "rules";
    append_index(where, i);
    if (auto match = rule.find("match"); match != rule.end()) {
      for (size_t m = 0; m < match->size(); ++m) {
        auto vars = (*match)[m].find("vars");
        if (vars == (*match)[m].end()) continue;
        std::string at = where + ".match";
        append_index(at, m);
        Errors errors;
        if (!validate_vars(*vars, at + ".vars", errors)) {
          field = errors.list().front().path;
          return errors.list().front().reason;
        }
      }
    }
    auto ups = rule.find("weighted_upstreams");
    if (ups == rule.end()) continue;
    for (size_t j = 0; j < ups->size(); ++j) {
      const json& wu = (*ups)[j];
      std::string at = where + ".weighted_upstreams";
      append_index(at, j);
      auto upstream = wu.find("upstream");
      if (upstream == wu.end()) continue;
      if (wu.contains("upstream_id")) {
        field = at + ".upstream_id";
        return "set either upstream or upstream_id, not both";
      }
      Errors errors;
      if (!validate_inline_upstream(*upstream, at + ".upstream", errors)) {
        field = errors.list().front().path;
        return errors.list().front().reason;
      }
    }
  }
  return {};
}

}  // namespace portico::config::detail
