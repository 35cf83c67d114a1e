#include "sync/sync_client.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <exception>
#include <mutex>
#include <optional>
#include <string_view>
#include <thread>
#include <utility>

#include "base/log.h"
#include "sync/cp_http.h"
#include "sync/s3_fallback.h"
#include "sync/snapshot_cache.h"

namespace portico::sync {
namespace {

using detail::error_message;
using detail::Json;
using detail::read_i64;
using detail::read_string;
using detail::url_escape;
using Clock = std::chrono::steady_clock;

constexpr double kMaxBackoff = 5;        // seconds: the longest pause between rounds of attempts
constexpr double kSnapshotTimeout = 30;  // a whole configuration may be large and the link slow
constexpr double kPollSlack = 10;        // a long poll's timeout beyond the wait we asked for
constexpr double kReportTimeout = 2;     // reports are best effort: never let one hang around
// A control plane that accepts connections and never answers (hung, SIGSTOPped, a black hole behind a load
// balancer) must be left long before a request's whole timeout: a snapshot that receives no byte for this
// long is given up; a long poll, silent by design, is given up when two reports in a row to the same control
// plane get no answer (the second is sent at once after the first fails), about 5 + 2 + 2 s at worst.
constexpr double kStallTimeout = 5;
constexpr int kSilentReportsToLeave = 2;
constexpr double kOtherClusterRecheck = 10;  // seconds: see served_other_cluster
constexpr size_t kMaxReportedError = 1024;   // bytes of last_error in a report (control planes keep as much)
constexpr double kMinHeartbeat = 0.5;        // seconds: the shortest spacing of long polls that bring nothing

// Endpoint problem kinds, to log a failing endpoint once per kind of failure instead of once per attempt.
constexpr int kFine = 0;
constexpr int kProtocol = -1;      // an answer we could not use
constexpr int kBehind = -2;        // the control plane is behind us
constexpr int kTooLarge = -3;      // an answer past its bound (kMaxDeltaBytes)
constexpr int kOtherCluster = -4;  // the control plane serves another etcd cluster than the one we serve
constexpr int kHttpKind = 1000;    // + HTTP status; curl codes are below

// Concatenates text pieces with appends: GCC 12 warns falsely (-Wrestrict) on `"lit" + std::string + ...`
// chains. Numbers must go through std::to_string (a string_view cannot be made from one, so no silent char).
template <typename... Parts>
std::string cat(const Parts&... parts) {
  std::string out;
  (out.append(std::string_view(parts)), ...);
  return out;
}

std::string num(int64_t n) {
  return std::to_string(n);
}

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string short_hash(const std::string& hash) {
  return hash.substr(0, 12);
}

}  // namespace

const char* source_name(Source s) {
  switch (s) {
    case Source::none:
      return "none";
    case Source::cache:
      return "cache";
    case Source::control_plane:
      return "control_plane";
    case Source::s3:
      return "s3";
  }
  return "none";
}

struct SyncClient::Impl {
  // A verified state with its content.
  struct Held {
    bool valid = false;
    SignedState state;
    ResourceSet set;
  };

  // What one exchange with a control plane came to; drives the endpoint loop in run().
  enum class Step {
    ok,       // in sync: applied, heartbeat, or nothing new
    again,    // ask the same control plane again at once (a full snapshot is needed now)
    refused,  // Apply refused the state: pause before asking again
    behind,   // the control plane is behind us: try another one
    failed,   // the endpoint failed or sent something unusable: try the next one
    stopped,
  };

  Impl(SyncOptions o, Verifier v, Apply a)
      : options(std::move(o)),
        verifier(std::move(v)),
        apply(std::move(a)),
        cache(options.cache_dir),
        http(options.token, options.connect_timeout,
             detail::CpTls{options.tls_ca_file, options.tls_cert_file, options.tls_key_file}),
        served_other_cluster(options.control_planes.size()),
        endpoint_problem(options.control_planes.size(), kFine) {
    if (!options.s3.endpoint.empty()) s3 = std::make_unique<S3Fallback>(options.s3, options.s3_prefix);
    http.set_tick([this] { tick(); });
    http.set_background_done([this](const detail::HttpReply& r) { report_done(r); });
  }

