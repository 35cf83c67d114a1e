// The data plane's last-known-good cache: every applied, verified snapshot is written to local disk, so the
// data plane can start and serve with no control plane reachable. Writes are atomic (temp file in the same
// directory, fsync, rename, fsync of the directory): a crash leaves the previous file or the new one, never a
// torn one. Loading verifies each candidate (open_snapshot); a corrupt or tampered file is logged, renamed to
// *.bad (kept for inspection, never tried again) and the next newest is tried.
//
// Files: <dir>/snapshot-<revision, 20 digits>.psnap; the newest `keep` are kept.
// Not thread-safe: one owner (the sync thread).
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

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
  std::string dir_;
  size_t keep_;
};

}  // namespace portico::sync
