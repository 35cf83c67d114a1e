// The declarative configuration model: plain structs mirroring APISIX's resource shapes (routes, services,
// upstreams, consumers, ssls, global rules, plugin configs) after validation and defaulting. Produced by
// config/loader.h, consumed by snapshot/ to build the runtime (router, balancers). Values are immutable once
// loaded; a Config is owned by the snapshot built from it. No behaviour lives here.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace portico::config {

// One entry of a `plugins` mapping (routes, services, plugin configs, global rules, consumers), validated
// against the plugin's schema (config/plugin_catalog.h) with its defaults applied. client-control is not
// listed here: it is folded into max_body_size. The configuration is shared (copies of a model share it) and
// never changed after validation; src/plugins/ compiles it into a runtime plugin when a snapshot is built.
struct PluginSpec {
  std::string name;
  std::shared_ptr<const nlohmann::json> conf;  // the plugin's configuration object, without `_meta`
  bool disabled = false;                       // `_meta.disable`: configured but not run
  int priority = 0;                            // the catalog's priority, or `_meta.priority`
};
// Sorted by name; names are unique.
using PluginMap = std::vector<PluginSpec>;

// Seconds, as APISIX expresses them (fractions allowed).
struct Timeout {
  double connect = 60;
  double send = 60;
  double read = 60;

  bool operator==(const Timeout&) const = default;
};

struct Node {
  std::string host;  // IP literal or DNS name, as written (IPv6 without brackets)
  uint16_t port = 80;
  int weight = 1;    // 0 = never picked
  int priority = 0;  // higher first; lower tiers serve only when every higher node is down or tried

  bool operator==(const Node&) const = default;
};

enum class LbType { roundrobin, chash, least_conn, ewma };
enum class HashOn { vars, header, cookie, consumer, vars_combinations };
enum class PassHost { pass, node, rewrite };

struct KeepalivePool {
  int size = 320;            // idle connections kept per node, per worker
  double idle_timeout = 60;  // seconds an idle pooled connection is kept
  int requests = 1000;       // requests per upstream connection before it is closed

  bool operator==(const KeepalivePool&) const = default;
};

struct ActiveHealthy {
  double interval = 1;  // seconds between probes while healthy
  int successes = 2;    // consecutive successes that bring a node back
  std::vector<int> http_statuses = {200, 302};

  bool operator==(const ActiveHealthy&) const = default;
};

struct ActiveUnhealthy {
  double interval = 1;  // seconds between probes while unhealthy
  int http_failures = 5;
  int tcp_failures = 2;
  int timeouts = 3;
  std::vector<int> http_statuses = {429, 404, 500, 501, 502, 503, 504, 505};

  bool operator==(const ActiveUnhealthy&) const = default;
};

struct ActiveCheck {
  std::string type = "http";  // "http" (GET http_path), "https" (the same over TLS) or "tcp" (connect only)
  bool https_verify_certificate = true;  // https: verify the node's certificate (APISIX's default: true)
  double timeout = 1;
  int concurrency = 10;
  std::string http_path = "/";
  std::string host;                      // Host header of the probe; empty = the node's host
  int port = 0;                          // 0 = the node's port
  std::vector<std::string> req_headers;  // "Name: value"
  ActiveHealthy healthy;
  ActiveUnhealthy unhealthy;

  bool operator==(const ActiveCheck&) const = default;
};

struct PassiveHealthy {
  std::vector<int> http_statuses = {200, 201, 202, 203, 204, 205, 206, 207, 208, 226,
                                    300, 301, 302, 303, 304, 305, 306, 307, 308};
  int successes = 5;

  bool operator==(const PassiveHealthy&) const = default;
};

struct PassiveUnhealthy {
  std::vector<int> http_statuses = {429, 500, 503};
  int tcp_failures = 2;
  int timeouts = 7;
  int http_failures = 5;

  bool operator==(const PassiveUnhealthy&) const = default;
};

struct PassiveCheck {
  std::string type = "http";
  PassiveHealthy healthy;
  PassiveUnhealthy unhealthy;

  bool operator==(const PassiveCheck&) const = default;
};