  void run();
  Step fetch_snapshot(size_t cp);
  Step poll_changes(size_t cp);
  Step accept(size_t cp, const SignedState& state, ResourceSet set, std::string encoded);
  Step accept_delta(size_t cp, const SignedState& state, Held& base, std::vector<ResourceChange> undo,
                    const Delta& delta, std::unique_lock<std::mutex> hold);
  Step refused(size_t cp, const SignedState& state, const std::string& error);
  Step applied(size_t cp, const std::string& how);
  Step full_needed(size_t cp, bool after_noop, const std::string& why);
  // Runs one exchange; an exception (std::bad_alloc on a huge answer, above all) is logged, counted and
  // survived: the configuration served stays, and the sync thread goes on with the next control plane.
  Step exchange(size_t cp);
  template <typename Fn>
  void guarded(const char* what, Fn&& fn);
  // True when `state` (verified, of another cluster than the base's) may replace the base: no control plane
  // has served the base's cluster for options.cluster_change_delay seconds (docs/sync-protocol.md).
  bool cluster_change_due(size_t cp, const SignedState& state);
  bool call_apply(const SignedState& state, const ResourceSet& set, const Delta* delta, Source source,
                  std::string& error);
  // Makes `state` in `set` what we serve, replacing current (under the writer's lock, which guards current),
  // and has the cache store `encoded`, its signed snapshot.
  void replace_current(const SignedState& state, ResourceSet set, std::string encoded);
  void try_s3();
  bool answered(size_t cp, const detail::HttpReply& reply, const char* what);
  void endpoint_failed(size_t cp, int kind, const std::string& message, log::Level level);
  void endpoint_ok(size_t cp);
  void record_error(const std::string& message);
  void serve(const Held& held, Source source);
  void tick();
  void report_done(const detail::HttpReply& reply);
  std::string report_body() const;

  // The base of the next delta: the state Apply refused last if it is newer than what we serve (the control
  // plane then only has to tell us what changed since, and re-sends nothing until it changes), else current.
  const Held& base() const { return pending.valid ? pending : current; }

  const SyncOptions options;
  const Verifier verifier;
  const Apply apply;
  SnapshotCache cache;
  detail::CpHttp http;
  std::unique_ptr<S3Fallback> s3;  // null without --s3-endpoint
  Clock::time_point next_s3{};

  // Sync thread only (the owner's thread before start()).
  Held current;  // applied and serving; changed only under writer.lock(), because the writer reads it
  Held pending;  // verified but refused by Apply, newer than current
  bool need_full = false;
  // Set while a delta is applied in place to it (current or pending): if an exception escapes meanwhile,
  // that set is neither its state nor the next one, and is dropped (exchange()).
  Held* changing = nullptr;
  // Another cluster control planes serve, and since when no control plane has served ours (the base's).
  std::string other_cluster;
  Clock::time_point other_cluster_since{};
  // Per control plane: when it last served a verified state of other_cluster. Until the change could be
  // due, it is not asked for the whole snapshot again on every round (tens of MB, at every data plane).
  std::vector<Clock::time_point> served_other_cluster;
  bool snapshot_noop = false;  // the last snapshot changed nothing (guards a 409 ↔ snapshot loop)
  size_t cp_index = 0;
  size_t report_cp = 0;    // the control plane the report in flight went to
  int silent_reports = 0;  // reports in a row that timed out at silent_cp
  size_t silent_cp = 0;
  bool long_poll_in_flight = false;  // the foreground request is a /changes long poll
  int error_cp = -1;  // status.last_error is that control plane's failure (-1: an error about content)
  std::vector<int> endpoint_problem;  // per control plane: kFine or the kind last logged
  bool report_wanted = false;
  bool reports_ok = true;
  Clock::time_point next_report = Clock::now();

  // Writes accepted states to the cache; declared after current, which its jobs read, so that it is joined
  // before current goes.
  CacheWriter writer{cache, options.cache_interval};

  mutable std::mutex mu;
  SyncStatus status;  // guarded by mu

