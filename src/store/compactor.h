// Compacts etcd's history behind what this process still reads, so that an etcd run without
// --auto-compaction-* does not grow forever. `horizon` gives the revision everything the process watches has
// passed (Mirror::horizon()). Every `interval` the compactor compacts at
//     min(the horizon one interval ago, the horizon now - retention)
// so the newest `retention` revisions, and at least one interval of history, stay readable for watchers that
// lag behind this one: another replica's mirror, a re-watch after a member loss. One that lags further reads
// everything again (the mirror's compacted-watch path), which costs time, never correctness.
//
// Compaction is idempotent in etcd and cheap to repeat (no physical wait is asked for), so every replica runs
// a compactor, each behind its own horizon; no election is needed. A revision etcd already compacted past is
// a no-op (EtcdClient::compact). Defragmentation, which gives the freed space back to the filesystem, is not
// done here: it blocks the member while it runs, so it is left to the operator (src/store/README.md).
//
// Thread: one of its own. start()/stop() from the owner; compacted() from any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>

#include "store/etcd_client.h"

namespace portico::store {

struct CompactorOptions {
  double interval = 300;      // seconds between compactions; <= 0: never compact
  int64_t retention = 10000;  // revisions kept behind the horizon
};

class Compactor {
 public:
  Compactor(EtcdClient& client, std::function<int64_t()> horizon, CompactorOptions options);
  ~Compactor();  // stops
  Compactor(const Compactor&) = delete;
  Compactor& operator=(const Compactor&) = delete;

  void start();  // no thread when options.interval <= 0
  void stop();   // idempotent; waits for a compaction in flight (bounded by the client's retry deadline)

  // The last revision this process compacted etcd at; 0 before the first.
  int64_t compacted() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::store
