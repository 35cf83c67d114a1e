// Routes and services: matching fields, vars expressions, plugins. Upstreams live in validate_upstream.cc.
// Both are checked as the other schema-declared resources are (validate_resources.cc): the schema first
// (resource_schemas.cc), then what it cannot say, then the model.
#include <charconv>
#include <cmath>
#include <limits>

#include "config/resource_schemas.h"
#include "config/resources.h"
#include "config/schema.h"

namespace portico::config {
namespace detail {
namespace {

// A `vars` operand as the text the matcher compares with: strings as written, numbers in shortest form.
bool operand_text(const json& v, const Path& p, Errors& e, std::string& out) {
  if (v.is_string()) {
    out = v.get_ref<const std::string&>();
    return true;
  }
  if (v.is_number_unsigned()) {
    out = std::to_string(v.get<uint64_t>());
    return true;
  }
  if (v.is_number_integer()) {
    out = std::to_string(v.get<int64_t>());
    return true;
  }
  if (v.is_number_float() && std::isfinite(v.get<double>())) {
    char buf[32];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v.get<double>());
    out.assign(buf, end);
    return true;
  }
  fail_type(e, p, "a string or a number", v);
  return false;
}

bool read_var_expr(const json& v, const Path& p, Errors& e, VarExpr& out) {
  if (!v.is_array()) {
    fail_type(e, p, "a list [var, operator, value] or [var, \"!\", operator, value]", v);
    return false;
  }
  if (!v.empty() && v[0].is_string()) {
    const std::string& first = v[0].get_ref<const std::string&>();
    if (first == "AND" || first == "OR" || first == "!AND" || first == "!OR") {
      fail(e, p, "logical operators (AND, OR) in vars are not supported by this version");
      return false;
    }
  }
  if (v.size() != 3 && v.size() != 4) {
    fail(e, p,
         "must have 3 items [var, operator, value] or 4 items [var, \"!\", operator, value], got " +
             std::to_string(v.size()));
    return false;
  }
  if (!read_string(v[0], p.index(0), e, out.var)) return false;
  size_t op_index = 1;
  if (v.size() == 4) {
    if (!v[1].is_string() || v[1].get_ref<const std::string&>() != "!") {
      fail_type(e, p.index(1), "\"!\" (negation) in a 4-item expression", v[1]);
      return false;
    }
    out.negate = true;
    op_index = 2;
  }
  const Path op_path = p.index(op_index);
  const json& op = v[op_index];
  static constexpr std::pair<std::string_view, VarExpr::Op> kOps[] = {
      {"==", VarExpr::Op::eq},    {"~=", VarExpr::Op::ne},
      {">", VarExpr::Op::gt},     {">=", VarExpr::Op::ge},
      {"<", VarExpr::Op::lt},     {"<=", VarExpr::Op::le},
      {"~~", VarExpr::Op::regex}, {"~*", VarExpr::Op::regex_nocase},
      {"in", VarExpr::Op::in},    {"has", VarExpr::Op::has}};
  bool found = false;
  if (op.is_string()) {
    for (const auto& [name, value] : kOps) {
      if (op.get_ref<const std::string&>() == name) {
        out.op = value;
        found = true;
      }
    }
  }
  if (!found) {
    fail_type(e, op_path, "an operator: ==, ~=, >, >=, <, <=, ~~, ~*, in, has", op);
    return false;
  }
  const Path value_path = p.index(op_index + 1);
  const json& value = v[op_index + 1];
  std::string text;
  switch (out.op) {
    case VarExpr::Op::eq:
    case VarExpr::Op::ne:
    case VarExpr::Op::has:
      if (!operand_text(value, value_path, e, text)) return false;
      out.values.push_back(std::move(text));
      return true;
    case VarExpr::Op::gt:
    case VarExpr::Op::ge:
    case VarExpr::Op::lt:
    case VarExpr::Op::le: {
      double number = 0;
      bool ok = value.is_number() && std::isfinite(value.get<double>());
      if (value.is_string()) {
        const std::string& s = value.get_ref<const std::string&>();
        auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), number);
        ok = !s.empty() && ec == std::errc() && end == s.data() + s.size() && std::isfinite(number);
      }
      if (!ok) {
        fail_type(e, value_path, "a number (the operator compares numerically)", value);
        return false;
      }
      if (!operand_text(value, value_path, e, text)) return false;
      out.values.push_back(std::move(text));
      return true;
    }
    case VarExpr::Op::regex:
    case VarExpr::Op::regex_nocase: {
      if (!read_string(value, value_path, e, text)) return false;
      std::string reason = check_regex(text, out.op == VarExpr::Op::regex_nocase);
      if (!reason.empty()) {
        fail(e, value_path, std::move(reason));
        return false;
      }
      out.values.push_back(std::move(text));
      return true;
    }
    case VarExpr::Op::in: {
      if (!value.is_array() || value.empty()) {
        fail_type(e, value_path, "a non-empty list of strings or numbers (operator \"in\")", value);
        return false;
      }
      bool ok = true;
      for (size_t i = 0; i < value.size(); ++i) {
        if (operand_text(value[i], value_path.index(i), e, text)) {
          out.values.push_back(std::move(text));
        } else {
          ok = false;
        }
      }
      return ok;
    }
  }
  return false;
}