  std::mutex thread_mu;
  std::thread thread;  // guarded by thread_mu
};

void SyncClient::Impl::run() {
  const size_t n = options.control_planes.size();
  if (n == 0) {
    PORTICO_LOG(warn, "sync: no control planes configured; keeping the configuration we have");
    while (http.pause(3600)) {
    }
    return;
  }
  const double first_backoff = std::max(options.retry_backoff, 0.01);  // 0 would spin
  double backoff = first_backoff;
  double refusal_pause = first_backoff;
  size_t failed_in_round = 0;
  while (!http.stopped()) {
    Step step = exchange(cp_index);
    switch (step) {
      case Step::stopped:
        return;
      case Step::ok:
        failed_in_round = 0;
        backoff = first_backoff;
        if (!pending.valid) refusal_pause = first_backoff;
        break;
      case Step::again:
        break;
      case Step::refused:
        // The control plane re-sends nothing until its configuration changes, so a pause is all it takes
        // not to spin; after it, a full snapshot re-checks what we hold against the control plane.
        failed_in_round = 0;
        need_full = true;
        guarded("pause", [&] { http.pause(refusal_pause); });
        refusal_pause = std::min(refusal_pause * 2, kMaxBackoff);
        break;
      case Step::behind:
      case Step::failed:
        cp_index = (cp_index + 1) % n;
        // Report to the next control plane at once: its answer proves it reachable while the long poll
        // there may wait for up to its full period, so status and fleet view follow the failover promptly.
        report_wanted = true;
        if (++failed_in_round >= n) {
          failed_in_round = 0;
          guarded("S3 fallback", [this] { try_s3(); });
          guarded("pause", [&] { http.pause(backoff); });
          backoff = std::min(backoff * 2, kMaxBackoff);
        }
        break;
    }
  }
}

// Runs what the sync thread does outside an exchange (the S3 fallback, a pause whose tick starts a report):
// an exception there is logged and counted like one in an exchange, never let out of the thread.
template <typename Fn>
void SyncClient::Impl::guarded(const char* what, Fn&& fn) {
  try {
    fn();
  } catch (const std::exception& e) {
    std::string message = cat("sync: ", what, " failed: ", e.what());
    PORTICO_LOG(error, "%s; still serving revision %lld", message.c_str(),
                static_cast<long long>(current.state.revision));
    record_error(message);
  }
}

SyncClient::Impl::Step SyncClient::Impl::exchange(size_t cp) {
  try {
    return need_full || !base().valid ? fetch_snapshot(cp) : poll_changes(cp);
  } catch (const std::exception& e) {
    if (changing == &current) {
      // The set no longer matches current's state: keep the writer from caching it, and make sure it is never
      // taken for that state again (it is replaced by the next snapshot; Apply still serves what it served).
      std::unique_lock hold = writer.lock();
      writer.discard(hold);
      current.set.clear();
      current.state.content_hash.clear();
    } else if (changing == &pending) {
      pending = Held{};
    }
    changing = nullptr;
    need_full = true;
    std::string message = cat("sync with control plane ", options.control_planes[cp], " failed: ", e.what());
    PORTICO_LOG(error, "sync: %s; still serving revision %lld", message.c_str(),
                static_cast<long long>(current.state.revision));
    record_error(message);
    return Step::failed;
  }
}

bool SyncClient::Impl::cluster_change_due(size_t cp, const SignedState& state) {
  const Held& b = base();
  Clock::time_point now = Clock::now();
  if (other_cluster != state.cluster_id) {
    other_cluster = state.cluster_id;
    other_cluster_since = now;
  }
  const double waited = std::chrono::duration<double>(now - other_cluster_since).count();
  if (waited >= options.cluster_change_delay) {
    PORTICO_LOG(
        warn,
        "sync: moving to etcd cluster %s (revision %lld, from control plane %s): no control plane has "
        "served cluster %s (our revision %lld) for %.0f s",
        state.cluster_id.c_str(), static_cast<long long>(state.revision), options.control_planes[cp].c_str(),
        b.state.cluster_id.c_str(), static_cast<long long>(b.state.revision), waited);
    other_cluster.clear();
    return true;
  }
  endpoint_failed(
      cp, kOtherCluster,
      cat("control plane ", options.control_planes[cp], " serves etcd cluster ", state.cluster_id,
          " (revision ", num(state.revision), "), not ours (", b.state.cluster_id, ", revision ",
          num(b.state.revision), "): it replaces ours only once no control plane has served ours for ",
          num(std::llround(options.cluster_change_delay)), " s"),
      log::Level::warn);
  return false;
}

SyncClient::Impl::Step SyncClient::Impl::fetch_snapshot(size_t cp) {
  const std::string& url = options.control_planes[cp];
  if (!other_cluster.empty() && served_other_cluster[cp] > other_cluster_since) {
    // It served the other cluster since the wait began: skip it like one that is behind, until the change
    // could be due (then one snapshot is fetched and followed) or for kOtherClusterRecheck at most (it may
    // have been pointed back at our cluster meanwhile).
    const Clock::time_point now = Clock::now();
    const double waited = std::chrono::duration<double>(now - other_cluster_since).count();
    const double since_seen = std::chrono::duration<double>(now - served_other_cluster[cp]).count();
    if (waited < options.cluster_change_delay && since_seen < kOtherClusterRecheck) return Step::behind;
  }
  detail::HttpReply reply;
  if (!http.get(cat(url, "/portico/v1/snapshot"), kSnapshotTimeout, kMaxSnapshotBytes, reply,
                kStallTimeout)) {
    return Step::stopped;
  }
  if (!answered(cp, reply, "snapshot")) return Step::failed;
  SignedState state;
  ResourceSet set;
  std::string error;
  if (!open_snapshot(reply.body, verifier, state, set, error)) {
    // Logged once while it lasts: an untrusted key (a rotation the data plane was not told of) lasts.
    endpoint_failed(cp, kProtocol, cat("snapshot from control plane ", url, " refused: ", error),
                    log::Level::error);
    return Step::failed;  // another control plane may serve a good one
  }
  need_full = false;
  const Held& b = base();
  if (b.valid && state.cluster_id != b.state.cluster_id) {
    // A genuine state of another cluster signed with the same key (a replaced etcd cluster, or another
    // cluster's state replayed): its revision says nothing about ours, so only time tells them apart.
    if (!cluster_change_due(cp, state)) {
      served_other_cluster[cp] = Clock::now();
      return Step::behind;
    }
  }
  if (b.valid && state.cluster_id == b.state.cluster_id) {
    other_cluster.clear();  // a control plane still serves our cluster
    if (state.revision < b.state.revision) {
      std::string message = cat("control plane ", url, " is behind us (snapshot revision ",
                                num(state.revision), " < ", num(b.state.revision), ")");
      endpoint_failed(cp, kBehind, message, log::Level::info);
      return Step::behind;
    }
    if (state.revision == b.state.revision && state.content_hash == b.state.content_hash) {
      // What we hold already (or the state we refused, which needs no second refusal).
      snapshot_noop = true;
      endpoint_ok(cp);
      return Step::ok;
    }
  }
  snapshot_noop = false;
  return accept(cp, state, std::move(set), std::move(reply.body));
}

SyncClient::Impl::Step SyncClient::Impl::poll_changes(size_t cp) {
  const std::string& url = options.control_planes[cp];
  const bool after_noop = std::exchange(snapshot_noop, false);
  Held& b = pending.valid ? pending : current;  // base(), to change in place
  const int64_t since = b.state.revision;
  const int wait = std::max(1, static_cast<int>(std::lround(options.long_poll)));
  // The content hash lets a replica that labels this content with another revision answer by delta.
  std::string request = cat(url, "/portico/v1/changes?since=", num(since), "&sha256=", b.state.content_hash,
                            "&cluster=", url_escape(b.state.cluster_id), "&wait=", num(wait));
  detail::HttpReply reply;
  Clock::time_point asked = Clock::now();
  {
    struct InFlight {
      bool& flag;
      ~InFlight() { flag = false; }
    } in_flight{long_poll_in_flight = true};
    if (!http.get(request, wait + kPollSlack, kMaxDeltaBytes, reply)) return Step::stopped;
  }
  if (reply.too_large) {
    // Never buffered past the bound. A real control plane sends that much only for a change of most of a
    // large configuration, for which the snapshot is the cheaper path anyway.
    endpoint_failed(cp, kTooLarge,
                    cat("control plane ", url, ": /changes answer refused (", reply.error,
                        "); fetching a full snapshot instead"),
                    log::Level::warn);
    need_full = true;
    return after_noop ? Step::failed : Step::again;
  }
  if (reply.transport_ok() && reply.status == 409) {
    return full_needed(cp, after_noop, cat("it asks for a full snapshot: ", error_message(reply.body)));
  }
  if (!answered(cp, reply, "long poll")) return Step::failed;

  // The answer: {cluster_id, from, revision, changes[{kind,id,value|null}], state{...}, behind?}.
  auto unusable = [&](const char* what) {
    endpoint_failed(cp, kProtocol, cat("control plane ", url, " sent an unusable /changes answer: ", what),
                    log::Level::error);
    return Step::failed;
  };
  detail::ChangesAnswer answer;
  std::string why;
  if (!detail::parse_changes_answer(reply.body, answer, why)) return unusable(why.c_str());
  std::string().swap(reply.body);  // the changes hold what is needed of it
  const Json& j = answer.envelope;
  auto st = j.find("state");
  SignedState state;
  if (st == j.end() || !st->is_object() || !read_i64(*st, "revision", state.revision)) {
    return unusable("no state");
  }
  if (!answer.has_changes) return unusable("no changes");
  int64_t from = 0;
  state.cluster_id = read_string(*st, "cluster_id");
  state.content_hash = read_string(*st, "sha256");
  state.key_id = read_string(*st, "key_id");
  state.signature = read_string(*st, "signature");
  auto behind = j.find("behind");
  if (state.cluster_id != b.state.cluster_id) {
    return full_needed(cp, after_noop,
                       cat("it serves cluster ", state.cluster_id, ", we hold ", b.state.cluster_id));
  }
  other_cluster.clear();  // a control plane still serves our cluster
  const bool same_content = state.content_hash == b.state.content_hash;
  if ((behind != j.end() && behind->is_boolean() && behind->get<bool>()) ||
      (state.revision < since && !same_content)) {
    endpoint_failed(
        cp, kBehind,
        cat("control plane ", url, " is behind us (revision ", num(state.revision), " < ", num(since), ")"),
        log::Level::info);
    return Step::behind;
  }
  if (state.revision == since) {
    // The pull-verify heartbeat: the same revision must mean the same content.
    if (state.content_hash != b.state.content_hash) {
      return full_needed(cp, after_noop,
                         cat("its content hash at revision ", num(since), " is ",
                             short_hash(state.content_hash), ", ours ", short_hash(b.state.content_hash)));
    }
    endpoint_ok(cp);
    // A control plane that answers at once instead of waiting would have us poll in a tight loop.
    double took = std::chrono::duration<double>(Clock::now() - asked).count();
    if (took < kMinHeartbeat && !http.pause(kMinHeartbeat - took)) return Step::stopped;
    return Step::ok;
  }
  // The changes must start from what we hold: our revision, or (another replica's label) our content.
  if (!read_i64(j, "from", from) ||
      (from != since && read_string(j, "from_sha256") != b.state.content_hash)) {
    return full_needed(cp, after_noop, cat("its changes start at revision ", num(from)));
  }

  // A newer revision: apply the changes to the base in place and check the result against the signed state.
  // Whatever refuses it, the changes are undone, so the base is again exactly the verified state it was: the
  // next delta starts from it, and the cache writer may read it (current). O(changes) either way.
  std::vector<ResourceChange> list = std::move(answer.changes);
  // The writer serializes current under its lock: keep it out while current's set is not current's state.
  std::unique_lock<std::mutex> hold;
  if (&b == &current) hold = writer.lock();
  const std::string base_hash = b.state.content_hash;
  // Cleared by accept_delta or an undo below; exchange() drops the set if an exception escapes meanwhile.
  changing = &b;
  std::vector<ResourceChange> undo = b.set.apply_with_undo(list);
  std::string hash = b.set.content_hash();
  const std::string what =
      cat("changes ", num(since), "..", num(state.revision), " from control plane ", url);
  if (hash != state.content_hash) {
    b.set.apply(std::move(undo));
    changing = nullptr;
    hold = {};
    std::string message =
        cat(what, " refused: content hash ", short_hash(hash), " != signed ", short_hash(state.content_hash));
    PORTICO_LOG(warn, "sync: %s; fetching a full snapshot", message.c_str());
    record_error(message);
    need_full = true;
    return after_noop ? Step::failed : Step::again;
  }
  std::string error;
  if (!verifier.verify(state, error)) {
    b.set.apply(std::move(undo));
    changing = nullptr;
    hold = {};
    std::string message = cat(what, " refused: bad signature: ", error);
    PORTICO_LOG(error, "sync: %s", message.c_str());
    record_error(message);
    need_full = true;  // from the next control plane: this one may be compromised
    return Step::failed;
  }
  return accept_delta(cp, state, b, std::move(undo), Delta{base_hash, list}, std::move(hold));
}

SyncClient::Impl::Step SyncClient::Impl::full_needed(size_t cp, bool after_noop, const std::string& why) {
  const std::string& url = options.control_planes[cp];
  need_full = true;
  if (after_noop) {
    // The snapshot we just fetched from it changed nothing, yet it still disagrees: it is inconsistent.
    endpoint_failed(cp, kProtocol, cat("control plane ", url, " is inconsistent: ", why), log::Level::error);
    return Step::failed;
  }
  PORTICO_LOG(info, "sync: fetching a full snapshot from %s: %s", url.c_str(), why.c_str());
  return Step::again;
}

// A verified full snapshot (`encoded`: its signed bytes, cached as they are).
SyncClient::Impl::Step SyncClient::Impl::accept(size_t cp, const SignedState& state, ResourceSet set,
                                                std::string encoded) {
  endpoint_ok(cp);
  std::string error;
  if (!call_apply(state, set, nullptr, Source::control_plane, error)) {
    pending = Held{true, state, std::move(set)};
    return refused(cp, state, error);
  }
  pending = Held{};
  replace_current(state, std::move(set), std::move(encoded));
  return applied(cp, "snapshot");
}

// A verified delta, already applied in place to `base` (current or pending); `undo` reverts it. `hold` holds
// the writer's lock when base is current.
SyncClient::Impl::Step SyncClient::Impl::accept_delta(size_t cp, const SignedState& state, Held& base,
                                                      std::vector<ResourceChange> undo, const Delta& delta,
                                                      std::unique_lock<std::mutex> hold) {
  endpoint_ok(cp);
  std::string error;
  if (!call_apply(state, base.set, &delta, Source::control_plane, error)) {
    if (&base == &current) {
      // The refused state becomes the base of the next delta (see base()), and current goes back to what we
      // serve. The one full copy of the delta path, on this rare path.
      pending = Held{true, state, current.set};
      current.set.apply(std::move(undo));
    } else {
      pending.state = state;  // pending already holds the refused content
    }
    changing = nullptr;
    hold = {};
    return refused(cp, state, error);
  }
  Held old;  // what current held, freed after the lock is released
  if (&base == &pending) {
    hold = writer.lock();
    old = std::exchange(current, std::move(pending));
    pending = Held{};
  }
  current.state = state;
  if (!options.cache_dir.empty()) {
    // The cache holds signed bytes: the delta's result is encoded with its state, by the writer.
    writer.submit(hold, state, [this] { return current.set.document(); });
  }
  changing = nullptr;
  hold = {};
  return applied(cp, cat("delta of ", num(delta.changes.size()), " changes"));
}

SyncClient::Impl::Step SyncClient::Impl::refused(size_t cp, const SignedState& state,
                                                 const std::string& error) {
  std::string message = cat("revision ", num(state.revision), " from control plane ",
                            options.control_planes[cp], " refused: ", error);
  PORTICO_LOG(error, "sync: %s; still serving revision %lld", message.c_str(),
              static_cast<long long>(current.state.revision));
  record_error(message);
  report_wanted = true;
  tick();
  return Step::refused;
}

SyncClient::Impl::Step SyncClient::Impl::applied(size_t cp, const std::string& how) {
  PORTICO_LOG(info, "sync: applied revision %lld (hash %s, %zu resources) from %s (%s)",
              static_cast<long long>(current.state.revision), short_hash(current.state.content_hash).c_str(),
              current.set.size(), options.control_planes[cp].c_str(), how.c_str());
  serve(current, Source::control_plane);
  report_wanted = true;
  tick();
  return Step::ok;
}

void SyncClient::Impl::replace_current(const SignedState& state, ResourceSet set, std::string encoded) {
  Held old{true, state, std::move(set)};
  {
    std::unique_lock hold = writer.lock();
    std::swap(current, old);
    if (!options.cache_dir.empty()) writer.submit(hold, state, std::move(encoded));
  }
}  // `old` (the set we served before) is freed here, outside the lock

bool SyncClient::Impl::call_apply(const SignedState& state, const ResourceSet& set, const Delta* delta,
                                  Source source, std::string& error) {
  try {
    if (apply(state, set, delta, source, error)) return true;
    if (error.empty()) error = "refused without a reason";
  } catch (const std::exception& e) {
    error = e.what();
  }
  return false;
}

// No control plane answered and nothing is served: the newest verified snapshot in the S3 fallback.
void SyncClient::Impl::try_s3() {
  if (!s3 || current.valid || Clock::now() < next_s3) return;
  next_s3 = Clock::now() +
            std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(options.s3_retry));
  const std::string where = s3->where();
  PORTICO_LOG(info, "sync: no control plane answers and no config is served: trying the S3 fallback %s",
              where.c_str());
  std::string error;
  std::optional<S3Snapshot> got = s3->load_latest(verifier, error);
  if (!got) {
    if (http.stopped()) return;
    PORTICO_LOG(warn, "sync: S3 fallback: %s", error.c_str());
    record_error(cat("S3 fallback: ", error));
    return;
  }
  if (!call_apply(got->state, got->set, nullptr, Source::s3, error)) {
    std::string message = cat("S3 object ", got->key, " refused: ", error);
    PORTICO_LOG(error, "sync: %s", message.c_str());
    record_error(message);
    return;
  }
  PORTICO_LOG(info, "sync: serving revision %lld (hash %s) from S3 object %s until a control plane answers",
              static_cast<long long>(got->state.revision), short_hash(got->state.content_hash).c_str(),
              got->key.c_str());
  replace_current(got->state, std::move(got->set), std::move(got->encoded));
  serve(current, Source::s3);
  report_wanted = true;
}

