// Upstreams: nodes (map and list forms), load-balancing settings, health checks, timeouts, keepalive pool.
#include <cctype>
#include <charconv>
#include <limits>

#include "config/resources.h"

namespace portico::config {
namespace detail {
namespace {

constexpr int kIntMax = std::numeric_limits<int>::max();

template <typename E, size_t N>
bool read_enum(const json& v, const Path& p, Errors& e, const std::pair<std::string_view, E> (&names)[N],
               E& out) {
  if (v.is_string()) {
    for (const auto& [name, value] : names) {
      if (v.get_ref<const std::string&>() == name) {
        out = value;
        return true;
      }
    }
  }
  std::string expected = "one of ";
  for (size_t i = 0; i < N; ++i) {
    if (i > 0) expected += ", ";
    expected.append(names[i].first);
  }
  fail_type(e, p, expected, v);
  return false;
}

bool parse_port(std::string_view text, uint16_t& out) {
  if (text.empty() || text.size() > 5) return false;
  unsigned value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value < 1 || value > 65535) return false;
  out = static_cast<uint16_t>(value);
  return true;
}

// "host", "host:port", "[v6]" or "[v6]:port" (map-form node keys, upstream_host). Empty when fine.
std::string split_host_port(std::string_view text, std::string& host, uint16_t& port, bool& has_port) {
  has_port = false;
  std::string_view rest;
  if (!text.empty() && text.front() == '[') {
    size_t close = text.find(']');
    if (close == std::string_view::npos) return "a '[' must enclose an IPv6 address, as in \"[::1]:8080\"";
    host = std::string(text.substr(1, close - 1));
    if (host.find(':') == std::string::npos || !is_ip_literal(host)) {
      return "must be an IPv6 address in brackets, as in \"[::1]:8080\"";
    }
    rest = text.substr(close + 1);
    if (!rest.empty() && rest.front() != ':') return "expected ':port' after ']'";
  } else {
    size_t colon = text.find(':');
    if (colon != std::string_view::npos && text.find(':', colon + 1) != std::string_view::npos) {
      if (is_ip_literal(text))
        return "write IPv6 addresses in brackets, as in \"[" + std::string(text) + "]:80\"";
      return "must be \"host\" or \"host:port\"";
    }
    host = std::string(text.substr(0, colon));
    if (colon != std::string_view::npos) rest = text.substr(colon);
    std::string reason = check_hostname(host);
    if (!reason.empty()) return "host " + reason;
  }
  if (!rest.empty()) {
    has_port = true;
    if (!parse_port(rest.substr(1), port)) return "the port must be an integer from 1 to 65535";
  }
  return {};
}

std::string node_key(const Node& node) {
  std::string key = node.host.find(':') != std::string::npos ? "[" + node.host + "]" : node.host;
  return key + ":" + std::to_string(node.port);
}

void read_nodes(const json& v, const Path& p, Errors& e, std::vector<Node>& out) {
  const size_t before = e.total();
  std::vector<std::string> keys;
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      const Path np = p.key(it.key());
      Node node;
      bool has_port = false;
      std::string reason = split_host_port(it.key(), node.host, node.port, has_port);
      if (!reason.empty()) {
        fail(e, np, std::move(reason));
        continue;
      }
      if (!read_int(it.value(), np, e, 0, kIntMax, node.weight)) continue;
      keys.push_back(node_key(node));
      out.push_back(std::move(node));
    }
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      const Path np = p.index(i);
      const json& item = v[i];
      if (!item.is_object()) {
        fail_type(e, np, "a node {host, port, weight, priority}", item);
        continue;
      }
      const size_t node_before = e.total();
      Node node;
      bool has_host = false, has_weight = false;
      for (auto it = item.begin(); it != item.end(); ++it) {
        const std::string& k = it.key();
        const Path fp = np.key(k);
        if (k == "host") {
          has_host = true;
          if (!read_string(it.value(), fp, e, node.host)) continue;
          if (node.host.size() > 2 && node.host.front() == '[' && node.host.back() == ']') {
            node.host = node.host.substr(1, node.host.size() - 2);
          }
          std::string reason = check_hostname(node.host);
          if (!reason.empty()) fail(e, fp, reason);
        } else if (k == "port") {
          int port = 0;
          if (read_port(it.value(), fp, e, port)) node.port = static_cast<uint16_t>(port);
        } else if (k == "weight") {
          has_weight = true;
          read_int(it.value(), fp, e, 0, kIntMax, node.weight);
        } else if (k == "priority") {
          read_int(it.value(), fp, e, std::numeric_limits<int>::min(), kIntMax, node.priority);
        } else if (k == "metadata") {
          if (!it.value().is_object()) fail_type(e, fp, "a mapping", it.value());
        } else {
          fail_unknown(e, np, k, {"host", "port", "weight", "priority", "metadata"});
        }
      }
      if (!has_host) fail(e, np.key("host"), "is required");
      if (!has_weight) fail(e, np.key("weight"), "is required");
      if (e.total() != node_before) continue;
      keys.push_back(node_key(node));
      out.push_back(std::move(node));
    }
  } else {
    fail_type(e, p, "a mapping {\"host:port\": weight} or a list of {host, port, weight}", v);
    return;
  }
  if (e.total() != before) return;
  if (out.empty()) {
    fail(e, p, "must contain at least one node");
    return;
  }
  size_t first = 0;
  long dup = find_duplicate(keys, first);
  if (dup >= 0) {
    const size_t d = static_cast<size_t>(dup);
    const Path dp = v.is_array() ? p.index(d) : p.key(std::next(v.begin(), static_cast<long>(d)).key());
    fail(e, dp, "duplicate node " + keys[d] + " (the same address as node " + std::to_string(first) + ")");
  }
}

