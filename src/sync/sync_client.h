// The data plane's side of hybrid sync (docs/sync-protocol.md): one thread that keeps the data plane's
// configuration equal to the control planes' — first from the local cache, then by long-polling /changes on
// one control plane after another (failing over on errors), fetching a full snapshot when told to or when the
// content hash disagrees — and reports its status back. When nothing is served (no valid cache) and a whole
// round over the control planes failed, it loads the newest verified snapshot from the S3 fallback, if one is
// configured (s3_fallback.h), and keeps trying the control planes: their snapshot replaces it. It applies
// nothing itself: every verified state is handed to `Apply` (which validates and publishes it); only states
// Apply accepted are cached and become the base for the next delta.
//
// A delta costs O(changes) on the sync thread: it is applied in place to the set held (and undone if the
// content hash, the signature or Apply refuses it), the content hash is incremental (ResourceSet), and the
// cache is written by a thread of its own (CacheWriter: newest state only, serialized while the sync thread
// waits to change the set).
//
// Everything it reads is bounded before it is buffered (docs/sync-protocol.md, "Bounds"), and an exception on
// the sync thread (std::bad_alloc under a memory limit, above all) is logged and counted as a sync error: the
// configuration served stays. It pins the etcd cluster of the state it serves ("Cluster identity"): a state
// of another cluster replaces it only after no control plane has served ours for cluster_change_delay.
//
// Contract: start_from_cache() on the owning thread before start(); start() runs the sync thread; stop() is
// thread-safe and idempotent, returns within about a second plus the time to write the newest accepted state
// to the cache if it is not written yet (so a clean shutdown leaves it cached). status() may be called from
// any thread.
#pragma once

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "sync/envelope.h"
#include "sync/resource_set.h"
#include "sync/s3_client.h"

namespace portico::sync {

struct SyncOptions {
  std::vector<std::string> control_planes;  // "http://10.0.0.1:9280" or "https://...", tried in order
  std::string node_id;
  std::string token;  // bearer token for the control planes (empty: none, mutual TLS instead)
  // TLS to https:// control planes (tls/curl_tls.h): the CA verifying them (empty: the system's store), and
  // this node's certificate and key for mutual TLS (empty: none).
  std::string tls_ca_file;
  std::string tls_cert_file;
  std::string tls_key_file;
  std::string cache_dir;       // last-known-good cache (SnapshotCache)
  double cache_interval = 1;   // seconds between cache writes at most (the newest state is written)
  std::string hostname;        // reported
  std::string version;         // reported
  double long_poll = 20;       // seconds a /changes request may wait on the control plane
  double connect_timeout = 1;  // seconds per attempt
  double report_interval = 5;  // seconds between reports
  double retry_backoff = 0.5;  // first pause after a failure (doubles up to 5 s)
  // Seconds for which control planes must serve another etcd cluster, with none serving the one we serve,
  // before a state of that cluster replaces ours (docs/sync-protocol.md, "Cluster identity").
  double cluster_change_delay = 30;
  // The S3 fallback: used when s3.endpoint is set. Tried after a failed round over every control plane while
  // nothing is served, at most every s3_retry seconds. Its snapshot is cached like a control plane's.
  S3Options s3;
  std::string s3_prefix = "portico/";
  double s3_retry = 15;
};

// Where the configuration being served came from.
enum class Source { none, cache, control_plane, s3 };
const char* source_name(Source s);

struct SyncStatus {
  Source source = Source::none;
  int64_t revision = 0;
  std::string content_hash;
  std::string cluster_id;
  double last_sync = 0;       // unix seconds of the last successful exchange with a control plane
  std::string last_error;     // empty when the last exchange went well
  uint64_t sync_errors = 0;   // failed exchanges and refused states since start
  std::string control_plane;  // the endpoint in use
  bool connected = false;     // the last exchange with a control plane succeeded
};

class SyncClient {
 public:
  // How a state was reached from an earlier one: `set` is the state whose content hash is `base_hash` with
  // `changes` applied. Lets Apply work in proportion to the change instead of the whole set.
  struct Delta {
    const std::string& base_hash;
    const std::vector<ResourceChange>& changes;
  };

  // Validates and publishes a verified state. `delta` is null for a full snapshot (cache, S3, control plane
  // snapshot), else what turned an earlier state into `set`; Apply may use it only when what it serves has
  // `delta->base_hash`, and must otherwise load `set` whole. Returns false with `error` to refuse the state
  // (the last good state keeps serving, the error is reported to the control plane). Called on the sync
  // thread (and on the caller's thread from start_from_cache). `set` and `delta` are valid only during the
  // call: for a delta, `set` is the client's own set, which it changes in place afterwards (copy what must
  // outlive the call).
  using Apply = std::function<bool(const SignedState& state, const ResourceSet& set, const Delta* delta,
                                   Source source, std::string& error)>;

  SyncClient(SyncOptions options, Verifier verifier, Apply apply);
  ~SyncClient();
  SyncClient(const SyncClient&) = delete;
  SyncClient& operator=(const SyncClient&) = delete;

  // Applies the newest valid cached snapshot, if any. Returns true when one was applied.
  bool start_from_cache();
  void start();
  void stop();
  SyncStatus status() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::sync
