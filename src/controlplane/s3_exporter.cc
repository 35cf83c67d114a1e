#include "controlplane/s3_exporter.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <utility>
#include <vector>

#include "base/log.h"
#include "sync/s3_fallback.h"

namespace portico::controlplane {
namespace {

using Clock = std::chrono::steady_clock;

Clock::duration seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

double since(Clock::time_point t) {
  return std::chrono::duration<double>(Clock::now() - t).count();
}

// The cluster_id line of a snapshot's header (envelope.h), or empty.
std::string header_cluster(const std::string& head) {
  constexpr std::string_view kField = "\ncluster_id: ";
  size_t at = head.find(kField);
  if (at == std::string::npos) return {};
  at += kField.size();
  size_t end = head.find('\n', at);
  return end == std::string::npos ? std::string() : head.substr(at, end - at);
}

}  // namespace

struct S3Exporter::Impl {
  store::EtcdClient& etcd;
  const CurrentSnapshot current;
  const S3ExporterOptions options;
  sync::S3Client s3;

  mutable std::mutex mu;
  std::condition_variable cv;
  bool stopping = false;
  bool pending = false;   // a publish not exported yet (or a new leader's first export)
  Clock::time_point due;  // when the pending export runs
  Clock::time_point first_pending;
  int64_t published_revision = 0;  // the last revision notify() was told of, and when
  Clock::time_point published_at;
  S3ExportStatus st;  // guarded by mu
  std::thread thread;

  // Exporter thread only.
  int64_t lease = 0;
  Clock::time_point lease_deadline;  // the lease surely lives until then
  std::string last_holder;           // the leader last logged, to log each change once
  bool campaign_now = false;         // set by lost()
  std::string last_failure;          // the export error last logged
  double retry_pause = 1;            // seconds before an export that failed is retried
  std::string cluster;               // cluster id of the snapshot exported last

  Impl(store::EtcdClient& e, CurrentSnapshot c, S3ExporterOptions o)
      : etcd(e), current(std::move(c)), options(std::move(o)), s3(options.s3) {}