bool read_statuses(const json& v, const Path& p, Errors& e, std::vector<int>& out) {
  if (!v.is_array() || v.empty()) {
    fail_type(e, p, "a non-empty list of HTTP status codes", v);
    return false;
  }
  std::vector<int> statuses;
  bool ok = true;
  for (size_t i = 0; i < v.size(); ++i) {
    int status = 0;
    if (read_int(v[i], p.index(i), e, 200, 599, status)) {
      statuses.push_back(status);
    } else {
      ok = false;
    }
  }
  if (!ok) return false;
  size_t first = 0;
  long dup = find_duplicate(statuses, first);
  if (dup >= 0) {
    fail(e, p.index(static_cast<size_t>(dup)),
         "duplicate status " + std::to_string(statuses[static_cast<size_t>(dup)]) + " (already at index " +
             std::to_string(first) + ")");
    return false;
  }
  out = std::move(statuses);
  return true;
}

bool read_check_type(const json& v, const Path& p, Errors& e, std::string& out) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (s == "http" || s == "tcp") {
      out = s;
      return true;
    }
    if (s == "https") {
      fail(e, p, "health checks of type \"https\" are not supported by this version");
      return false;
    }
  }
  fail_type(e, p, "one of http, tcp", v);
  return false;
}

bool require_object(const json& v, const Path& p, Errors& e) {
  if (v.is_object()) return true;
  fail_type(e, p, "a mapping", v);
  return false;
}

std::string check_req_header(std::string_view h) {
  size_t colon = h.find(':');
  if (colon == 0 || colon == std::string_view::npos) return "must be \"Name: value\"";
  for (char c : h.substr(0, colon)) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) ||
          std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos)) {
      return "must be \"Name: value\" with a valid header name";
    }
  }
  for (char c : h) {
    if (c == '\r' || c == '\n' || c == '\0') return "must not contain CR, LF or NUL";
  }
  return {};
}