// Checks that a reply is a 2xx answer; otherwise records why the endpoint failed.
bool SyncClient::Impl::answered(size_t cp, const detail::HttpReply& reply, const char* what) {
  const std::string& url = options.control_planes[cp];
  if (!reply.transport_ok()) {
    endpoint_failed(cp, reply.code, cat("control plane ", url, ": ", what, " failed: ", reply.error),
                    log::Level::warn);
    return false;
  }
  if (reply.status / 100 == 2) return true;
  int kind = kHttpKind + static_cast<int>(reply.status);
  if (reply.status == 401 || reply.status == 403) {
    endpoint_failed(
        cp, kind,
        cat("control plane ", url, " refused our token (HTTP ", num(reply.status), ": ",
            error_message(reply.body), "); check the data plane's token and the control plane's list"),
        log::Level::error);
  } else {
    endpoint_failed(cp, kind,
                    cat("control plane ", url, ": ", what, " answered HTTP ", num(reply.status), ": ",
                        error_message(reply.body)),
                    log::Level::warn);
  }
  return false;
}

void SyncClient::Impl::endpoint_failed(size_t cp, int kind, const std::string& message, log::Level level) {
  if (endpoint_problem[cp] != kind) {
    endpoint_problem[cp] = kind;
    log::logf(level, "sync: %s", message.c_str());
  }
  std::lock_guard lock(mu);
  status.connected = kind == kBehind || kind == kOtherCluster;  // those still answered
  if (kind == kBehind) return;  // not an error of ours: we keep what we have and look elsewhere
  status.last_error = message;
  error_cp = static_cast<int>(cp);
  ++status.sync_errors;
}

