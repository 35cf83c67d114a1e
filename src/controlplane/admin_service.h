// The Admin API's resource logic (APISIX v3 verbs and shapes) over etcd: what each verb reads, validates,
// checks and writes. HTTP parsing, client allow-listing and keys are the admin server's job
// (admin/admin_server.h); this class sees authorised requests only.
//
// Consistency rules (docs/admin-api.md):
// - Reads go to etcd (linearizable). When etcd cannot answer they are served from the in-memory copy and
//   marked `X-Portico-Stale: true`.
// - Every write is one etcd transaction that compares the resource's mod_revision with the one just read
//   (a lost race retries the read-modify-write; with If-Match it answers 412) and that every referenced
//   resource exists. Deletes of referable resources also compare that no route/service changed since the
//   copy used for the "still in use" scan.
// - A write whose outcome is unknown (timeout after sending) is re-read: if etcd holds exactly the value
//   written, the write succeeded.
//
// Thread-safety: handle() may be called concurrently from any number of threads; it blocks on etcd.
#pragma once

#include <atomic>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "admin/admin_server.h"
#include "controlplane/resource_store.h"
#include "store/etcd_client.h"
#include "store/mirror.h"

namespace portico::config {
struct LimitGroup;
}

namespace portico::controlplane {

class AdminService {
 public:
  // `etcd` serves writes and reads; `fast_etcd` (same endpoints, a short retry deadline) is used while the
  // copy is known to be stale, so nothing waits the full deadline for a store that is down.
  AdminService(store::EtcdClient& etcd, store::EtcdClient& fast_etcd, store::Mirror& mirror,
               ResourceStore& copy);

  admin::AdminResponse handle(const admin::AdminRequest& request);
  // New writes answer 503 from now on (shutdown), instead of starting etcd calls nobody will wait for.
  void stop();

 private:
  struct Target;
  admin::AdminResponse handle_credential(const Target& t, const admin::AdminRequest& request);
  admin::AdminResponse get_one(const Target& t);
  admin::AdminResponse list(const Target& t, const std::string& query);
  admin::AdminResponse write(const Target& t, const admin::AdminRequest& request);
  admin::AdminResponse remove(const Target& t, const admin::AdminRequest& request);
  // What a write proved by scanning this replica's copy, whose compares are in its transaction
  // (admin_references.cc): the copy's revision when scanned, -1 when not.
  struct WriteChecks {
    int64_t groups_seen = -1;        // limit-count groups compared
    bool ssl_users_scanned = false;  // an ssl losing type client: no upstream names it
  };
  // The references `value` makes must hold (refusal answered), with compares added to `txn` so they keep
  // holding until it commits.
  std::optional<admin::AdminResponse> check_references(const Target& t, const nlohmann::json& value,
                                                       const std::vector<config::LimitGroup>& groups,
                                                       store::Txn& txn, WriteChecks& checks);
  store::EtcdClient& client();

  store::EtcdClient& etcd_;
  store::EtcdClient& fast_etcd_;
  store::Mirror& mirror_;
  ResourceStore& copy_;
  std::atomic<bool> stopping_{false};
};

}  // namespace portico::controlplane