void read_active(const json& v, const Path& p, Errors& e, ActiveCheck& out) {
  if (!require_object(v, p, e)) return;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    const json& f = it.value();
    const Path fp = p.key(k);
    if (k == "type") {
      read_check_type(f, fp, e, out.type);
    } else if (k == "timeout") {
      read_seconds(f, fp, e, 0, true, out.timeout);
    } else if (k == "concurrency") {
      read_int(f, fp, e, 1, kMaxCount, out.concurrency);
    } else if (k == "http_path") {
      if (read_string(f, fp, e, out.http_path) && out.http_path.front() != '/')
        fail(e, fp, "must start with '/'");
    } else if (k == "host") {
      if (read_string(f, fp, e, out.host)) {
        std::string reason = check_hostname(out.host);
        if (!reason.empty()) fail(e, fp, reason);
      }
    } else if (k == "port") {
      read_port(f, fp, e, out.port);
    } else if (k == "req_headers") {
      read_string_list(f, fp, e, 1, out.req_headers, [&](const json& item, const Path& ip, std::string& h) {
        if (!read_string(item, ip, e, h)) return false;
        std::string reason = check_req_header(h);
        if (reason.empty()) return true;
        fail(e, ip, reason);
        return false;
      });
    } else if (k == "https_verify_certificate") {
      bool ignored = false;
      read_bool(f, fp, e, ignored);  // meaningful only for https checks, which are not supported
    } else if (k == "healthy") {
      if (!require_object(f, fp, e)) continue;
      for (auto h = f.begin(); h != f.end(); ++h) {
        const Path hp = fp.key(h.key());
        if (h.key() == "interval") {
          read_seconds(h.value(), hp, e, kMinCheckInterval, false, out.healthy.interval);
        } else if (h.key() == "successes") {
          read_int(h.value(), hp, e, 1, 254, out.healthy.successes);
        } else if (h.key() == "http_statuses") {
          read_statuses(h.value(), hp, e, out.healthy.http_statuses);
        } else {
          fail_unknown(e, fp, h.key(), {"interval", "successes", "http_statuses"});
        }
      }
    } else if (k == "unhealthy") {
      if (!require_object(f, fp, e)) continue;
      for (auto u = f.begin(); u != f.end(); ++u) {
        const Path up = fp.key(u.key());
        if (u.key() == "interval") {
          read_seconds(u.value(), up, e, kMinCheckInterval, false, out.unhealthy.interval);
        } else if (u.key() == "http_failures") {
          read_int(u.value(), up, e, 1, 254, out.unhealthy.http_failures);
        } else if (u.key() == "tcp_failures") {
          read_int(u.value(), up, e, 1, 254, out.unhealthy.tcp_failures);
        } else if (u.key() == "timeouts") {
          read_int(u.value(), up, e, 1, 254, out.unhealthy.timeouts);
        } else if (u.key() == "http_statuses") {
          read_statuses(u.value(), up, e, out.unhealthy.http_statuses);
        } else {
          fail_unknown(e, fp, u.key(),
                       {"interval", "http_failures", "tcp_failures", "timeouts", "http_statuses"});
        }
      }
    } else {
      fail_unknown(e, p, k,
                   {"type", "timeout", "concurrency", "http_path", "host", "port", "req_headers",
                    "https_verify_certificate", "healthy", "unhealthy"});
    }
  }
}

void read_passive(const json& v, const Path& p, Errors& e, PassiveCheck& out) {
  if (!require_object(v, p, e)) return;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    const json& f = it.value();
    const Path fp = p.key(k);
    if (k == "type") {
      read_check_type(f, fp, e, out.type);
    } else if (k == "healthy") {
      if (!require_object(f, fp, e)) continue;
      for (auto h = f.begin(); h != f.end(); ++h) {
        const Path hp = fp.key(h.key());
        if (h.key() == "successes") {
          read_int(h.value(), hp, e, 0, 254, out.healthy.successes);
        } else if (h.key() == "http_statuses") {
          read_statuses(h.value(), hp, e, out.healthy.http_statuses);
        } else {
          fail_unknown(e, fp, h.key(), {"successes", "http_statuses"});
        }
      }
    } else if (k == "unhealthy") {
      if (!require_object(f, fp, e)) continue;
      for (auto u = f.begin(); u != f.end(); ++u) {
        const Path up = fp.key(u.key());
        if (u.key() == "http_failures") {
          read_int(u.value(), up, e, 0, 254, out.unhealthy.http_failures);
        } else if (u.key() == "tcp_failures") {
          read_int(u.value(), up, e, 0, 254, out.unhealthy.tcp_failures);
        } else if (u.key() == "timeouts") {
          read_int(u.value(), up, e, 0, 254, out.unhealthy.timeouts);
        } else if (u.key() == "http_statuses") {
          read_statuses(u.value(), up, e, out.unhealthy.http_statuses);
        } else {
          fail_unknown(e, fp, u.key(), {"http_failures", "tcp_failures", "timeouts", "http_statuses"});
        }
      }
    } else {
      fail_unknown(e, p, k, {"type", "healthy", "unhealthy"});
    }
  }
}

