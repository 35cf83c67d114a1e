// A blocking etcd v3 client over etcd's JSON gateway (HTTP/1.1 + JSON, `/v3/...`), built on libcurl. It
// speaks to a list of endpoints (members of one cluster) and hides member loss: a call that fails with a
// connection error, a timeout or a transient etcd error ("leader changed", "no leader", "request timed
// out", "too many requests") is retried on the next endpoint, with a short backoff, until
// EtcdOptions::retry_deadline has passed. A member that failed recently is tried last, so a dead member costs
// one connect timeout at most once per cool-down, never per call.
//
// Contract:
// - Thread-safe: any thread may call any method concurrently (each call takes a curl handle from a small
//   pool, so connections to etcd are kept alive across calls).
// - Retries are per call: reads retry on any transient failure. Writes retry too, also after an attempt that
//   was sent and timed out (the usual case while a killed leader is replaced); such a call reports it
//   (TxnResult::ambiguous_retry) because the earlier attempt may have committed as well.
// - Keys and values are raw bytes; base64 for the gateway is done here.
// - A Status of Code::unavailable means no endpoint answered successfully before the deadline. For a write
//   that status may be *ambiguous* (Status::maybe_applied): the request reached a member and timed out, so it
//   may still commit. Callers make writes verifiable (compare on mod_revision, then re-read) instead of
//   trusting a retry.
// - Every successful response carries the header (cluster id, revision); callers use the cluster id to detect
//   that the endpoints now point at a different cluster.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace portico::store {

struct EtcdOptions {
  std::vector<std::string> endpoints;  // "http://127.0.0.1:2379"; at least one
  double connect_timeout = 0.3;        // seconds, per attempt
  double request_timeout = 2.0;        // seconds, per attempt (unary calls)
  double retry_deadline = 8.0;         // seconds a call keeps retrying across endpoints
  double endpoint_cooldown = 2.0;      // seconds a failed endpoint is tried only after the others
  // TLS to https:// endpoints (tls/curl_tls.h): the CA bundle verifying etcd (empty: the system's) and a
  // client certificate and key for etcd's --client-cert-auth (empty: none).
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

enum class Code {
  ok,
  unavailable,  // no endpoint answered before the deadline (all down, no quorum, partition)
  compacted,    // the requested revision has been compacted (range at a revision, watch)
  invalid,      // etcd refused the request itself (bad argument, too large); retrying cannot help
  internal,     // anything else: unexpected answer, parse failure
};

struct Status {
  Code code = Code::ok;
  std::string message;           // for logs and error bodies; empty when ok
  bool maybe_applied = false;    // a write that may have committed although the call failed
  int64_t compact_revision = 0;  // with Code::compacted: the oldest revision still available

  bool ok() const { return code == Code::ok; }
};

struct ResponseHeader {
  uint64_t cluster_id = 0;
  uint64_t member_id = 0;
  int64_t revision = 0;  // the store revision when the request was served
};

struct KeyValue {
  std::string key;
  std::string value;
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  int64_t version = 0;
  int64_t lease = 0;
};

struct RangeRequest {
  std::string key;
  std::string range_end;  // empty = the single key `key`; prefix_end(key) = every key under the prefix
  int64_t revision = 0;   // 0 = latest
  int64_t limit = 0;      // 0 = no limit
  bool keys_only = false;
  bool count_only = false;
  bool serializable = false;  // false = linearizable (goes through the leader)
  enum class SortOrder { none, ascend, descend };
  enum class SortTarget { key, version, create_revision, mod_revision, value };
  SortOrder sort_order = SortOrder::none;  // none = ascending by key (etcd's index order)
  SortTarget sort_target = SortTarget::key;
  // Set from another thread to abandon the call (Code::unavailable) within about a second, for owners that
  // must stop promptly while etcd is unreachable. Not owned; may be null.
  const std::atomic<bool>* cancel = nullptr;
};

struct RangeResult {
  ResponseHeader header;
  std::vector<KeyValue> kvs;
  bool more = false;
  int64_t count = 0;
};

// One comparison of a transaction. `range_end` non-empty compares every key in [key, range_end).
struct Compare {
  enum class Target { version, create_revision, mod_revision, value };
  enum class Result { equal, greater, less, not_equal };
  std::string key;
  std::string range_end;
  Target target = Target::mod_revision;
  Result result = Result::equal;
  int64_t number = 0;  // for version / create_revision / mod_revision
  std::string value;   // for Target::value
};

struct Op {
  enum class Type { range, put, delete_range };
  Type type = Type::range;
  std::string key;
  std::string range_end;  // range / delete_range over [key, range_end)
  std::string value;      // put
  int64_t lease = 0;      // put
  bool prev_kv = false;   // put / delete_range: return the previous value(s)
};

struct OpResult {
  std::vector<KeyValue> kvs;  // range: the keys read; put / delete with prev_kv: the previous values
  int64_t deleted = 0;        // delete_range
};

struct Txn {
  std::vector<Compare> compare;
  std::vector<Op> success;
  std::vector<Op> failure;
};

struct TxnResult {
  ResponseHeader header;
  bool succeeded = false;
  std::vector<OpResult> responses;  // one per op of the branch that ran
  // An earlier attempt of this call was sent and timed out before this one answered: it may have committed
  // too. A compare that failed may then have failed because of this call's own first attempt; re-read.
  bool ambiguous_retry = false;
};

// What one member says about itself and the cluster (POST /v3/maintenance/status).
struct MemberStatus {
  ResponseHeader header;  // header.member_id: the member that answered
  std::string version;    // etcd server version, "3.4.23"
  uint64_t leader = 0;    // member id of the leader as this member knows it; 0 = none
  int64_t raft_term = 0;
  int64_t raft_index = 0;
  int64_t db_size = 0;
};

// The smallest key greater than every key starting with `prefix` (etcd's "range_end" for a prefix).
std::string prefix_end(std::string_view prefix);

class EtcdClient {
 public:
  explicit EtcdClient(EtcdOptions options);
  ~EtcdClient();
  EtcdClient(const EtcdClient&) = delete;
  EtcdClient& operator=(const EtcdClient&) = delete;