void SyncClient::Impl::endpoint_ok(size_t cp) {
  const std::string& url = options.control_planes[cp];
  if (endpoint_problem[cp] != kFine) {
    PORTICO_LOG(info, "sync: control plane %s answers normally again", url.c_str());
    endpoint_problem[cp] = kFine;
  }
  std::lock_guard lock(mu);
  if (status.control_plane != url) {
    PORTICO_LOG(info, "sync: now using control plane %s", url.c_str());
    status.control_plane = url;
  }
  status.connected = true;
  status.last_sync = unix_now();
  // A refused state keeps its error visible for as long as the control plane still serves it.
  if (!pending.valid) status.last_error.clear();
}

void SyncClient::Impl::record_error(const std::string& message) {
  std::lock_guard lock(mu);
  status.last_error = message;
  error_cp = -1;
  ++status.sync_errors;
}

void SyncClient::Impl::serve(const Held& held, Source source) {
  std::lock_guard lock(mu);
  status.source = source;
  status.revision = held.state.revision;
  status.content_hash = held.state.content_hash;
  status.cluster_id = held.state.cluster_id;
  status.last_error.clear();
}

// Runs on the sync thread while it waits on the network: starts a report when one is due.
void SyncClient::Impl::tick() {
  if (options.control_planes.empty() || http.background_busy()) return;
  Clock::time_point now = Clock::now();
  if (!report_wanted && now < next_report) return;
  report_wanted = false;
  next_report = now + std::chrono::duration_cast<Clock::duration>(
                          std::chrono::duration<double>(options.report_interval));
  report_cp = cp_index;
  http.post_background(cat(options.control_planes[cp_index], "/portico/v1/report"), report_body(),
                       kReportTimeout);
}