struct HealthChecks {
  std::optional<ActiveCheck> active;
  std::optional<PassiveCheck> passive;

  bool operator==(const HealthChecks&) const = default;
};

// APISIX's upstream `tls`: a client certificate for mTLS (inline, or an `ssls` of type client by id) and
// whether to verify the node's certificate.
struct UpstreamTls {
  std::string client_cert;     // PEM; with client_key
  std::string client_key;      // PEM
  std::string client_cert_id;  // an ssl of type client (instead of client_cert/client_key)
  bool verify = false;         // APISIX's default

  bool operator==(const UpstreamTls&) const = default;
};

struct Upstream {
  std::string id;  // empty for an upstream written inline in a route or service
  std::string name;
  LbType type = LbType::roundrobin;
  std::vector<Node> nodes;
  HashOn hash_on = HashOn::vars;
  std::string key;  // chash: the variable / header / cookie name, e.g. "remote_addr", "uri", "arg_user"
  std::optional<HealthChecks> checks;
  int retries = -1;          // -1 = APISIX default: number of nodes - 1
  double retry_timeout = 0;  // seconds for all tries together; 0 = unlimited
  std::optional<Timeout> timeout;
  std::string scheme = "http";  // "http", "https", or "grpc" / "grpcs" (HTTP/2, plain or TLS: docs/grpc.md)
  std::optional<UpstreamTls> tls;
  PassHost pass_host = PassHost::pass;
  std::string upstream_host;  // with pass_host = rewrite
  KeepalivePool keepalive_pool;

  bool operator==(const Upstream&) const = default;
};

// One `vars` expression: [var, op, value] or [var, "!", op, value].
struct VarExpr {
  enum class Op { eq, ne, gt, ge, lt, le, regex, regex_nocase, in, has };
  std::string var;  // e.g. "http_x_user" (header), "arg_page" (query), "cookie_sid", "uri", "host", ...
  Op op = Op::eq;
  bool negate = false;
  std::vector<std::string> values;  // one value, or the list of `in`
};

struct Route {
  std::string id;
  std::string name;
  std::vector<std::string> uris;          // "/exact", "/prefix/*", "/users/:id"
  std::vector<std::string> hosts;         // "api.example.com", "*.example.com"; lower-cased
  std::vector<std::string> methods;       // upper-case; empty = any
  std::vector<std::string> remote_addrs;  // "10.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"
  std::vector<VarExpr> vars;
  int priority = 0;                  // higher wins among routes matching the same request
  bool enabled = true;               // status: 1
  std::optional<Upstream> upstream;  // inline upstream
  std::string upstream_id;
  std::string service_id;
  std::string plugin_config_id;    // empty = none; its plugins are already folded in (max_body_size)
  std::optional<Timeout> timeout;  // overrides the upstream's
  // bytes; -1 = the listener default (413 above it). From the client-control plugin. check_config already
  // applied the precedence route > plugin config > service > global rules: when the route sets none, this is
  // the first of those that sets one. client-control's 0 means "no limit" in APISIX and is stored as
  // INT64_MAX, so 0 never reaches here.
  int64_t max_body_size = -1;
  int64_t own_max_body_size = -1;  // the route's own client-control limit, before the folding above
  bool enable_websocket = false;   // Upgrade: websocket requests are tunnelled
  PluginMap plugins;               // its own plugins (merged with its plugin config's and service's at build)
};

struct Service {
  std::string id;
  std::string name;
  std::optional<Upstream> upstream;
  std::string upstream_id;
  std::vector<std::string> hosts;  // used when a route names no host of its own
  int64_t max_body_size = -1;      // its client-control plugin, as Route's; already folded into its routes
  bool enable_websocket =
      false;  // Upgrade: websocket requests are tunnelled (for routes naming this service)
  PluginMap plugins;
};

// APISIX `labels`: name -> value, sorted by name.
using Labels = std::vector<std::pair<std::string, std::string>>;