// A list the schema accepted the shape of: each string item passes `check` (which may rewrite it, e.g.
// lower-case a host; empty when fine, else the reason), then duplicates are reported at the repeated item.
// Items of another type were the schema's to report.
template <typename Check>
void read_list(const json& v, const Path& p, Errors& e, std::vector<std::string>& out, Check check) {
  if (!v.is_array()) return;
  const size_t before = e.total();
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    if (!v[i].is_string()) continue;
    std::string text = v[i].get<std::string>();
    if (std::string reason = check(text); !reason.empty()) {
      fail(e, p.index(i), std::move(reason));
    } else {
      out.push_back(std::move(text));
    }
  }
  size_t first = 0;
  long dup = e.total() == before ? find_duplicate(out, first) : -1;
  if (dup >= 0) {
    fail(e, p.index(static_cast<size_t>(dup)),
         "duplicate \"" + out[static_cast<size_t>(dup)] + "\" (already at index " + std::to_string(first) +
             ")");
  }
}

// A pair of APISIX alternatives (uri|uris, host|hosts, remote_addr|remote_addrs): the singular one is a
// shorthand for a one-item list. Both at once is an error.
template <typename Check>
void read_one_or_many(const json* one, const json* many, const Path& p, std::string_view one_name,
                      std::string_view many_name, Errors& e, std::vector<std::string>& out, Check check) {
  if (one != nullptr && many != nullptr) {
    fail(e, p.key(many_name),
         "set either " + std::string(one_name) + " or " + std::string(many_name) + ", not both");
    return;
  }
  if (one != nullptr) {
    if (!one->is_string()) return;
    std::string text = one->get<std::string>();
    if (std::string reason = check(text); !reason.empty()) {
      fail(e, p.key(one_name), std::move(reason));
    } else {
      out.push_back(std::move(text));
    }
  } else if (many != nullptr) {
    read_list(*many, p.key(many_name), e, out, check);
  }
}

// An empty or overlong URI is the schema's to report (minLength, maxLength).
std::string check_uri(std::string& text) {
  return text.empty() || text.size() > 4096 ? std::string() : check_uri_pattern(text);
}

std::string check_remote_addr(std::string& text) {
  return check_cidr(text);
}

std::string check_nothing(std::string&) {
  return {};
}

}  // namespace

void read_vars(const json& v, const Path& p, Errors& e, std::vector<VarExpr>& out) {
  if (!v.is_array()) {
    fail_type(e, p, "a list of expressions like [\"arg_name\", \"==\", \"value\"]", v);
    return;
  }
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    VarExpr expr;
    if (read_var_expr(v[i], p.index(i), e, expr)) out.push_back(std::move(expr));
  }
}

// The schema first (resource_schemas.cc), then what it cannot say: the refused fields, integer ids written
// as floats, the URI, host and CIDR syntax and the lists' duplicates, the "x or xs" pairs, the vars
// expressions, an upstream from somewhere, the inline upstream (its own schema and checks) and the plugins.
std::optional<Route> route_at(const json& v, const Path& p, Errors& e, const ValidateOptions& options) {
  const size_t before = e.total();
  resource_schema(ResourceKind::route, options.id_required).check(v, p, e);
  if (!v.is_object()) return std::nullopt;
  Route route;
  // One pass over the members (a 100k-route load looks each up once), then the checks that span fields.
  const json *uri = nullptr, *uris = nullptr, *host = nullptr, *hosts = nullptr, *addr = nullptr,
             *addrs = nullptr, *upstream = nullptr, *plugins = nullptr;
  bool has_upstream_id = false, has_service_id = false;
  const auto read_id_field = [&](const std::string& key, const json& f, std::string& out) {
    if (f.is_number_float()) check_integer_id(v, p, e, key.c_str());
    out = peek_id(f);
  };
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    const json& f = it.value();
    if (k == "id") {
      read_id_field(k, f, route.id);
    } else if (k == "uri") {
      uri = &f;
    } else if (k == "uris") {
      uris = &f;
    } else if (k == "host") {
      host = &f;
    } else if (k == "hosts") {
      hosts = &f;
    } else if (k == "remote_addr") {
      addr = &f;
    } else if (k == "remote_addrs") {
      addrs = &f;
    } else if (k == "upstream") {
      upstream = &f;
    } else if (k == "plugins") {
      plugins = &f;
    } else if (k == "upstream_id") {
      has_upstream_id = true;
      read_id_field(k, f, route.upstream_id);
    } else if (k == "service_id") {
      has_service_id = true;
      read_id_field(k, f, route.service_id);
    } else if (k == "plugin_config_id") {
      read_id_field(k, f, route.plugin_config_id);
    } else if (k == "methods") {
      read_list(f, p.key(k), e, route.methods, check_nothing);
    } else if (k == "vars") {
      if (f.is_array()) read_vars(f, p.key(k), e, route.vars);
    } else if (k == "priority") {
      if (json_type_is(f, "integer")) route.priority = static_cast<int>(f.get<double>());
    } else if (k == "status") {
      if (f.is_number()) route.enabled = f.get<double>() != 0;
    } else if (k == "timeout") {
      if (!f.is_object()) continue;
      Timeout& t = route.timeout.emplace();
      for (auto [key, out] : {std::pair{"connect", &t.connect}, {"send", &t.send}, {"read", &t.read}}) {
        if (auto n = f.find(key); n != f.end() && n->is_number()) *out = n->get<double>();
      }
    } else if (k == "enable_websocket") {
      if (f.is_boolean()) route.enable_websocket = f.get<bool>();
    } else if (k == "name") {
      if (f.is_string()) route.name = f.get<std::string>();
    } else if (k == "filter_func" || k == "script" || k == "script_id" || k == "service_protocol") {
      fail(e, p.key(k), "'" + k + "' is not supported by this version");
    }
  }
  if (uri == nullptr && uris == nullptr) {
    fail(e, p.key("uri"), "is required (set uri or uris)");
  } else {
    read_one_or_many(uri, uris, p, "uri", "uris", e, route.uris, check_uri);
  }
  read_one_or_many(host, hosts, p, "host", "hosts", e, route.hosts, check_host_pattern);
  read_one_or_many(addr, addrs, p, "remote_addr", "remote_addrs", e, route.remote_addrs, check_remote_addr);
  if (upstream != nullptr) {
    if (has_upstream_id) {
      fail(e, p.key("upstream_id"), "set either upstream or upstream_id, not both");
    } else {
      route.upstream = upstream_at(*upstream, p.key("upstream"), e, true, options);
    }
  } else if (!has_upstream_id && !has_service_id) {
    fail(e, p, "has no upstream: set upstream, upstream_id, or a service_id whose service has an upstream");
  }
  PluginSettings settings;
  if (plugins != nullptr && plugins->is_object()) read_plugins(*plugins, p.key("plugins"), e, settings);
  route.max_body_size = settings.max_body_size;
  route.own_max_body_size = settings.max_body_size;
  route.plugins = std::move(settings.plugins);
  if (e.total() != before) return std::nullopt;
  return route;
}

