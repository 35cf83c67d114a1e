// The S3 fallback (docs/sync-protocol.md, "S3 fallback"): control planes export signed snapshots to a bucket
// prefix as <prefix>snapshot-<revision, 20 digits>.psnap; a data plane with no valid cache and no reachable
// control plane loads the newest one that verifies. Objects are trusted exactly as cache files are: each goes
// through open_snapshot (format, content hash, Ed25519 signature by a trusted key), and its revision must
// match its name. A bad object is logged and skipped, and the next newest is tried.
//
// Contract: S3Fallback is used by one thread (the data plane's sync thread); cancel() is thread-safe and
// makes a load in progress give up within about a second.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "sync/envelope.h"
#include "sync/s3_client.h"

namespace portico::sync {

// "<prefix>snapshot-<revision %020lld>.psnap".
std::string s3_snapshot_key(const std::string& prefix, int64_t revision);
// The revision in such a key (under `prefix`), or -1 when `key` is not one.
int64_t parse_s3_snapshot_key(const std::string& prefix, const std::string& key);

struct S3Snapshot {
  SignedState state;
  ResourceSet set;
  std::string encoded;  // the object's bytes (a snapshot, envelope.h)
  std::string key;
};

class S3Fallback {
 public:
  S3Fallback(S3Options options, std::string prefix);

  // The newest snapshot under the prefix that verifies, or nullopt with `error` (the bucket could not be
  // listed, it holds no snapshot, or none verifies). Bad objects are logged (warn) with the reason.
  std::optional<S3Snapshot> load_latest(const Verifier& verifier, std::string& error);

  void cancel() { client_.cancel(); }
  // "<endpoint>/<bucket>/<prefix>" for logs.
  std::string where() const { return client_.describe(prefix_); }

 private:
  S3Client client_;
  std::string prefix_;
};

}  // namespace portico::sync
