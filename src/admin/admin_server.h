// The control plane's HTTP front: a listener on its own thread and event loop that parses requests strictly
// (http/parser.h), enforces the client allow-list and the keys and their roles, and hands each authorised
// request to a blocking handler on a thread pool, so a slow etcd call (or a data plane's long poll) never
// stalls other clients or the proxy. It knows nothing about resources or etcd: the handler does. Two
// instances run in a control plane: the Admin API (/apisix/admin, X-API-KEY, admin and viewer keys) and the
// data-plane sync listener (/portico/v1, bearer tokens of the data_plane role).
//
// Contract: listen() then start() from the owning thread; stop() is idempotent and joins every thread. The
// handler runs on a pool thread and may block (bounded by its own timeouts).
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
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

struct AdminServerOptions {
  std::string listen = "127.0.0.1:9180";
  std::string path_prefix = "/apisix/admin";  // other paths get 404
  KeyScheme key_scheme = KeyScheme::api_key;
  std::vector<std::string> allow_admin = {"127.0.0.0/8", "::1/128"};  // client networks; others get 403
  std::vector<AdminKey> keys;          // at least one admin key (the server refuses to start without)
  size_t max_body_size = 1536 * 1024;  // 413 above (etcd refuses requests over 1.5 MiB by default)
  unsigned handler_threads = 4;
  double idle_timeout = 60;       // seconds an idle keep-alive connection is kept
  size_t max_connections = 1024;  // more are closed at once
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

struct AdminResponse {
  int status = 200;
  std::string body;  // JSON unless content_type says otherwise
  std::vector<std::pair<std::string, std::string>> headers;
  std::string content_type = "application/json";
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

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Admin-API-style JSON error body: {"error_msg": "..."}.
std::string error_body(std::string_view message);

}  // namespace portico::admin
