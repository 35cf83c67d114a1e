// The data plane's last-known-good cache: every applied, verified snapshot is written to local disk, so the
// data plane can start and serve with no control plane reachable. Writes are atomic (temp file in the same
// directory, fsync, rename, fsync of the directory): a crash leaves the previous file or the new one, never a
// torn one. Loading verifies each candidate (open_snapshot); a corrupt or tampered file is logged, renamed to
// *.bad (kept for inspection, never tried again) and the next newest is tried.
//
// Files: <dir>/snapshot-<revision, 20 digits>.psnap; the newest `keep` are kept. Storing a lower revision
// than some files hold (a move to another etcd cluster) renames those to *.superseded rather than delete
// them. Anything that is not a regular file is skipped by load_latest and left alone. SnapshotCache is not
// thread-safe: one user at a time (the data plane loads it before its sync thread starts, then only its
// CacheWriter's thread stores).
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>

#include "sync/envelope.h"

namespace portico::sync {

struct CachedSnapshot {
  SignedState state;
  ResourceSet set;
  std::string path;
};

class SnapshotCache {
 public:
  explicit SnapshotCache(std::string dir, size_t keep = 3);

  // Creates the directory (0700) if needed. False with `error` when it cannot be written.
  bool store(std::string_view encoded_snapshot, int64_t revision, std::string& error);

  // The newest snapshot that verifies, or nullopt (every file missing, corrupt or untrusted).
  std::optional<CachedSnapshot> load_latest(const Verifier& verifier);

  const std::string& dir() const { return dir_; }

 private:
  std::string in_dir(std::string_view name) const {  // the path of `name` in the cache directory
    std::string path = dir_;
    path += '/';
    path += name;
    return path;
  }

  std::string dir_;
  size_t keep_;
};

// Stores snapshots into a SnapshotCache on a thread of its own, so that the sync thread never waits for a
// serialization, a write or an fsync (tens of MB at 100k routes). It stores the newest state submitted: a
// state submitted while another is being written replaces any that has not started yet, so a burst of
// states costs one write after the one in progress.
//
// A state comes as its encoded snapshot (the signed bytes as received), or as a function that returns its
// document, for a state held in a set that its owner changes in place. The writer calls that function with
// lock() held, and the owner holds lock() while it changes what the function reads, and while the content
// it reads is not the submitted state's (for example between applying a delta in place and either
// submitting its state or undoing it): so the document written is always the submitted state's. The header,
// the write, the fsync and the rename happen without the lock. Write failures are logged (the next state
// tries again).
//
// Thread-safe. The thread starts with the first submit(). stop() writes the pending state, if any, and
// joins; the destructor stops.
class CacheWriter {
 public:
  // At most one write per `min_interval` seconds: at a high change rate on a large config, writing every
  // state would cost a serialization and tens of MB of disk writes per change; the newest state is written
  // when the interval has passed (and at stop()).
  explicit CacheWriter(SnapshotCache& cache, double min_interval = 0)
      : cache_(cache), min_interval_(min_interval) {}
  ~CacheWriter();
  CacheWriter(const CacheWriter&) = delete;
  CacheWriter& operator=(const CacheWriter&) = delete;

  std::unique_lock<std::mutex> lock() { return std::unique_lock(mu_); }

  // Replaces the pending state. `held` must hold lock(). Ignored after stop().
  void submit(const std::unique_lock<std::mutex>& held, SignedState state, std::string encoded_snapshot);
  void submit(const std::unique_lock<std::mutex>& held, SignedState state,
              std::function<std::string()> document);

  // Drops the pending state, if any (its owner can no longer produce its document). `held` must hold lock().
  void discard(const std::unique_lock<std::mutex>& held);

  // Waits (up to `seconds`) until no state is pending or being written; true when none is.
  bool wait_idle(double seconds);

  // Writes the pending state, if any, then ends the thread. Not with lock() held; not from a document
  // function. Idempotent; any thread.
  void stop();

 private:
  struct Job {
    SignedState state;
    std::string encoded;                    // the snapshot, or
    std::function<std::string()> document;  // its document, read under mu_
  };

  void enqueue(const std::unique_lock<std::mutex>& held, Job job);
  void run();

  SnapshotCache& cache_;
  const double min_interval_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::optional<Job> job_;  // guarded by mu_
  bool busy_ = false;       // guarded by mu_: a job is being written
  bool stopping_ = false;   // guarded by mu_
  std::mutex join_mu_;
  std::thread thread_;  // started under mu_, joined under join_mu_
};

}  // namespace portico::sync