void SyncClient::Impl::report_done(const detail::HttpReply& reply) {
  // A report that fails is not a sync error: the next one carries the same facts.
  bool ok = reply.transport_ok() && reply.status / 100 == 2;
  // No answer at all (an HTTP error is an answer) from the control plane our request waits on: ask once more
  // at once, and after a second silence leave it rather than wait out the long poll's timeout.
  // Only a timeout is silence: a refused or reset connection is an answer of sorts (a dead process, a
  // listener making room), and the request in flight fails by itself if its control plane is gone.
  if (report_cp != silent_cp) silent_reports = 0;
  silent_cp = report_cp;
  if (reply.code == CURLE_OPERATION_TIMEDOUT && report_cp == cp_index) {
    if (++silent_reports < kSilentReportsToLeave) {
      report_wanted = true;
    } else {
      silent_reports = 0;
      // A snapshot has its own stall limit and may be making progress; a long poll is silent by design.
      if (long_poll_in_flight) {
        http.abort_foreground(cat("no answer to ", num(kSilentReportsToLeave),
                                  " reports in a row while the request waited (", reply.error, ")"));
      }
    }
  } else {
    silent_reports = 0;
  }
  if (ok) {
    // The control plane in use answered: it is the endpoint in use, and we are connected, even while its long
    // poll is still waiting. An error that was only another endpoint's failure no longer describes us: clear
    // it and tell the control plane at once. (Errors about content, e.g. a refused or unverifiable state,
    // stay until a good state replaces them.)
    const std::string& url = options.control_planes[report_cp];
    bool cleared = false;
    {
      std::lock_guard lock(mu);
      if (status.control_plane != url) {
        PORTICO_LOG(info, "sync: now using control plane %s", url.c_str());
        status.control_plane = url;
      }
      status.connected = true;
      if (error_cp >= 0 && static_cast<size_t>(error_cp) != report_cp) {
        status.last_error.clear();
        error_cp = -1;
        cleared = true;
      }
    }
    if (cleared) report_wanted = true;
  }
  if (ok == reports_ok) return;
  reports_ok = ok;
  if (ok) {
    PORTICO_LOG(info, "sync: reports are accepted again");
  } else {
    std::string why =
        reply.transport_ok() ? cat("HTTP ", num(reply.status), ": ", error_message(reply.body)) : reply.error;
    PORTICO_LOG(warn, "sync: report to the control plane failed (%s)", why.c_str());
  }
}