void read_checks(const json& v, const Path& p, Errors& e, HealthChecks& out) {
  if (!require_object(v, p, e)) return;
  for (auto it = v.begin(); it != v.end(); ++it) {
    if (it.key() == "active") {
      read_active(it.value(), p.key("active"), e, out.active.emplace());
    } else if (it.key() == "passive") {
      read_passive(it.value(), p.key("passive"), e, out.passive.emplace());
    } else {
      fail_unknown(e, p, it.key(), {"active", "passive"});
    }
  }
  if (!out.active && !out.passive) fail(e, p, "must contain active and/or passive");
}

void read_keepalive(const json& v, const Path& p, Errors& e, KeepalivePool& out) {
  if (!require_object(v, p, e)) return;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const Path fp = p.key(it.key());
    if (it.key() == "size") {
      read_int(it.value(), fp, e, 1, kMaxCount, out.size);
    } else if (it.key() == "idle_timeout") {
      read_seconds(it.value(), fp, e, 0, false, out.idle_timeout);
    } else if (it.key() == "requests") {
      read_int(it.value(), fp, e, 1, kIntMax, out.requests);
    } else {
      fail_unknown(e, p, it.key(), {"size", "idle_timeout", "requests"});
    }
  }
}

bool is_hash_var(std::string_view key) {
  static constexpr std::string_view kVars[] = {"uri",         "server_name",   "server_addr",  "request_uri",
                                               "remote_port", "remote_addr",   "query_string", "host",
                                               "hostname",    "mqtt_client_id"};
  for (std::string_view var : kVars) {
    if (key == var) return true;
  }
  if (key.size() <= 4 || key.substr(0, 4) != "arg_") return false;
  for (char c : key.substr(4)) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  }
  return true;
}

bool is_token(std::string_view key) {
  if (key.empty()) return false;
  for (char c : key) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  }
  return true;
}

// `has_key`: the field is present; `key_ok`: it was read (a string), else its error is already reported.
void check_hash_key(const Upstream& u, bool has_key, bool key_ok, const Path& p, Errors& e) {
  if (u.type != LbType::chash || u.hash_on == HashOn::consumer) return;
  const Path kp = p.key("key");
  if (!has_key) {
    fail(e, kp, "is required when type is chash (e.g. \"remote_addr\", \"uri\", \"arg_user\")");
    return;
  }
  if (!key_ok) return;
  switch (u.hash_on) {
    case HashOn::vars:
      if (!is_hash_var(u.key)) {
        fail(e, kp,
             "with hash_on vars, must be one of uri, server_name, server_addr, request_uri, remote_port, "
             "remote_addr, query_string, host, hostname, mqtt_client_id, or arg_<name>; got \"" +
                 u.key + "\"");
      }
      break;
    case HashOn::header:
    case HashOn::cookie:
      if (!is_token(u.key)) fail(e, kp, "must be a header or cookie name (letters, digits, '-', '_')");
      break;
    case HashOn::vars_combinations:
      if (u.key.find('$') == std::string::npos) {
        fail(e, kp, "with hash_on vars_combinations, must combine variables like \"$host$request_uri\"");
      }
      break;
    case HashOn::consumer:
      break;
  }
}

}  // namespace

bool read_timeout(const json& v, const Path& p, Errors& e, Timeout& out) {
  if (!require_object(v, p, e)) return false;
  const size_t before = e.total();
  for (auto it = v.begin(); it != v.end(); ++it) {
    const Path fp = p.key(it.key());
    if (it.key() == "connect") {
      read_seconds(it.value(), fp, e, 0, true, out.connect);
    } else if (it.key() == "send") {
      read_seconds(it.value(), fp, e, 0, true, out.send);
    } else if (it.key() == "read") {
      read_seconds(it.value(), fp, e, 0, true, out.read);
    } else {
      fail_unknown(e, p, it.key(), {"connect", "send", "read"});
    }
  }
  return e.total() == before;
}

