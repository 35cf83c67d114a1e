// The control plane's half of the S3 fallback (docs/sync-protocol.md, "S3 fallback"): one control plane at a
// time exports each newly published signed snapshot to an S3-compatible bucket, so that data planes that
// start with no cache and no reachable control plane still find a recent configuration.
//
// Election: every control plane with --s3-endpoint campaigns for the etcd key `election_key` (txn: the key's
// create_revision == 0 → put it, our name as value, under a lease of `lease_ttl` seconds). The winner keeps
// the lease alive every lease_ttl/3 and checks the key is still its own; a lost lease (etcd says it is gone,
// or etcd could not be reached until it ran out) makes it stop exporting and campaign again. The others
// campaign every lease_ttl/3 and log once per leader that they are not the leader. stop() steps down by
// revoking the lease, so another control plane takes over at once.
//
// Export (leader only): `debounce` seconds after the last publish (at most `max_delay` after the first one
// not yet exported), the current snapshot goes to <prefix>snapshot-<revision %020lld>.psnap. One export at a
// time (the exporter's thread does it). Then retention keeps the newest `keep` snapshots under the prefix. A
// newly elected leader exports the current snapshot at once unless the bucket already has it. Objects with a
// higher revision than the one exported come from an earlier etcd cluster and are deleted (their header says
// another cluster id); if one is of this cluster, this control plane is behind and skips the export.
//
// Thread-safety: notify() and status() from any thread; start()/stop() from the owner.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "store/etcd_client.h"
#include "sync/s3_client.h"

namespace portico::controlplane {

struct S3ExporterOptions {
  sync::S3Options s3;
  std::string prefix = "portico/";  // object key prefix in the bucket
  size_t keep = 10;                 // newest snapshots kept
  std::string election_key;         // "<etcd-prefix>-leader/s3-export"
  std::string name;                 // this control plane, the election key's value (for logs)
  double lease_ttl = 10;            // seconds
  double debounce = 1;              // seconds after the last publish
  double max_delay = 10;            // seconds after the first unexported publish, at the latest
};

struct S3ExportStatus {
  bool leader = false;
  int64_t exported_revision = 0;  // the last revision this process uploaded (or found already there)
  uint64_t exports = 0;           // uploads done by this process
  double last_latency = 0;        // seconds from that revision's publish to the end of its upload
  std::string last_error;         // empty when the last export (and election step) went well
};

class S3Exporter {
 public:
  // The current published snapshot and its revision (null before the first publish).
  using CurrentSnapshot = std::function<std::shared_ptr<const std::string>(int64_t& revision)>;

  S3Exporter(store::EtcdClient& etcd, CurrentSnapshot current, S3ExporterOptions options);
  ~S3Exporter();
  S3Exporter(const S3Exporter&) = delete;
  S3Exporter& operator=(const S3Exporter&) = delete;

  void start();
  // A new state was published (SyncService::on_publish).
  void notify(int64_t revision);
  // Ends the thread (an upload in progress is abandoned within about a second) and steps down.
  void stop();

  S3ExportStatus status() const;
  // JSON object for /status/config.
  std::string status_json() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::controlplane