std::string SyncClient::Impl::report_body() const {
  std::lock_guard lock(mu);
  Json j = {
      {"hostname", options.hostname},        {"version", options.version},
      {"node_id", options.node_id},          {"revision", status.revision},
      {"content_hash", status.content_hash}, {"source", source_name(status.source)},
      {"last_sync", status.last_sync},       {"last_error", status.last_error.substr(0, kMaxReportedError)},
      {"sync_errors", status.sync_errors}};
  // An error text may quote bytes that are not UTF-8: replace them rather than throw.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

SyncClient::SyncClient(SyncOptions options, Verifier verifier, Apply apply)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(verifier), std::move(apply))) {}

SyncClient::~SyncClient() {
  stop();
}

bool SyncClient::start_from_cache() {
  Impl& d = *impl_;
  if (d.options.cache_dir.empty()) return false;
  std::optional<CachedSnapshot> cached = d.cache.load_latest(d.verifier);
  if (!cached) {
    PORTICO_LOG(info, "sync: no usable cached snapshot in %s", d.options.cache_dir.c_str());
    return false;
  }
  std::string error;
  if (!d.call_apply(cached->state, cached->set, nullptr, Source::cache, error)) {
    std::string message = cat("cached snapshot ", cached->path, " refused: ", error);
    PORTICO_LOG(error, "sync: %s", message.c_str());
    d.record_error(message);
    return false;
  }
  PORTICO_LOG(info, "sync: serving cached revision %lld (hash %s) from %s",
              static_cast<long long>(cached->state.revision), short_hash(cached->state.content_hash).c_str(),
              cached->path.c_str());
  {
    std::unique_lock hold = d.writer.lock();
    d.current = Impl::Held{true, std::move(cached->state), std::move(cached->set)};  // already cached
  }
  d.serve(d.current, Source::cache);
  return true;
}

void SyncClient::start() {
  std::lock_guard lock(impl_->thread_mu);
  if (impl_->thread.joinable()) return;
  impl_->thread = std::thread([d = impl_.get()] { d->run(); });
}

void SyncClient::stop() {
  impl_->http.stop();
  if (impl_->s3) impl_->s3->cancel();
  {
    std::lock_guard lock(impl_->thread_mu);
    if (impl_->thread.get_id() == std::this_thread::get_id()) return;  // from Apply: the destructor joins
    if (impl_->thread.joinable()) impl_->thread.join();
  }
  // The sync thread is gone, so current no longer changes: the writer stores the newest state it was given,
  // so that a clean shutdown leaves it cached.
  impl_->writer.stop();
}

SyncStatus SyncClient::status() const {
  std::lock_guard lock(impl_->mu);
  return impl_->status;
}

}  // namespace portico::sync
