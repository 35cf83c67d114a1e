// The Portico process: it owns the workers, the status listener, the active health checker, the config
// applier and, in the etcd roles, the control plane; and runs the process life cycle (start, reload, drain,
// exit). Roles:
// - standalone: the proxy, configured by a declarative file;
// - traditional: the proxy plus the control plane (Admin API over etcd); the proxy's config is assembled from
//   the control plane's in-memory copy whenever it changes;
// - control_plane: the Admin API only, no proxy listener;
// - data_plane: the proxy, configured by control planes over hybrid sync (sync/sync_client.h), starting from
//   its last-known-good cache when no control plane answers, or from the S3 fallback (sync/s3_fallback.h)
//   when it has no valid cache either.
//
// Threads: the caller's thread runs run() and waits for signals; each worker has its thread; the applier
// thread loads, validates and builds snapshots (never a worker); the status, health-check, mirror and admin
// threads serve their own loops.
#pragma once

#include <memory>

#include "controlplane/control_plane.h"
#include "proxy/options.h"
#include "sync/sync_client.h"

namespace portico::server {

enum class Role { standalone, traditional, control_plane, data_plane };

struct ServerOptions {
  Role role = Role::standalone;
  proxy::Options proxy;
  controlplane::ControlPlaneOptions control_plane;  // traditional and control_plane roles
  sync::SyncOptions data_plane;                     // data_plane role
  std::vector<std::string> trusted_keys;            // data_plane: files of control-plane public keys
  // --data-encryption-keyring: the keyring of consumer secrets (server/keyring.h); empty: the role's default.
  std::string keyring_file;
  // --upstream-ca-file: CA bundle verifying upstream certificates (tls.verify, https health checks); empty:
  // OpenSSL's default trust store. Checked at start: a bundle that does not load stops the process.
  std::string upstream_ca_file;
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();

  // Runs until SIGTERM/SIGINT has drained the process. Returns the process exit code.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::server
