// The control plane's HTTP front: a listener on its own thread and event loop that parses requests strictly
// (http/parser.h), enforces the client allow-list and the keys and their roles, and hands each authorised
// request to a blocking handler on a thread pool, so a slow etcd call never stalls other clients or the
// proxy; a handler with nothing to answer yet (a data plane's long poll) returns a Deferred and the wait
// holds no thread. It knows nothing about resources or etcd: the handler does. Two instances run in a control
// plane: the Admin API (/apisix/admin, X-API-KEY, admin and viewer keys) and the data-plane sync listener
// (/portico/v1, bearer tokens of the data_plane role).
//
// Listener limits: AdminServerOptions (connection caps, unauthenticated connections), lowered by listen() to
// fit RLIMIT_NOFILE. Out of descriptors, the listener closes its oldest unauthenticated connection and
// accepts again; with none to close, and on any other accept error but a failed connection, it backs off
// (base/accept_backoff.h) and counts as a paused listener for readiness. Each connection's deadline is a
// watchdog whose handler shares no memory with the connection's coroutine, so an expiry already queued when
// the connection ends or re-arms does nothing.
//
// TLS (AdminServerOptions::tls, tls/control_tls.h): with a certificate the listener speaks HTTPS only; the
// handshake runs under the unauthenticated head deadline. With a client CA it asks for client certificates,
// and with certificate_authenticates a request that presents no key is authenticated by the verified
// certificate's identity (its first DNS subjectAltName; its CN only without a SAN extension) with
// certificate_role: mutual TLS in place of a key. A key, when presented, is checked as without TLS and
// decides the principal.
//
// Contract: listen() then start() from the owning thread; stop() is idempotent and joins every thread. The
// handler runs on a pool thread and may block (bounded by its own timeouts).
#pragma once

#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace portico::admin {

enum class Role { viewer, admin, data_plane };

struct AdminKey {
  std::string key;
  Role role = Role::admin;
  std::string
      name;  // who holds it (a data plane's node id); handed to the handler as AdminRequest::principal
};

enum class KeyScheme {
  api_key,  // X-API-KEY: <key> (APISIX's Admin API)
  bearer,   // Authorization: Bearer <key>
};

struct AdminTlsOptions {
  std::string cert_file;  // PEM certificate and chain; empty: plain HTTP
  std::string key_file;
  std::string client_ca_file;        // ask clients for a certificate signed by this CA bundle
  bool require_client_cert = false;  // a client without one fails the handshake
  bool certificate_authenticates = false;
  Role certificate_role = Role::data_plane;
  // Refuses an identity (an error message for the 401) or accepts it (empty); null accepts any.
  std::function<std::string(const std::string& identity)> check_identity;
  bool enabled() const { return !cert_file.empty(); }
};

struct AdminServerOptions {
  std::string listen = "127.0.0.1:9180";
  std::string path_prefix = "/apisix/admin";  // other paths get 404
  KeyScheme key_scheme = KeyScheme::api_key;
  std::vector<std::string> allow_admin = {"127.0.0.0/8", "::1/128"};  // client networks; others get 403
  std::vector<AdminKey> keys;          // at least one (none only with tls.certificate_authenticates)
  size_t max_body_size = 1536 * 1024;  // 413 above (etcd refuses requests over 1.5 MiB by default)
  unsigned handler_threads = 4;
  // Seconds, once authenticated: the wait for a request and its whole head and body (the first authenticated
  // request's body gets a fresh one after its head), and the write of each response.
  double idle_timeout = 60;
  // Past it the oldest unauthenticated one makes room, or the newcomer is closed. listen() lowers it to half
  // of the soft RLIMIT_NOFILE, and the unauthenticated caps below to a quarter (logged when it does).
  size_t max_connections = 1024;
  // A connection is unauthenticated until one of its requests presented a valid key. Anyone who can reach the
  // port can open one, so they get little: a deadline for the whole first head (not re-armed by reads; the
  // 403 path keeps its 5 s) and caps, per client address and in total. At a cap the OLDEST unauthenticated
  // connection is closed to make room, never the newcomer: a real client sends its head at once and
  // authenticates, so it gets in even while someone keeps the listener full of idle connections.
  double unauthenticated_timeout = 10;         // seconds
  size_t max_unauthenticated = 256;            // in total
  size_t max_unauthenticated_per_source = 32;  // per client IP address
  AdminTlsOptions tls;
};

struct AdminRequest {
  std::string method;         // "GET", "PUT", ...
  std::string path;           // after "/apisix/admin", e.g. "/routes/1" (percent-decoding is not applied)
  std::string query;          // without '?'
  std::string body;           // de-chunked
  std::string if_match;       // header value as sent; empty when absent
  std::string if_none_match;  // header value as sent; empty when absent
  Role role = Role::viewer;
  std::string principal;  // AdminKey::name of the key used
};

struct Deferred;

struct AdminResponse {
  int status = 200;
  std::string body;  // JSON unless content_type says otherwise
  std::vector<std::pair<std::string, std::string>> headers;
  std::string content_type = "application/json";
  // Set by a handler with nothing to answer yet (a long poll): the rest is ignored and the server waits as
  // `deferred` says, holding no thread, so thousands of waiting clients cost no more than their sockets.
  std::shared_ptr<Deferred> deferred = nullptr;
};

// An event deferred responses wait for ("a new configuration was published"), counted by a generation.
// Thread-safe.
class Signal {
 public:
  uint64_t generation() const;
  // Bumps the generation and wakes every waiter.
  void notify();

  // For the server: calls `wake` once the generation is past `seen` (at once if it already is), until
  // remove_waiter(id). `wake` runs under the signal's lock, so it must only hand work off (post).
  uint64_t add_waiter(uint64_t seen, std::function<void()> wake);
  void remove_waiter(uint64_t id);

 private:
  mutable std::mutex mu_;
  uint64_t generation_ = 0;
  uint64_t next_id_ = 1;
  std::map<uint64_t, std::function<void()>> waiters_;
};

struct Deferred {
  std::shared_ptr<Signal> signal;
  uint64_t generation = 0;  // the generation the handler saw before it found nothing to answer
  std::chrono::steady_clock::time_point deadline;
  // Runs on a handler thread after the signal moved or the deadline passed; what it returns is sent (it may
  // defer again).
  std::function<AdminResponse()> resume;
};

using AdminHandler = std::function<AdminResponse(const AdminRequest&)>;

class AdminServer {
 public:
  AdminServer(AdminServerOptions options, AdminHandler handler);
  ~AdminServer();
  AdminServer(const AdminServer&) = delete;
  AdminServer& operator=(const AdminServer&) = delete;

  // Validates the options (allow_admin CIDRs, keys) and binds. Throws std::runtime_error with a message.
  void listen();
  void start();
  void stop();
  // Replaces the keys (a rotated key, a data plane added to the tokens file). Requests already
  // authenticated are not affected. Any thread; an empty list is refused (returns false).
  bool set_keys(std::vector<AdminKey> keys);
  // Reads the TLS certificate, key and client CA files again; the next handshake uses them, established
  // connections keep theirs. Throws std::runtime_error (the old ones stay in force). No-op without TLS.
  void reload_tls();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Admin-API-style JSON error body: {"error_msg": "..."}.
std::string error_body(std::string_view message);
// An answer with `status` and that body.
AdminResponse error_response(int status, std::string_view message);
// The value of query argument `name` as written (http/query.h), empty when absent; `present` (when not null)
// tells an absent one from an empty one.
std::string query_arg(std::string_view query, std::string_view name, bool* present = nullptr);

}  // namespace portico::admin
