// The control plane: the etcd client, the mirror that keeps the in-memory copy current, the Admin API (its
// listener and its resource logic) and the admin keys. One object per process in the `control_plane` and
// `traditional` roles; the server (server/server.h) owns it and, in the traditional role, feeds its data
// plane from copy().
//
// Contract: start() from the owning thread (throws std::runtime_error with a message fit for the operator
// when keys or listeners cannot be set up); stop() is idempotent. copy() stays valid for the object's life.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "admin/admin_server.h"
#include "controlplane/resource_store.h"
#include "sync/s3_client.h"

namespace portico::controlplane {

struct ControlPlaneOptions {
  std::vector<std::string> etcd_endpoints;  // "http://127.0.0.1:2379" (https:// with the TLS files below)
  std::string etcd_ca_file;                 // PEM CA bundle verifying etcd's certificate (default: system)
  std::string etcd_cert_file;               // client certificate for etcd's --client-cert-auth
  std::string etcd_key_file;
  std::string etcd_prefix = "/apisix";
  std::string state_dir = "portico-state";
  std::string admin_key_file;       // empty: state_dir/admin.key; generated (mode 0600) when missing
  std::string viewer_key_file;      // empty: no viewer key
  admin::AdminServerOptions admin;  // listen address and allow-list; keys are filled in from the files

  // Data-plane sync (docs/sync-protocol.md). The sync listener runs when a tokens file is given.
  std::string sync_listen = "127.0.0.1:9280";
  std::vector<std::string> sync_allow = {"0.0.0.0/0", "::/0"};  // tokens are the gate; narrow it if you can
  std::string dp_tokens_file;  // lines "<node-id> <token>"; empty: no sync listener (unless mTLS below)
  // The sync listener's TLS (cert/key; empty: plain). With sync_tls.client_ca_file, data planes may
  // authenticate with a certificate signed by it instead of a token (its identity is the node id, which must
  // be on the allow-list below); without a tokens file, a certificate is required. Filled in by start(): the
  // roles and the identity check.
  admin::AdminTlsOptions sync_tls;
  // With sync_tls.client_ca_file: the node ids a certificate may name, one a line ('#' comments); empty: the
  // ids of dp_tokens_file. A verified certificate naming another id is refused (401), so a CA that also
  // signs other certificates (etcd's, an operator's) does not make them data planes. SIGHUP reloads it.
  std::string sync_tls_allowed_nodes_file;
  std::string signing_key_file;  // Ed25519 private key; empty: state_dir/signing.key (generated when missing)

  // S3 fallback (controlplane/s3_exporter.h): with s3.endpoint set, the replica elected through etcd exports
  // every published snapshot to the bucket under s3_prefix, keeping the newest s3_keep.
  sync::S3Options s3;
  std::string s3_prefix = "portico/";
  size_t s3_keep = 10;
  double s3_lease_ttl = 10;  // seconds: the election lease; a dead leader is replaced within about this

  // etcd compaction (store/compactor.h): every compaction_interval seconds (<= 0: never), compact behind what
  // this replica's mirror has passed, keeping at least compaction_retention revisions.
  double compaction_interval = 300;
  int64_t compaction_retention = 10000;
};

// Reads "<node-id> <token>" lines ('#' comments, blank lines ignored). Throws std::runtime_error naming the
// file and line on a malformed line, a token shorter than 16 characters or a repeated node id.
std::vector<admin::AdminKey> load_dp_tokens(const std::string& path);

// Reads a node allow-list: one node id a line ('#' comments, blank lines ignored). Throws
// std::runtime_error naming the file and line on an invalid id.
std::vector<std::string> load_node_ids(const std::string& path);

class ControlPlane {
 public:
  explicit ControlPlane(ControlPlaneOptions options);
  ~ControlPlane();

  void start();
  void stop();

  // Reads the key files again (admin, viewer, data-plane tokens) and puts them in force; on SIGHUP. A file
  // that fails to read or parse is logged and its keys stay as they were. Any thread.
  void reload_keys();

  ResourceStore& copy();
  // True once the copy holds a first full read of etcd.
  bool ready() const;
  // JSON object members (no braces) for /status/config: revision, stale, etcd endpoint, rejected keys,
  // published sync revision, S3 export state, the revision this replica last compacted etcd at.
  std::string status_fields() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads a key file (one key, surrounding whitespace ignored, 16..256 printable characters). When the file
// does not exist and `generate` is set, writes a new random key there with mode 0600 (creating the
// directory, mode 0700) and sets `generated`. Throws std::runtime_error naming the file on any failure.
std::string load_or_generate_key(const std::string& path, bool generate, bool& generated);

}  // namespace portico::controlplane
