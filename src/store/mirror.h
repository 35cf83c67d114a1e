// A local copy of every key under one prefix of etcd, kept current by a watch: a full read at start, then the
// watch's events in revision order. It is what lets a control plane answer reads and feed data planes while
// etcd is unreachable (the copy is then marked stale), and catch up by revision without a restart when etcd
// is back.
//
// Life cycle of the copy (all on the mirror's own thread):
// - start: full read of the prefix (paginated), delivered by on_reset; then a watch from revision + 1.
// - watch lost (member killed, leader change): re-watch from the last revision applied + 1 on another
//   endpoint; nothing is missed and nothing is read twice.
// - the revision to resume from was compacted, or the cluster id changed (the endpoints now reach another
//   cluster, e.g. restored from backup): a new full read, delivered by on_reset.
// - verification: every verify_interval a linearizable read checks that etcd has a quorum and that the copy
//   has what etcd has (newest mod_revision and key count under the prefix); a copy that stays behind is
//   repaired by re-watching, or by a full read. Failures flip the connection state (on_connection).
//
// Contract: callbacks run on the mirror's thread, one at a time, in revision order; they must not call
// stop(). The query methods are thread-safe.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "store/etcd_client.h"

namespace portico::store {

struct MirrorOptions {
  double verify_interval = 1.0;  // seconds between quorum / completeness checks
  double retry_backoff = 0.25;   // seconds before retrying after a failure (doubles up to 2 s)
  int64_t page_size = 5000;      // keys per range request of a full read
};

struct MirrorCallbacks {
  // The whole prefix at header.revision; replaces everything held before.
  std::function<void(const ResponseHeader& header, std::vector<KeyValue> all)> on_reset;
  // Changes of one or more revisions, in order (may be empty for a progress notice advancing the revision).
  // header.revision is the copy's revision once they are applied (what revision() returns next): the newest
  // event's mod_revision, or the progress notice's revision. Events already applied are never repeated.
  std::function<void(const ResponseHeader& header, std::vector<WatchEvent>& events)> on_events;
  // connected == false: etcd is unreachable or has no quorum; what the copy holds is stale. `why` says what
  // failed. Called on every change of state only.
  std::function<void(bool connected, const std::string& why)> on_connection;
};

class Mirror {
 public:
  Mirror(EtcdClient& client, std::string prefix, MirrorCallbacks callbacks, MirrorOptions options = {});
  ~Mirror();  // stops
  Mirror(const Mirror&) = delete;
  Mirror& operator=(const Mirror&) = delete;

  void start();  // starts the mirror thread; the first full read happens there
  void stop();   // thread-safe, idempotent; returns once the thread has ended (within about a second)

  // Blocks until the copy has applied `revision` (or a later one), or `timeout_seconds` passed.
  bool wait_for(int64_t revision, double timeout_seconds);

  int64_t revision() const;  // newest revision applied; 0 before the first full read
  // The revision up to which the copy is known complete: revision(), or later when a verification found
  // nothing changed under the prefix since (other keys' writes move etcd's revision, not the copy's). The
  // mirror re-watches from horizon() + 1, so compacting etcd at or below it never forces a full read.
  int64_t horizon() const;
  bool connected() const;
  uint64_t cluster_id() const;
  std::string last_error() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::store
