// Upstreams: nodes (map and list forms), load-balancing settings, health checks, timeouts, keepalive pool.
// Checked as the other schema-declared resources are (validate_resources.cc): the schema first
// (resource_schemas.cc), then what it cannot say, then the model.
#include <cctype>
#include <charconv>
#include <limits>

#include "config/resource_schemas.h"
#include "config/resources.h"
#include "config/schema.h"
#include "config/secrets.h"
#include "tls/client_context.h"

namespace portico::config {
namespace detail {
namespace {

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

// A number the schema accepted as an integer (5.0 included) as an int; its bounds are the schema's.
int as_int(const json& v) {
  return v.is_number_float() ? static_cast<int>(v.get<double>()) : static_cast<int>(v.get<int64_t>());
}

const json* member(const json& v, std::string_view key) {
  if (!v.is_object()) return nullptr;
  auto it = v.find(key);
  return it == v.end() ? nullptr : &*it;
}

// The schema takes 80.0 as an integer; a port is part of an address, where a float is a client bug.
// Silent for what the schema already refused.
bool check_port_text(const json& v, const Path& p, Errors& e) {
  if (!v.is_number_float() || !json_type_is(v, "integer")) return true;
  const double d = v.get<double>();
  if (d < 1 || d > 65535) return true;
  fail_type(e, p, "an integer from 1 to 65535 (written without a fraction)", v);
  return false;
}

// The nodes the schema accepted the shape of: host names and addresses, duplicates, at least one node.
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
      if (!json_type_is(it.value(), "integer")) continue;
      node.weight = as_int(it.value());
      keys.push_back(node_key(node));
      out.push_back(std::move(node));
    }
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      const Path np = p.index(i);
      const json& item = v[i];
      Node node;
      const json* host = member(item, "host");
      if (host == nullptr || !host->is_string()) continue;
      node.host = host->get<std::string>();
      if (node.host.size() > 2 && node.host.front() == '[' && node.host.back() == ']') {
        node.host = node.host.substr(1, node.host.size() - 2);
      }
      if (std::string reason = check_hostname(node.host); !reason.empty()) {
        fail(e, np.key("host"), reason);
        continue;
      }
      if (const json* port = member(item, "port")) {
        if (!check_port_text(*port, np.key("port"), e) || !json_type_is(*port, "integer")) continue;
        node.port = static_cast<uint16_t>(as_int(*port));
      }
      const json* weight = member(item, "weight");
      if (weight == nullptr || !json_type_is(*weight, "integer")) continue;
      node.weight = as_int(*weight);
      if (const json* priority = member(item, "priority"); priority && json_type_is(*priority, "integer"))
        node.priority = as_int(*priority);
      keys.push_back(node_key(node));
      out.push_back(std::move(node));
    }
  } else {
    return;
  }
  if (e.total() != before) return;
  if (v.empty()) {
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

// What the schema accepted of a status list, as ints (it refused out-of-range codes); duplicates are
// reported here, at the repeated status.
void read_statuses(const json* v, const Path& p, Errors& e, std::vector<int>& out) {
  if (v == nullptr || !v->is_array()) return;
  std::vector<int> statuses;
  for (const json& status : *v) {
    if (!json_type_is(status, "integer")) return;
    statuses.push_back(as_int(status));
  }
  size_t first = 0;
  if (long dup = find_duplicate(statuses, first); dup >= 0) {
    fail(e, p.index(static_cast<size_t>(dup)),
         "duplicate status " + std::to_string(statuses[static_cast<size_t>(dup)]) + " (already at index " +
             std::to_string(first) + ")");
    return;
  }
  out = std::move(statuses);
}

void read_int_field(const json& v, std::string_view key, int& out) {
  if (const json* f = member(v, key); f != nullptr && json_type_is(*f, "integer")) out = as_int(*f);
}

void read_number_field(const json& v, std::string_view key, double& out) {
  if (const json* f = member(v, key); f != nullptr && f->is_number()) out = f->get<double>();
}

void read_check_type(const json& v, std::string& out) {
  const json* type = member(v, "type");
  if (type == nullptr || !type->is_string()) return;
  out = type->get<std::string>();
}

void read_active(const json& v, const Path& p, Errors& e, ActiveCheck& out) {
  read_check_type(v, out.type);
  if (const json* verify = member(v, "https_verify_certificate"); verify != nullptr && verify->is_boolean())
    out.https_verify_certificate = verify->get<bool>();
  read_number_field(v, "timeout", out.timeout);
  read_int_field(v, "concurrency", out.concurrency);
  if (const json* path = member(v, "http_path"); path != nullptr && path->is_string()) {
    out.http_path = path->get<std::string>();
    if (out.http_path.empty() || out.http_path.front() != '/')
      fail(e, p.key("http_path"), "must start with '/'");
  }
  if (const json* host = member(v, "host"); host != nullptr && host->is_string()) {
    out.host = host->get<std::string>();
    if (std::string reason = check_hostname(out.host); !reason.empty()) fail(e, p.key("host"), reason);
  }
  if (const json* port = member(v, "port"); port != nullptr && check_port_text(*port, p.key("port"), e))
    read_int_field(v, "port", out.port);
  if (const json* headers = member(v, "req_headers"); headers != nullptr && headers->is_array()) {
    const Path hp = p.key("req_headers");
    const size_t before = e.total();
    for (size_t i = 0; i < headers->size(); ++i) {
      const json& h = (*headers)[i];
      if (!h.is_string()) continue;
      if (std::string reason = check_req_header(h.get_ref<const std::string&>()); !reason.empty()) {
        fail(e, hp.index(i), reason);
      } else {
        out.req_headers.push_back(h.get<std::string>());
      }
    }
    size_t first = 0;
    long dup = e.total() == before ? find_duplicate(out.req_headers, first) : -1;
    if (dup >= 0) {
      fail(e, hp.index(static_cast<size_t>(dup)),
           "duplicate \"" + out.req_headers[static_cast<size_t>(dup)] + "\" (already at index " +
               std::to_string(first) + ")");
    }
  }
  if (const json* healthy = member(v, "healthy")) {
    read_number_field(*healthy, "interval", out.healthy.interval);
    read_int_field(*healthy, "successes", out.healthy.successes);
    read_statuses(member(*healthy, "http_statuses"), p.key("healthy").key("http_statuses"), e,
                  out.healthy.http_statuses);
  }
  if (const json* unhealthy = member(v, "unhealthy")) {
    read_number_field(*unhealthy, "interval", out.unhealthy.interval);
    read_int_field(*unhealthy, "http_failures", out.unhealthy.http_failures);
    read_int_field(*unhealthy, "tcp_failures", out.unhealthy.tcp_failures);
    read_int_field(*unhealthy, "timeouts", out.unhealthy.timeouts);
    read_statuses(member(*unhealthy, "http_statuses"), p.key("unhealthy").key("http_statuses"), e,
                  out.unhealthy.http_statuses);
  }
}

void read_passive(const json& v, const Path& p, Errors& e, PassiveCheck& out) {
  read_check_type(v, out.type);
  if (const json* healthy = member(v, "healthy")) {
    read_int_field(*healthy, "successes", out.healthy.successes);
    read_statuses(member(*healthy, "http_statuses"), p.key("healthy").key("http_statuses"), e,
                  out.healthy.http_statuses);
  }
  if (const json* unhealthy = member(v, "unhealthy")) {
    read_int_field(*unhealthy, "http_failures", out.unhealthy.http_failures);
    read_int_field(*unhealthy, "tcp_failures", out.unhealthy.tcp_failures);
    read_int_field(*unhealthy, "timeouts", out.unhealthy.timeouts);
    read_statuses(member(*unhealthy, "http_statuses"), p.key("unhealthy").key("http_statuses"), e,
                  out.unhealthy.http_statuses);
  }
}

void read_keepalive(const json& v, KeepalivePool& out) {
  read_int_field(v, "size", out.size);
  read_number_field(v, "idle_timeout", out.idle_timeout);
  read_int_field(v, "requests", out.requests);
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

// APISIX's dependencies: client_cert and client_key go together, client_cert_id replaces both. The PEM
// texts are loaded as the proxy will load them (a client TLS context), so what passes here connects.
void read_upstream_tls(const json& v, const Path& p, Errors& e, UpstreamTls& out) {
  const json* cert = member(v, "client_cert");
  const json* key = member(v, "client_key");
  const json* id = member(v, "client_cert_id");
  if (const json* verify = member(v, "verify"); verify != nullptr && verify->is_boolean())
    out.verify = verify->get<bool>();
  if (id != nullptr) {
    if (cert != nullptr || key != nullptr) {
      fail(e, p.key("client_cert_id"), "set either client_cert_id or client_cert and client_key, not both");
      return;
    }
    out.client_cert_id = peek_id(*id);
    return;
  }
  if ((cert == nullptr) != (key == nullptr)) {
    fail(e, p.key(cert == nullptr ? "client_cert" : "client_key"),
         cert == nullptr ? "is required with client_key" : "is required with client_cert");
    return;
  }
  if (cert == nullptr || !cert->is_string() || !key->is_string()) return;
  out.client_cert = cert->get<std::string>();
  out.client_key = key->get<std::string>();
  if (is_encrypted_secret(out.client_key)) {  // as the Admin API stores it (plugin_secrets.h)
    std::string plain, why;
    if (!decrypt_secret(out.client_key, plain, &why)) {
      fail(e, p.key("client_key"), "cannot be decrypted: " + why);
      return;
    }
    out.client_key = std::move(plain);
  }
  tls::ClientTlsSpec spec;
  spec.cert_pem = out.client_cert;
  spec.key_pem = out.client_key;
  std::string reason;
  if (!tls::ClientContext::build(spec, &reason)) {
    const bool key_side = reason.starts_with("client key");
    fail(e, p.key(key_side ? "client_key" : "client_cert"), reason);
  }
}

}  // namespace

// The schema first (types, enums, bounds, closed objects), then what it cannot say (the refusals with their
// reasons, host names and addresses, the hash key, node duplicates, ports written as floats), reading the
// model as it goes; every error is reported, and nothing is returned if there was one.
std::optional<Upstream> upstream_at(const json& v, const Path& p, Errors& e, bool inline_upstream,
                                    const ValidateOptions& options) {
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
  const auto pick = [](const json* f, const auto& names, auto& out) {
    if (f == nullptr || !f->is_string()) return;
    for (const auto& [name, value] : names) {
      if (*f == name) out = value;
    }
  };

  const size_t before = e.total();
  resource_schema(ResourceKind::upstream, options.id_required && !inline_upstream).check(v, p, e);
  if (!v.is_object()) return std::nullopt;
  Upstream u;
  if (const json* id = member(v, "id")) {
    if (inline_upstream) {
      fail(e, p.key("id"),
           "an upstream written inline has no id; to share an upstream, define it under `upstreams` and "
           "reference it with upstream_id");
    } else {
      check_integer_id(v, p, e);
      u.id = peek_id(*id);
    }
  }
  bool discovery = false;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    if (k == "service_name" || k == "discovery_type" || k == "discovery_args") {
      if (!discovery) {
        fail(e, p.key(k), "service discovery is not supported by this version; list the nodes instead");
      }
      discovery = true;
    }
  }
  if (const json* scheme = member(v, "scheme"); scheme != nullptr && scheme->is_string()) {
    if (*scheme == "http" || *scheme == "https" || *scheme == "grpc" || *scheme == "grpcs") {
      u.scheme = scheme->get<std::string>();
    } else {
      fail(e, p.key("scheme"),
           "scheme \"" + scheme->get<std::string>() +
               "\" is not supported by this version (only \"http\", \"https\", \"grpc\" and \"grpcs\")");
    }
  }
  if (const json* tls = member(v, "tls"); tls != nullptr && tls->is_object())
    read_upstream_tls(*tls, p.key("tls"), e, u.tls.emplace());
  if (const json* nodes = member(v, "nodes")) {
    read_nodes(*nodes, p.key("nodes"), e, u.nodes);
  } else if (!discovery) {
    fail(e, p.key("nodes"), "property \"nodes\" is required");
  }
  pick(member(v, "type"), kTypes, u.type);
  pick(member(v, "hash_on"), kHashOn, u.hash_on);
  pick(member(v, "pass_host"), kPassHost, u.pass_host);
  const json* key = member(v, "key");
  const bool key_ok = key != nullptr && key->is_string() && !key->get_ref<const std::string&>().empty();
  if (key_ok) u.key = key->get<std::string>();
  check_hash_key(u, key != nullptr, key_ok, p, e);
  if (const json* checks = member(v, "checks")) {
    HealthChecks& hc = u.checks.emplace();
    if (const json* active = member(*checks, "active"); active != nullptr && active->is_object())
      read_active(*active, p.key("checks").key("active"), e, hc.active.emplace());
    if (const json* passive = member(*checks, "passive"); passive != nullptr && passive->is_object())
      read_passive(*passive, p.key("checks").key("passive"), e, hc.passive.emplace());
  }
  read_int_field(v, "retries", u.retries);
  read_number_field(v, "retry_timeout", u.retry_timeout);
  if (const json* timeout = member(v, "timeout"); timeout != nullptr && timeout->is_object()) {
    Timeout& t = u.timeout.emplace();
    read_number_field(*timeout, "connect", t.connect);
    read_number_field(*timeout, "send", t.send);
    read_number_field(*timeout, "read", t.read);
  }
  if (const json* host = member(v, "upstream_host"); host != nullptr && host->is_string()) {
    u.upstream_host = host->get<std::string>();
    std::string h;
    uint16_t port = 0;
    bool has_port = false;
    if (std::string reason = split_host_port(u.upstream_host, h, port, has_port); !reason.empty())
      fail(e, p.key("upstream_host"), reason);
  }
  if (u.pass_host == PassHost::rewrite && member(v, "upstream_host") == nullptr) {
    fail(e, p.key("upstream_host"), "is required when pass_host is \"rewrite\"");
  }
  if (const json* pool = member(v, "keepalive_pool"); pool != nullptr && pool->is_object())
    read_keepalive(*pool, u.keepalive_pool);
  if (const json* name = member(v, "name"); name != nullptr && name->is_string())
    u.name = name->get<std::string>();
  if (e.total() != before) return std::nullopt;
  return u;
}

}  // namespace detail

std::optional<Upstream> validate_upstream(const nlohmann::json& upstream, std::string_view path_prefix,
                                          Errors& errors, const ValidateOptions& options) {
  return detail::upstream_at(upstream, detail::Path(path_prefix), errors, false, options);
}

std::optional<Upstream> validate_inline_upstream(const nlohmann::json& upstream, std::string_view path_prefix,
                                                 Errors& errors) {
  return detail::upstream_at(upstream, detail::Path(path_prefix), errors, true, ValidateOptions{});
}

}  // namespace portico::config
