// The control plane's side of hybrid sync (docs/sync-protocol.md): it publishes the copy as signed states,
// answers data planes' snapshot and long-poll requests with full snapshots or deltas, and records what each
// data plane reports (the fleet view, kept in etcd under leases so every replica lists the same fleet).
//
// Publishing: a thread woken by every change of the copy builds the publishable resource set, and when its
// content hash differs from the last published one, signs (cluster id, revision, hash) and keeps the net
// change against the previous state in a bounded history. So the published revision is the revision of the
// last *content* change, and a data plane at that revision holds exactly that content.
//
// Reports are bounded: every field against what a data plane sends (400 naming the field; a long error text
// is kept to its first 1 KiB), and a data plane's record is written to etcd at most once per
// fleet_write_interval after a short burst (FleetRecorder), so a data-plane token cannot turn reports into
// etcd growth or write load.
//
// Thread-safety: handle() and fleet() may be called from any number of threads (the listeners' pools);
// start()/stop() from the owner.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "admin/admin_server.h"
#include "controlplane/resource_store.h"
#include "store/etcd_client.h"
#include "sync/envelope.h"

namespace portico::controlplane {

struct SyncServiceOptions {
  std::string fleet_prefix;  // etcd prefix of data-plane records, e.g. "/apisix-fleet/"
  std::string name;          // this control plane, in fleet records ("host:port" of its sync listener)
  size_t history = 1000;     // published revisions a delta can start from
  double max_wait = 30;      // longest long poll, seconds
  double fleet_ttl = 30;     // seconds a data plane's record outlives its last report
  double stale_after = 15;   // a data plane silent for this long is listed as stale
  // etcd writes of a data plane's record: fleet_write_burst back to back, then at most one per interval (the
  // newest report, coalesced), so reports cannot be turned into etcd write load (fleet_recorder.h).
  double fleet_write_interval = 5;
  int fleet_write_burst = 3;
};

// The sync listener's request body limit (413 above). A report, the only request with a body, is a few
// hundred bytes; its fields are bounded one by one as well (400).
inline constexpr size_t kSyncMaxBody = 16 * 1024;

class SyncService {
 public:
  SyncService(ResourceStore& copy, store::EtcdClient& etcd, const sync::Signer& signer,
              SyncServiceOptions options);
  ~SyncService();

  void start();  // the publisher thread
  void stop();   // ends long polls at once

  // The sync listener's handler (paths under /portico/v1).
  admin::AdminResponse handle(const admin::AdminRequest& request);
  // GET /apisix/admin/data_planes: the fleet view.
  admin::AdminResponse fleet(const admin::AdminRequest& request);

  int64_t published_revision() const;
  std::string published_hash() const;

  // The published snapshot (envelope.h format, encoded once per published state and shared, not copied),
  // with its revision in `revision`; null before the first publish. Any thread.
  std::shared_ptr<const std::string> current_snapshot(int64_t& revision) const;
  // Called on the publisher thread after every publish, with the new revision (the S3 exporter's trigger).
  // Set before start(); the callback must not block.
  void on_publish(std::function<void(int64_t revision)> callback);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::controlplane