// The schema first (resource_schemas.cc), then what it cannot say: the refused fields, integer ids written
// as floats, host patterns and their duplicates, upstream and upstream_id together, the inline upstream
// (its own schema and checks) and the plugins.
std::optional<Service> service_at(const json& v, const Path& p, Errors& e, const ValidateOptions& options) {
  const size_t before = e.total();
  resource_schema(ResourceKind::service, options.id_required).check(v, p, e);
  if (!v.is_object()) return std::nullopt;
  Service service;
  for (const char* refused : {"script", "plugin_config_id"}) {
    if (v.contains(refused)) {
      fail(e, p.key(refused), std::string("'").append(refused).append("' is not supported by this version"));
    }
  }
  check_integer_id(v, p, e);
  check_integer_id(v, p, e, "upstream_id");
  if (auto id = v.find("id"); id != v.end()) service.id = peek_id(*id);
  if (auto id = v.find("upstream_id"); id != v.end()) service.upstream_id = peek_id(*id);
  if (auto hosts = v.find("hosts"); hosts != v.end())
    read_list(*hosts, p.key("hosts"), e, service.hosts, check_host_pattern);
  if (auto ws = v.find("enable_websocket"); ws != v.end() && ws->is_boolean())
    service.enable_websocket = ws->get<bool>();
  if (auto name = v.find("name"); name != v.end() && name->is_string())
    service.name = name->get<std::string>();
  if (auto upstream = v.find("upstream"); upstream != v.end()) {
    if (v.contains("upstream_id")) {
      fail(e, p.key("upstream_id"), "set either upstream or upstream_id, not both");
    } else {
      service.upstream = upstream_at(*upstream, p.key("upstream"), e, true, options);
    }
  }
  PluginSettings plugins;
  if (auto given = v.find("plugins"); given != v.end() && given->is_object())
    read_plugins(*given, p.key("plugins"), e, plugins);
  service.max_body_size = plugins.max_body_size;
  service.plugins = std::move(plugins.plugins);
  if (e.total() != before) return std::nullopt;
  return service;
}

}  // namespace detail

std::optional<Route> validate_route(const nlohmann::json& route, std::string_view path_prefix, Errors& errors,
                                    const ValidateOptions& options) {
  return detail::route_at(route, detail::Path(path_prefix), errors, options);
}

std::optional<Service> validate_service(const nlohmann::json& service, std::string_view path_prefix,
                                        Errors& errors, const ValidateOptions& options) {
  return detail::service_at(service, detail::Path(path_prefix), errors, options);
}

std::optional<std::vector<VarExpr>> validate_vars(const nlohmann::json& vars, std::string_view path_prefix,
                                                  Errors& errors) {
  const size_t before = errors.total();
  std::vector<VarExpr> out;
  detail::read_vars(vars, detail::Path(path_prefix), errors, out);
  if (errors.total() != before) return std::nullopt;
  return out;
}

}  // namespace portico::config
