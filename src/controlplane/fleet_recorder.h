// The fleet view's records (GET /apisix/admin/data_planes): the newest report of each data plane, kept in
// memory and written to etcd under this replica's lease, so that every replica lists the same fleet.
//
// Writes are rate limited per data plane and coalesced: `write_burst` writes back to back (a data plane's
// start: its first report, then the one after its first sync), then at most one per `write_interval`, always
// of its newest report (one that arrives sooner waits, replaced by any newer one). So a data plane, or
// whoever holds its token, reporting in a loop costs etcd what one reporting on schedule costs, and nothing
// reported is lost: the newest report always reaches etcd. Records are bounded in size by the caller
// (SyncService).
//
// Thread-safety: record() and list() from any thread; start()/stop() from the owner. A thread of its own does
// the etcd writes and keeps the lease alive, so a slow etcd never holds up a report's answer.
#pragma once

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "store/etcd_client.h"

namespace portico::controlplane {

struct FleetOptions {
  std::string prefix;         // etcd prefix of the records, e.g. "/apisix-fleet/"
  double ttl = 30;            // seconds this replica's lease (and its records) outlives the replica
  double write_interval = 5;  // seconds: at most one etcd write per data plane per interval, sustained
  int write_burst = 3;        // writes allowed back to back before the interval applies
};

class FleetRecorder {
 public:
  FleetRecorder(store::EtcdClient& etcd, FleetOptions options);
  ~FleetRecorder();  // stops

  void start();
  void stop();  // idempotent; a write in flight finishes first

  // Keeps `record` (a JSON object with "reported_at", unix seconds) as the newest report of `node`. It is
  // written to etcd at once when the node's rate limit allows, else as soon as it does.
  void record(const std::string& node, nlohmann::json record);

  // Every record in etcd, with this replica's newer report in place of a node's older record. When etcd
  // cannot be read: only the reports this replica received, and `stale` is set.
  std::vector<nlohmann::json> list(bool& stale);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::controlplane