  void run();
  bool campaign();    // false on an etcd error
  bool keep_alive();  // false on an etcd error while the lease may still live
  void lost(const char* why);
  void export_current();
  void failed(const std::string& what, const std::string& error);
  void prune(const std::vector<sync::S3Object>& objects, int64_t exported);
  void set_error(std::string_view what, const std::string& message) {
    std::lock_guard lock(mu);
    st.last_error = what;
    st.last_error += message;
  }
};

S3Exporter::S3Exporter(store::EtcdClient& etcd, CurrentSnapshot current, S3ExporterOptions options)
    : impl_(std::make_unique<Impl>(etcd, std::move(current), std::move(options))) {}

S3Exporter::~S3Exporter() {
  stop();
}

void S3Exporter::start() {
  PORTICO_LOG(info, "s3 export: campaigning for %s to export snapshots to %s (keep %zu)",
              impl_->options.election_key.c_str(), impl_->s3.describe(impl_->options.prefix).c_str(),
              impl_->options.keep);
  impl_->thread = std::thread([d = impl_.get()] { d->run(); });
}

void S3Exporter::notify(int64_t revision) {
  Impl& d = *impl_;
  {
    std::lock_guard lock(d.mu);
    Clock::time_point now = Clock::now();
    if (!d.pending) d.first_pending = now;
    d.pending = true;
    d.due = std::min(now + seconds(d.options.debounce), d.first_pending + seconds(d.options.max_delay));
    d.published_revision = revision;
    d.published_at = now;
  }
  d.cv.notify_all();
}

void S3Exporter::stop() {
  Impl& d = *impl_;
  {
    std::lock_guard lock(d.mu);
    if (d.stopping && !d.thread.joinable()) return;
    d.stopping = true;
  }
  d.cv.notify_all();
  d.s3.cancel();
  if (d.thread.joinable()) d.thread.join();
  if (d.lease != 0) {
    // Step down: revoking the lease deletes the election key, so another control plane takes over at once.
    store::Status s = d.etcd.lease_revoke(d.lease);
    PORTICO_LOG(info, "s3 export: stepped down%s",
                s.ok() ? "" : " (the lease could not be revoked; it expires)");
    d.lease = 0;
  }
}

S3ExportStatus S3Exporter::status() const {
  std::lock_guard lock(impl_->mu);
  return impl_->st;
}

std::string S3Exporter::status_json() const {
  S3ExportStatus s = status();
  nlohmann::json j = {{"leader", s.leader},
                      {"exported_revision", s.exported_revision},
                      {"exports", s.exports},
                      {"last_latency", s.last_latency},
                      {"last_error", s.last_error}};
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

void S3Exporter::Impl::run() {
  const double step = std::max(options.lease_ttl / 3, 0.1);  // keepalive and campaign period
  const double retry = std::min(step, 1.0);                  // after an etcd error
  Clock::time_point next_election = Clock::now();
  while (true) {
    if (Clock::now() >= next_election) {
      bool ok = lease == 0 ? campaign() : keep_alive();
      next_election = Clock::now() + seconds(ok ? step : retry);
      if (std::exchange(campaign_now, false)) next_election = Clock::now();  // just lost the lease
    }
    {
      std::unique_lock lock(mu);
      auto export_due = [&] { return lease != 0 && pending && Clock::now() >= due; };
      Clock::time_point wake = lease != 0 && pending ? std::min(next_election, due) : next_election;
      cv.wait_until(lock, wake, [&] { return stopping || export_due(); });
      if (stopping) return;
      if (!export_due()) continue;
      pending = false;
    }
    if (Clock::now() < lease_deadline) {
      export_current();
    } else {
      lost("the lease may have expired");
      campaign_now = false;
      next_election = Clock::now();
    }
  }
}

bool S3Exporter::Impl::campaign() {
  int64_t id = 0;
  Clock::time_point asked = Clock::now();
  store::Status s = etcd.lease_grant(static_cast<int64_t>(std::max(options.lease_ttl, 1.0)), id);
  if (!s.ok()) {
    set_error("s3 export election: ", s.message);
    return false;
  }
  store::Txn txn;
  store::Compare c;
  c.key = options.election_key;
  c.target = store::Compare::Target::create_revision;
  c.result = store::Compare::Result::equal;
  c.number = 0;
  txn.compare.push_back(c);
  txn.success.push_back(store::Op{store::Op::Type::put, options.election_key, {}, options.name, id, false});
  txn.failure.push_back(store::Op{store::Op::Type::range, options.election_key, {}, {}, 0, false});
  store::TxnResult r;
  s = etcd.txn(txn, r);
  std::string holder;
  bool ours = s.ok() && r.succeeded;
  if (s.ok() && !r.succeeded && !r.responses.empty() && !r.responses[0].kvs.empty()) {
    const store::KeyValue& kv = r.responses[0].kvs[0];
    holder = kv.value;
    ours = kv.lease == id;  // an earlier attempt of this very call won (TxnResult::ambiguous_retry)
  }
  if (!ours) {
    etcd.lease_revoke(id);
    if (!s.ok()) {
      set_error("s3 export election: ", s.message);
      return false;
    }
    if (holder != last_holder) {
      PORTICO_LOG(info, "s3 export: not the leader: %s exports snapshots to S3",
                  holder.empty() ? "another control plane" : holder.c_str());
      last_holder = holder.empty() ? "?" : holder;
    }
    set_error("", "");
    return true;
  }
  lease = id;
  lease_deadline = asked + seconds(options.lease_ttl);
  last_holder.clear();
  PORTICO_LOG(info, "s3 export: this control plane is the leader (lease %llx, ttl %.0f s); exporting to %s",
              static_cast<unsigned long long>(id), options.lease_ttl, s3.describe(options.prefix).c_str());
  std::lock_guard lock(mu);
  st.leader = true;
  st.last_error.clear();
  pending = true;  // the bucket may lack the current snapshot: export it now (skipped if it is there)
  due = Clock::now();
  first_pending = due;
  return true;
}

bool S3Exporter::Impl::keep_alive() {
  Clock::time_point asked = Clock::now();
  int64_t ttl_left = 0;
  store::Status s = etcd.lease_keepalive(lease, ttl_left);
  if (s.ok() && ttl_left <= 0) {
    lost("its lease expired");
    return true;
  }
  if (s.ok()) {
    lease_deadline = asked + seconds(static_cast<double>(ttl_left));
    // The key must still be ours: an operator may have deleted it, and another control plane may lead now.
    store::RangeRequest q;
    q.key = options.election_key;
    store::RangeResult rr;
    if (etcd.range(q, rr).ok() && (rr.kvs.empty() || rr.kvs[0].lease != lease)) {
      etcd.lease_revoke(lease);
      lost("the election key is no longer ours");
    }
    return true;
  }
  if (Clock::now() >= lease_deadline) {
    lost("etcd could not be reached before the lease ran out");
    return true;
  }
  set_error("s3 export lease keepalive: ", s.message);
  return false;
}

void S3Exporter::Impl::lost(const char* why) {
  PORTICO_LOG(warn, "s3 export: no longer the leader (%s); campaigning again", why);
  lease = 0;
  campaign_now = true;
  std::lock_guard lock(mu);
  st.leader = false;
}

void S3Exporter::Impl::export_current() {
  int64_t revision = 0;
  std::shared_ptr<const std::string> snapshot = current(revision);
  if (!snapshot) return;  // nothing published yet: the first publish notifies us
  Clock::time_point started = Clock::now();
  double published_ago = 0;
  {
    std::lock_guard lock(mu);
    if (revision == st.exported_revision) return;
    if (revision == published_revision) published_ago = since(published_at);
  }
  const std::string key = sync::s3_snapshot_key(options.prefix, revision);
  std::string error;
  std::vector<sync::S3Object> objects;
  if (!s3.list(options.prefix, objects, error)) {
    if (error != "canceled") failed("s3 export: cannot list " + s3.describe(options.prefix) + ": ", error);
    return;
  }
  cluster = header_cluster(*snapshot);
  bool present = false;
  for (const sync::S3Object& o : objects) {
    int64_t r = sync::parse_s3_snapshot_key(options.prefix, o.key);
    if (r == revision) present = true;
    if (r <= revision) continue;
    // A newer revision: this cluster's (we are behind: keep it) or an earlier etcd cluster's (delete it).
    std::string head;
    if (!s3.get_head(o.key, 1024, head, error)) continue;
    if (header_cluster(head) == cluster) {
      PORTICO_LOG(info,
                  "s3 export: %s is newer than revision %lld; not exporting (this control plane is behind)",
                  o.key.c_str(), static_cast<long long>(revision));
      return;
    }
    PORTICO_LOG(info, "s3 export: deleting %s: it comes from another etcd cluster (%s)", o.key.c_str(),
                header_cluster(head).c_str());
    if (!s3.remove(o.key, error))
      PORTICO_LOG(warn, "s3 export: cannot delete %s: %s", o.key.c_str(), error.c_str());
  }
  if (!present) {
    if (!s3.put(key, *snapshot, error)) {
      if (error != "canceled") failed("s3 export: cannot upload " + key + ": ", error);
      return;
    }
    objects.push_back(sync::S3Object{key, static_cast<int64_t>(snapshot->size())});
    double upload = since(started);
    PORTICO_LOG(info, "s3 export: uploaded %s (%zu bytes) in %.0f ms, %.2f s after it was published",
                key.c_str(), snapshot->size(), upload * 1000, published_ago + upload);
    std::lock_guard lock(mu);
    ++st.exports;
    st.last_latency = published_ago + upload;
  }
  if (!last_failure.empty()) {
    PORTICO_LOG(info, "s3 export: the bucket answers again");
    last_failure.clear();
  }
  retry_pause = 1;
  {
    std::lock_guard lock(mu);
    st.exported_revision = revision;
    st.last_error.clear();
  }
  prune(objects, revision);
}

// An export failed: retried after a pause that doubles up to 30 s; logged when the reason changes.
void S3Exporter::Impl::failed(const std::string& what, const std::string& error) {
  if (error != last_failure) {
    PORTICO_LOG(warn, "%s%s (retrying)", what.c_str(), error.c_str());
    last_failure = error;
  }
  set_error(what, error);
  std::lock_guard lock(mu);
  pending = true;
  due = Clock::now() + seconds(retry_pause);
  retry_pause = std::min(retry_pause * 2, 30.0);
}

void S3Exporter::Impl::prune(const std::vector<sync::S3Object>& objects, int64_t exported) {
  std::vector<std::pair<int64_t, std::string>> kept;
  for (const sync::S3Object& o : objects) {
    int64_t r = sync::parse_s3_snapshot_key(options.prefix, o.key);
    if (r >= 0 && r <= exported) kept.emplace_back(r, o.key);
  }
  std::sort(kept.begin(), kept.end(), std::greater<>());
  kept.erase(std::unique(kept.begin(), kept.end()), kept.end());
  std::string error;
  for (size_t i = std::max<size_t>(options.keep, 1); i < kept.size(); ++i) {
    if (s3.remove(kept[i].second, error)) {
      PORTICO_LOG(debug, "s3 export: retention removed %s", kept[i].second.c_str());
    } else if (error != "canceled") {
      PORTICO_LOG(warn, "s3 export: retention cannot delete %s: %s", kept[i].second.c_str(), error.c_str());
    }
  }
}

}  // namespace portico::controlplane
