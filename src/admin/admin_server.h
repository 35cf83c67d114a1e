// The Admin API's HTTP front: a listener on its own thread and event loop that parses requests strictly
// (http/parser.h), enforces the client allow-list and the X-API-KEY roles, and hands each authorised request
// to a blocking handler on a small thread pool, so a slow etcd call never stalls other admin clients or the
// proxy. It knows nothing about resources or etcd: AdminHandler (controlplane/admin_service.h) does.
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

enum class Role { viewer, admin };

struct AdminKey {
  std::string key;
  Role role = Role::admin;
};

struct AdminServerOptions {
  std::string listen = "127.0.0.1:9180";
  std::vector<std::string> allow_admin = {"127.0.0.0/8", "::1/128"};  // client networks; others get 403
  std::vector<AdminKey> keys;              // at least one admin key (the server refuses to start without)
  size_t max_body_size = 4 * 1024 * 1024;  // 413 above
  unsigned handler_threads = 4;
  double idle_timeout = 60;  // seconds an idle keep-alive connection is kept
};

struct AdminRequest {
  std::string method;         // "GET", "PUT", ...
  std::string path;           // after "/apisix/admin", e.g. "/routes/1" (percent-decoding is not applied)
  std::string query;          // without '?'
  std::string body;           // de-chunked
  std::string if_match;       // header value as sent; empty when absent
  std::string if_none_match;  // header value as sent; empty when absent
  Role role = Role::viewer;
};

struct AdminResponse {
  int status = 200;
  std::string body;  // JSON
  std::vector<std::pair<std::string, std::string>> headers;
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