std::optional<Upstream> upstream_at(const json& v, const Path& p, Errors& e, bool inline_upstream,
                                    const ValidateOptions& options) {
  if (!v.is_object()) {
    fail_type(e, p, "a mapping (an upstream)", v);
    return std::nullopt;
  }
  static constexpr std::pair<std::string_view, LbType> kTypes[] = {{"roundrobin", LbType::roundrobin},
                                                                   {"chash", LbType::chash},
                                                                   {"least_conn", LbType::least_conn},
                                                                   {"ewma", LbType::ewma}};
  static constexpr std::pair<std::string_view, HashOn> kHashOn[] = {
      {"vars", HashOn::vars},
      {"header", HashOn::header},
      {"cookie", HashOn::cookie},
      {"consumer", HashOn::consumer},
      {"vars_combinations", HashOn::vars_combinations}};
  static constexpr std::pair<std::string_view, PassHost> kPassHost[] = {
      {"pass", PassHost::pass}, {"node", PassHost::node}, {"rewrite", PassHost::rewrite}};

  const size_t before = e.total();
  Upstream u;
  bool has_id = false, has_nodes = false, has_key = false, key_ok = false, has_upstream_host = false;
  bool discovery = false;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    const json& f = it.value();
    const Path fp = p.key(k);
    if (k == "id") {
      has_id = true;
      if (inline_upstream) {
        fail(e, fp,
             "an upstream written inline has no id; to share an upstream, define it under `upstreams` and "
             "reference it with upstream_id");
      } else {
        read_id(f, fp, e, u.id);
      }
    } else if (k == "nodes") {
      has_nodes = true;
      read_nodes(f, fp, e, u.nodes);
    } else if (k == "type") {
      read_enum(f, fp, e, kTypes, u.type);
    } else if (k == "hash_on") {
      read_enum(f, fp, e, kHashOn, u.hash_on);
    } else if (k == "key") {
      has_key = true;
      key_ok = read_string(f, fp, e, u.key);
    } else if (k == "checks") {
      read_checks(f, fp, e, u.checks.emplace());
    } else if (k == "retries") {
      read_int(f, fp, e, 0, kMaxCount, u.retries);
    } else if (k == "retry_timeout") {
      read_seconds(f, fp, e, 0, false, u.retry_timeout);
    } else if (k == "timeout") {
      read_timeout(f, fp, e, u.timeout.emplace());
    } else if (k == "scheme") {
      if (f.is_string() && f.get_ref<const std::string&>() == "http") {
        u.scheme = "http";
      } else if (f.is_string() &&
                 (f.get_ref<const std::string&>() == "https" || f.get_ref<const std::string&>() == "grpc" ||
                  f.get_ref<const std::string&>() == "grpcs")) {
        fail(e, fp,
             "scheme \"" + f.get<std::string>() + "\" is not supported by this version (only \"http\")");
      } else {
        fail_type(e, fp, "\"http\"", f);
      }
    } else if (k == "pass_host") {
      read_enum(f, fp, e, kPassHost, u.pass_host);
    } else if (k == "upstream_host") {
      has_upstream_host = true;
      if (read_string(f, fp, e, u.upstream_host)) {
        std::string host;
        uint16_t port = 0;
        bool has_port = false;
        std::string reason = split_host_port(u.upstream_host, host, port, has_port);
        if (!reason.empty()) fail(e, fp, reason);
      }
    } else if (k == "keepalive_pool") {
      read_keepalive(f, fp, e, u.keepalive_pool);
    } else if (k == "name") {
      read_name(f, fp, e, u.name);
    } else if (check_meta_field(k, f, fp, e)) {
    } else if (k == "service_name" || k == "discovery_type" || k == "discovery_args") {
      if (!discovery)
        fail(e, fp, "service discovery is not supported by this version; list the nodes instead");
      discovery = true;
    } else if (k == "tls") {
      fail(e, fp, "upstream TLS is not supported by this version");
    } else {
      fail_unknown(e, p, k,
                   {"id", "name", "desc", "labels", "type", "nodes", "hash_on", "key", "checks", "retries",
                    "retry_timeout", "timeout", "scheme", "pass_host", "upstream_host", "keepalive_pool"});
    }
  }
  if (!has_id && !inline_upstream && options.id_required) fail(e, p.key("id"), "is required");
  if (!has_nodes && !discovery) fail(e, p.key("nodes"), "is required");
  check_hash_key(u, has_key, key_ok, p, e);
  if (u.pass_host == PassHost::rewrite && !has_upstream_host) {
    fail(e, p.key("upstream_host"), "is required when pass_host is \"rewrite\"");
  }
  if (e.total() != before) return std::nullopt;
  return u;
}

}  // namespace detail

std::optional<Upstream> validate_upstream(const nlohmann::json& upstream, std::string_view path_prefix,
                                          Errors& errors, const ValidateOptions& options) {
  return detail::upstream_at(upstream, detail::Path(path_prefix), errors, false, options);
}

}  // namespace portico::config