  const EtcdOptions& options() const { return options_; }

  Status range(const RangeRequest& request, RangeResult& out);
  Status txn(const Txn& txn, TxnResult& out);
  // Unconditional single-key helpers (tests, tools); the Admin API writes through txn().
  Status put(std::string_view key, std::string_view value, ResponseHeader* header = nullptr);
  Status delete_key(std::string_view key, ResponseHeader* header = nullptr);
  // The current revision and cluster id, via a linearizable count-only range of `key`: proves a quorum.
  Status current(std::string_view key, ResponseHeader& out);
  Status compact(int64_t revision);

  // Leases (used by control planes to hold fleet records and the S3-export election).
  Status lease_grant(int64_t ttl_seconds, int64_t& lease_id);
  Status lease_keepalive(int64_t lease_id, int64_t& ttl_left);  // ttl_left <= 0: the lease is gone
  Status lease_revoke(int64_t lease_id);  // a lease that is already gone counts as revoked

  // Asks `endpoint` (one of options().endpoints or any other member URL) only: no failover, one attempt.
  // For status pages and tests (finding the leader).
  Status member_status(const std::string& endpoint, MemberStatus& out);

  // The endpoint that answered last (for logs and status pages).
  std::string current_endpoint() const;

 private:
  friend class EtcdWatch;
  struct Impl;
  EtcdOptions options_;
  std::unique_ptr<Impl> impl_;
};

// One watch stream (POST /v3/watch, a never-ending chunked JSON response) over a key range, from a start
// revision. Runs the stream on the calling thread until stop() is called from another thread, the stream
// ends, or the watch is canceled (e.g. compaction).
struct WatchEvent {
  enum class Type { put, del };
  Type type = Type::put;
  KeyValue kv;  // for del: key and mod_revision (the deletion's revision) only
};

class EtcdWatch {
 public:
  struct Callbacks {
    // The watch is established; header.revision is the store revision at that moment.
    std::function<void(const ResponseHeader&)> on_created;
    // Events of one or more revisions, in order; `header.revision` is the newest revision the stream has
    // seen (events have mod_revision <= header.revision). Also called with no events for progress notices.
    // Careful when resuming: while a watcher catches up on old revisions, etcd sets header.revision of an
    // events answer to the store's current revision, ahead of events still to come. Resume from the last
    // event's mod_revision + 1, or from a progress notice's header.revision + 1 (etcd sends those only to
    // watchers that have everything up to it). A revision's events always come in one answer.
    std::function<void(const ResponseHeader&, std::vector<WatchEvent>&)> on_events;
  };

  EtcdWatch(EtcdClient& client, Callbacks callbacks);
  ~EtcdWatch();

  // Watches [key, range_end) from `start_revision` (inclusive) on one endpoint, falling over to the next
  // endpoint only when the connection cannot be made. Returns when the stream ends: Code::compacted (with
  // compact_revision: restart from a full read), Code::unavailable (connection lost or no endpoint reachable:
  // the caller re-watches from the last revision seen + 1), or Code::ok after stop().
  // `idle_timeout`: a stream that delivers nothing (not even a progress notice) for this long is dropped;
  // <= 0 disables the check. etcd sends progress notices only every 10 minutes by default
  // (--experimental-watch-progress-notify-interval), so this is a backstop, not a liveness probe.
  // An endpoint that accepts the connection but does not confirm the watch within request_timeout counts
  // as unreachable. Callbacks run on the calling thread.
  Status run(std::string_view key, std::string_view range_end, int64_t start_revision, double idle_timeout);

  // Thread-safe; makes a run() in progress return promptly (it wakes the stream's poll at once), and any
  // later run() return at once.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::store