// A consumer (APISIX `consumers`), keyed by its username; it has no id.
struct Consumer {
  std::string username;  // [A-Za-z0-9_-], 1..256 characters; unique among consumers
  std::string desc;
  Labels labels;
  // Its client-control plugin (bytes, -1 = none, as Route's). Validated and kept, but not applied: Portico
  // decides the body limit before the plugins run (413 before authentication), so a consumer's own limit is
  // not enforced (docs/plugins.md).
  int64_t max_body_size = -1;
  // Its plugins: the credentials of auth plugins (key-auth's key, ...; validated with the plugin's consumer
  // schema, secret fields decrypted) and other plugins that run for requests authenticated as this consumer.
  PluginMap plugins;
};

// A credential of a consumer (APISIX 3.x `/consumers/<username>/credentials/<id>`): one authentication
// plugin's consumer-side configuration, authenticating as that consumer (its other plugins, labels, ...).
// A consumer may hold several, of the same plugin or of different ones, next to those in its own `plugins`.
struct Credential {
  // "<username>/credentials/<credential id>": the path of its etcd key below `consumers/`, unique among
  // credentials (the key of standalone files and of the sync document).
  std::string id;
  std::string username;       // the consumer it belongs to
  std::string credential_id;  // its own id: sent upstream as X-Credential-Identifier
  std::string name;
  std::string desc;
  Labels labels;
  PluginMap plugins;  // at most one, an auth plugin (consumer schema, secret fields decrypted)
};

enum class SslType { server, client };

// A certificate (APISIX `ssls`). Every cert/key pair has been checked: the certificate (and any chain after
// it) parses, the key parses and is unencrypted, and the key matches the certificate's public key.
struct Ssl {
  std::string id;
  SslType type = SslType::server;  // server: presented to clients by SNI; client: for upstream mTLS
  std::string cert;                // PEM: the certificate, optionally followed by its chain
  std::string key;                 // PEM private key of `cert`
  std::vector<std::string> certs;  // more pairs for the same SNIs (e.g. ECDSA next to RSA);
  std::vector<std::string> keys;   // keys[i] belongs to certs[i]
  // Lower-cased: "api.example.com", "*.example.com" (one leading label), "*" (any name). `sni` is folded in
  // here. Non-empty for type server; may be empty for type client.
  std::vector<std::string> snis;
  bool enabled = true;  // status: 1
  // client (APISIX mTLS to clients): the CA (PEM, one or more certificates) client certificates must chain
  // to, and the verification depth. Empty `client_ca`: no client certificate is asked for.
  std::string client_ca;
  int client_depth = 1;
  // client.skip_mtls_uri_regex: PCRE2 patterns (checked to compile). Non-empty: the handshake asks for a
  // client certificate without requiring one, and a request without a verified one is refused (400) unless
  // its path matches one of them (APISIX verify_https_client).
  std::vector<std::string> skip_mtls_uri_regex;
  // ssl_protocols: the TLS versions the handshakes for these names offer, as OpenSSL versions
  // (TLS1_2_VERSION, TLS1_3_VERSION), ascending; empty: every version Portico speaks (1.2 and 1.3).
  std::vector<int> ssl_protocols;
};

// A global rule (APISIX `global_rules`): plugins run for every request.
struct GlobalRule {
  std::string id;
  // client-control (bytes, -1 = none). check_config already folded it into every route that sets no limit
  // through its own plugins, its plugin config or its service; with several, the last rule in
  // Config::global_rules that sets one wins (APISIX runs global rules in order, the last write sticks).
  int64_t max_body_size = -1;
  PluginMap plugins;
};

// A plugin config (APISIX `plugin_configs`): plugins shared by the routes naming it in plugin_config_id.
struct PluginConfig {
  std::string id;
  std::string name;
  std::string desc;
  Labels labels;
  int64_t max_body_size = -1;  // client-control, as Route's; already folded into its routes
  PluginMap plugins;
};

struct Config {
  std::vector<Route> routes;
  std::vector<Service> services;
  std::vector<Upstream> upstreams;
  std::vector<Consumer> consumers;
  std::vector<Ssl> ssls;
  std::vector<GlobalRule> global_rules;
  std::vector<PluginConfig> plugin_configs;
  std::vector<Credential> credentials;  // each one's consumer is in `consumers`
};

}  // namespace portico::config
