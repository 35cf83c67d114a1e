// Routes and services: matching fields, vars expressions, plugins. Upstreams live in validate_upstream.cc.
#include <charconv>
#include <cmath>
#include <limits>

#include "config/resource_schemas.h"
#include "config/resources.h"
#include "config/schema.h"

namespace portico::config {
namespace detail {
namespace {

constexpr std::string_view kMethods[] = {"GET",  "POST",    "PUT",     "DELETE", "PATCH",
                                         "HEAD", "OPTIONS", "CONNECT", "TRACE",  "PURGE"};

// For "did you mean" suggestions.
constexpr std::string_view kRouteFields[] = {"id",           "name",       "desc",
                                             "labels",       "uri",        "uris",
                                             "host",         "hosts",      "remote_addr",
                                             "remote_addrs", "methods",    "vars",
                                             "priority",     "status",     "upstream",
                                             "upstream_id",  "service_id", "plugin_config_id",
                                             "timeout",      "plugins",    "enable_websocket",
                                             "create_time",  "update_time"};

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

bool read_uri(const json& v, const Path& p, Errors& e, std::string& out) {
  if (!read_string(v, p, e, out)) return false;
  std::string reason = check_uri_pattern(out);
  if (reason.empty()) return true;
  fail(e, p, std::move(reason));
  return false;
}

bool read_host(const json& v, const Path& p, Errors& e, std::string& out) {
  if (!read_string(v, p, e, out)) return false;
  std::string reason = check_host_pattern(out);
  if (reason.empty()) return true;
  fail(e, p, std::move(reason));
  return false;
}

bool read_method(const json& v, const Path& p, Errors& e, std::string& out) {
  if (v.is_string()) {
    for (std::string_view m : kMethods) {
      if (v.get_ref<const std::string&>() == m) {
        out = m;
        return true;
      }
    }
  }
  fail_type(e, p, "one of GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS, CONNECT, TRACE, PURGE (upper case)",
            v);
  return false;
}

bool read_remote_addr(const json& v, const Path& p, Errors& e, std::string& out) {
  if (!read_string(v, p, e, out)) return false;
  std::string reason = check_cidr(out);
  if (reason.empty()) return true;
  fail(e, p, std::move(reason));
  return false;
}

// A pair of APISIX alternatives (uri|uris, host|hosts, remote_addr|remote_addrs): the singular one is a
// shorthand for a one-item list. Both at once is an error.
template <typename ReadItem>
void read_one_or_many(const json* one, const json* many, const Path& p, std::string_view one_name,
                      std::string_view many_name, Errors& e, std::vector<std::string>& out,
                      ReadItem read_item) {
  if (one != nullptr && many != nullptr) {
    fail(e, p.key(many_name),
         "set either " + std::string(one_name) + " or " + std::string(many_name) + ", not both");
    return;
  }
  if (one != nullptr) {
    std::string item;
    if (read_item(*one, p.key(one_name), item)) out.push_back(std::move(item));
  } else if (many != nullptr) {
    read_string_list(*many, p.key(many_name), e, 1, out, read_item);
  }
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

std::optional<Route> route_at(const json& v, const Path& p, Errors& e, const ValidateOptions& options) {
  if (!v.is_object()) {
    fail_type(e, p, "a mapping (a route)", v);
    return std::nullopt;
  }
  const size_t before = e.total();
  Route route;
  const json *uri = nullptr, *uris = nullptr, *host = nullptr, *hosts = nullptr, *addr = nullptr,
             *addrs = nullptr, *upstream = nullptr;
  bool has_id = false, has_upstream_id = false, has_service_id = false;
  PluginSettings plugins;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    const json& f = it.value();
    const Path fp = p.key(k);
    if (k == "id") {
      has_id = true;
      read_id(f, fp, e, route.id);
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
    } else if (k == "methods") {
      read_string_list(f, fp, e, 0, route.methods, [&](const json& item, const Path& ip, std::string& out) {
        return read_method(item, ip, e, out);
      });
    } else if (k == "vars") {
      read_vars(f, fp, e, route.vars);
    } else if (k == "priority") {
      read_int(f, fp, e, std::numeric_limits<int>::min(), std::numeric_limits<int>::max(), route.priority);
    } else if (k == "status") {
      int status = 1;
      if (read_int(f, fp, e, 0, 1, status)) route.enabled = status == 1;
    } else if (k == "upstream") {
      upstream = &f;
    } else if (k == "upstream_id") {
      has_upstream_id = true;
      read_id(f, fp, e, route.upstream_id);
    } else if (k == "service_id") {
      has_service_id = true;
      read_id(f, fp, e, route.service_id);
    } else if (k == "plugin_config_id") {
      read_id(f, fp, e, route.plugin_config_id);
    } else if (k == "timeout") {
      route.timeout.emplace();
      read_timeout(f, fp, e, *route.timeout);
    } else if (k == "plugins") {
      read_plugins(f, fp, e, plugins);
    } else if (k == "enable_websocket") {
      read_bool(f, fp, e, route.enable_websocket);
    } else if (k == "name") {
      read_name(f, fp, e, route.name);
    } else if (check_meta_field(k, f, fp, e)) {
    } else if (k == "filter_func" || k == "script" || k == "script_id" || k == "service_protocol") {
      fail(e, fp, "'" + k + "' is not supported by this version");
    } else {
      fail_unknown(e, p, k, kRouteFields);
    }
  }
  if (!has_id && options.id_required) fail(e, p.key("id"), "is required");
  if (uri == nullptr && uris == nullptr) {
    fail(e, p.key("uri"), "is required (set uri or uris)");
  } else {
    auto read = [&](const json& item, const Path& ip, std::string& out) {
      return read_uri(item, ip, e, out);
    };
    read_one_or_many(uri, uris, p, "uri", "uris", e, route.uris, read);
  }
  read_one_or_many(
      host, hosts, p, "host", "hosts", e, route.hosts,
      [&](const json& item, const Path& ip, std::string& out) { return read_host(item, ip, e, out); });
  read_one_or_many(
      addr, addrs, p, "remote_addr", "remote_addrs", e, route.remote_addrs,
      [&](const json& item, const Path& ip, std::string& out) { return read_remote_addr(item, ip, e, out); });
  if (upstream != nullptr) {
    if (has_upstream_id) {
      fail(e, p.key("upstream_id"), "set either upstream or upstream_id, not both");
    } else {
      route.upstream = upstream_at(*upstream, p.key("upstream"), e, true, options);
    }
  } else if (!has_upstream_id && !has_service_id) {
    fail(e, p, "has no upstream: set upstream, upstream_id, or a service_id whose service has an upstream");
  }
  route.max_body_size = plugins.max_body_size;
  route.own_max_body_size = plugins.max_body_size;
  route.plugins = std::move(plugins.plugins);
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
  if (auto hosts = v.find("hosts"); hosts != v.end() && hosts->is_array()) {
    const Path hp = p.key("hosts");
    const size_t hosts_before = e.total();
    for (size_t i = 0; i < hosts->size(); ++i) {
      const json& host = (*hosts)[i];
      if (!host.is_string()) continue;
      std::string text = host.get<std::string>();
      if (std::string reason = check_host_pattern(text); !reason.empty()) {
        fail(e, hp.index(i), std::move(reason));
      } else {
        service.hosts.push_back(std::move(text));
      }
    }
    size_t first = 0;
    long dup = e.total() == hosts_before ? find_duplicate(service.hosts, first) : -1;
    if (dup >= 0) {
      fail(e, hp.index(static_cast<size_t>(dup)),
           "duplicate \"" + service.hosts[static_cast<size_t>(dup)] + "\" (already at index " +
               std::to_string(first) + ")");
    }
  }
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
