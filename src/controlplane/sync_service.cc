#include "controlplane/sync_service.h"

#include <chrono>
#include <cmath>
#include <condition_variable>
#include <deque>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "base/log.h"
#include "config/json_input.h"
#include "controlplane/fleet_recorder.h"

namespace portico::controlplane {

using admin::AdminRequest;
using admin::AdminResponse;
using admin::error_response;
using nlohmann::json;

namespace {

// Report fields (what a data plane sends is far below these): a DNS name, a version string, an error text
// kept to its start.
constexpr size_t kReportMaxHostname = 255;
constexpr size_t kReportMaxVersion = 64;
constexpr size_t kReportMaxError = 1024;

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

std::string state_json(const sync::SignedState& s) {
  json j = {{"cluster_id", s.cluster_id},
            {"revision", s.revision},
            {"sha256", s.content_hash},
            {"key_id", s.key_id},
            {"signature", s.signature}};
  return j.dump();
}

struct Published {
  sync::SignedState state;
  size_t resources = 0;
  // The snapshot, encoded from the working set on first request while this is the current state (under
  // Impl::set_mu); null until then.
  std::shared_ptr<const std::string> encoded;
};

struct Delta {
  int64_t from = 0;
  std::string from_hash;  // content hash of the state at `from`
  int64_t to = 0;
  std::vector<sync::ResourceChange> changes;
};

}  // namespace

struct SyncService::Impl {
  ResourceStore& copy;
  store::EtcdClient& etcd;
  const sync::Signer& signer;
  SyncServiceOptions options;

  mutable std::mutex mu;
  // A new state was published, or stopping: wakes deferred long polls (they hold no thread while waiting).
  std::shared_ptr<admin::Signal> published = std::make_shared<admin::Signal>();
  std::condition_variable dirty_cv;  // the copy changed
  bool dirty = false;
  bool stopping = false;
  std::shared_ptr<Published> current;
  std::deque<Delta> history;

  // The content of `current`, changed in place by each publish (a route change costs the change, not a new
  // copy of every resource); snapshots of `current` are encoded from it. Lock order: set_mu, then mu.
  std::mutex set_mu;
  sync::ResourceSet working;
  bool have_working = false;
  ResourceStore::Cursor cursor;  // the copy's changes up to here are in `working`
  std::thread thread;
  std::function<void(int64_t)> published_hook;  // set before start()

  FleetRecorder fleet;

  Impl(ResourceStore& c, store::EtcdClient& e, const sync::Signer& s, SyncServiceOptions o)
      : copy(c),
        etcd(e),
        signer(s),
        options(std::move(o)),
        fleet(e, FleetOptions{options.fleet_prefix, options.fleet_ttl, options.fleet_write_interval,
                              options.fleet_write_burst}) {}

  void run();
  void publish();
  bool publish_routes(std::vector<sync::ResourceChange>& changes, int64_t& revision);
  std::shared_ptr<const std::string> encoded(std::shared_ptr<Published>& p, int64_t& revision);
  AdminResponse snapshot();
  AdminResponse changes(const AdminRequest& request);
  AdminResponse changes_until(int64_t since, const std::string& cluster, const std::string& hash,
                              std::chrono::steady_clock::time_point deadline);
  AdminResponse report(const AdminRequest& request);
};

SyncService::SyncService(ResourceStore& copy, store::EtcdClient& etcd, const sync::Signer& signer,
                         SyncServiceOptions options)
    : impl_(std::make_unique<Impl>(copy, etcd, signer, std::move(options))) {
  Impl* impl = impl_.get();
  copy.on_change([impl](int64_t) {
    {
      std::lock_guard lock(impl->mu);
      impl->dirty = true;
    }
    impl->dirty_cv.notify_all();
  });
}

SyncService::~SyncService() {
  stop();
}

void SyncService::start() {
  impl_->fleet.start();
  impl_->thread = std::thread([this] { impl_->run(); });
}

void SyncService::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
  }
  impl_->dirty_cv.notify_all();
  impl_->published->notify();
  if (impl_->thread.joinable()) impl_->thread.join();
  impl_->fleet.stop();
}

int64_t SyncService::published_revision() const {
  std::lock_guard lock(impl_->mu);
  return impl_->current ? impl_->current->state.revision : 0;
}

std::string SyncService::published_hash() const {
  std::lock_guard lock(impl_->mu);
  return impl_->current ? impl_->current->state.content_hash : std::string();
}

std::shared_ptr<const std::string> SyncService::current_snapshot(int64_t& revision) const {
  std::shared_ptr<Published> p;
  revision = 0;
  return impl_->encoded(p, revision);
}

void SyncService::on_publish(std::function<void(int64_t revision)> callback) {
  impl_->published_hook = std::move(callback);
}

void SyncService::Impl::run() {
  while (true) {
    {
      std::unique_lock lock(mu);
      dirty_cv.wait(lock, [this] { return stopping || dirty; });
      if (stopping) return;
      dirty = false;
    }
    if (copy.loaded()) publish();
  }
}

// Only routes changed since the last publish (the common case: nothing refers to a route, so nothing else can
// change whether it is published): applies them to the working set. False when something else changed, or the
// copy cannot tell what changed; publish() then reads everything.
bool SyncService::Impl::publish_routes(std::vector<sync::ResourceChange>& changes, int64_t& revision) {
  std::vector<ResourceStore::Touched> touched;
  ResourceStore::Cursor now;
  if (!have_working || !copy.changes_since(cursor, touched, now, revision)) return false;
  for (const ResourceStore::Touched& t : touched) {
    if (t.kind != Kind::routes) return false;
  }
  const std::function<bool(Kind, const std::string&)> kept = [this](Kind kind, const std::string& id) {
    return working.find(kKinds[static_cast<size_t>(kind)].name, id) != nullptr;
  };
  // From the published value of the service, not the copy's (which may already be newer than `working`).
  const std::function<bool(const std::string&)> service_has_upstream = [this](const std::string& id) {
    const std::string* service = working.find("services", id);
    if (service == nullptr) return false;
    const json v = json::parse(*service, nullptr, false);
    return v.is_object() && sets_upstream(v);
  };
  const std::function<bool(const std::string&)> client_ssl = [this](const std::string& id) {
    const std::string* ssl = working.find("ssls", id);
    if (ssl == nullptr) return false;
    const json v = json::parse(*ssl, nullptr, false);
    return v.is_object() && is_client_ssl(v);
  };
  for (ResourceStore::Touched& t : touched) {
    const std::string* held = working.find("routes", t.id);
    if (t.entry) {
      if (const char* why = ResourceStore::left_out_because(Kind::routes, *t.entry, kept,
                                                            service_has_upstream, client_ssl)) {
        PORTICO_LOG(warn, "route [%s] left out of the data plane config: %s", t.id.c_str(), why);
      } else {
        if (held == nullptr || *held != t.entry->value) {
          changes.push_back({"routes", t.id, std::move(t.entry->value)});
        }
        continue;
      }
    }
    if (held != nullptr) changes.push_back({"routes", t.id, std::nullopt});
  }
  cursor = now;
  return true;
}

void SyncService::Impl::publish() {
  std::lock_guard set_lock(set_mu);
  std::vector<sync::ResourceChange> changes;
  int64_t revision = 0;
  if (publish_routes(changes, revision)) {
    working.apply(changes);
  } else {
    // The cursor and its revision are taken first: what changes meanwhile is applied again next time
    // (idempotent), and the label is never newer than the content.
    cursor = copy.cursor(&revision);
    sync::ResourceSet all = copy.publishable();
    if (have_working) changes = sync::ResourceSet::diff(working, all);
    working = std::move(all);
    have_working = true;
  }
  std::string hash = working.content_hash();
  std::shared_ptr<Published> previous;
  {
    std::lock_guard lock(mu);
    previous = current;
  }
  const std::string cluster = std::to_string(copy.cluster_id());
  // Same content, same cluster: nothing to tell data planes (their revision still names this content).
  if (previous && previous->state.content_hash == hash && previous->state.cluster_id == cluster) return;

  auto next = std::make_shared<Published>();
  next->state.cluster_id = cluster;
  next->state.revision = revision;
  next->state.content_hash = std::move(hash);
  next->resources = working.size();
  signer.sign(next->state);
  Delta delta;
  const bool chained = previous && previous->state.cluster_id == cluster;
  if (chained) {
    delta.from = previous->state.revision;
    delta.from_hash = previous->state.content_hash;
    delta.to = next->state.revision;
    delta.changes = std::move(changes);
  }
  {
    std::lock_guard lock(mu);
    if (!chained) history.clear();  // another cluster: no delta leads here
    if (chained) history.push_back(std::move(delta));
    while (history.size() > options.history) history.pop_front();
    current = next;
  }
  published->notify();
  PORTICO_LOG(info, "published config revision %lld (%zu resources, sha256 %.12s...)",
              static_cast<long long>(next->state.revision), next->resources,
              next->state.content_hash.c_str());
  if (published_hook) published_hook(next->state.revision);
}

// The encoded snapshot of the current state (`p` is set to it). Encoded once per state, from the working set,
// which stands for the current state whenever set_mu is held.
std::shared_ptr<const std::string> SyncService::Impl::encoded(std::shared_ptr<Published>& p,
                                                              int64_t& revision) {
  std::lock_guard set_lock(set_mu);
  {
    std::lock_guard lock(mu);
    p = current;
  }
  if (!p) return nullptr;
  if (!p->encoded)
    p->encoded = std::make_shared<const std::string>(sync::encode_snapshot(p->state, working.document()));
  revision = p->state.revision;
  return p->encoded;
}

AdminResponse SyncService::handle(const AdminRequest& request) {
  if (request.path == "/snapshot" && request.method == "GET") return impl_->snapshot();
  if (request.path == "/changes" && request.method == "GET") return impl_->changes(request);
  if (request.path == "/report" && request.method == "POST") return impl_->report(request);
  return error_response(404, "unknown sync endpoint " + request.method + " " + request.path);
}

AdminResponse SyncService::Impl::snapshot() {
  std::shared_ptr<Published> p;
  int64_t revision = 0;
  std::shared_ptr<const std::string> body = encoded(p, revision);
  if (!body) return error_response(503, "this control plane has not read its configuration from etcd yet");
  AdminResponse r{200, *body, {}, "application/vnd.portico.snapshot"};
  r.headers.emplace_back("X-Portico-Revision", std::to_string(revision));
  return r;
}

AdminResponse SyncService::Impl::changes(const AdminRequest& request) {
  int64_t since = 0;
  if (!parse_decimal(admin::query_arg(request.query, "since"), since))
    return error_response(400, "since=<revision> is required");
  const std::string cluster = admin::query_arg(request.query, "cluster");
  int64_t wait = 20;
  std::string wait_text = admin::query_arg(request.query, "wait");
  if (!wait_text.empty() && !parse_decimal(wait_text, wait))
    return error_response(400, "wait must be a number of seconds");
  wait = std::min<int64_t>(wait, static_cast<int64_t>(options.max_wait));

  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(wait);
  std::string hash = admin::query_arg(request.query, "sha256");
  const bool hex = hash.size() == 64 && hash.find_first_not_of("0123456789abcdef") == std::string::npos;
  if (!hash.empty() && !hex) return error_response(400, "sha256 must be a lower-case hex SHA-256");
  return changes_until(since, cluster, hash, deadline);
}

// The answer to a long poll from `since`, or, while there is nothing new and `deadline` has not passed, a
// deferred answer: the server waits for the next publish without holding a thread.
// `hash` (optional) is the content hash the data plane holds at `since`. Replicas label the same content
// with different revisions when they coalesce etcd events differently; the hash lets a data plane that fails
// over keep going by delta (or just take the new label) instead of fetching a full snapshot.
AdminResponse SyncService::Impl::changes_until(int64_t since, const std::string& cluster,
                                               const std::string& hash,
                                               std::chrono::steady_clock::time_point deadline) {
  const uint64_t seen = published->generation();  // before looking: a publish after this wakes the wait
  std::unique_lock lock(mu);
  const bool waiting = !stopping && std::chrono::steady_clock::now() < deadline;
  if (waiting && (!current || since == current->state.revision)) {
    auto d = std::make_shared<admin::Deferred>();
    d->signal = published;
    d->generation = seen;
    d->deadline = deadline;
    d->resume = [this, since, cluster, hash, deadline] {
      return changes_until(since, cluster, hash, deadline);
    };
    AdminResponse r;
    r.deferred = std::move(d);
    return r;
  }
  if (!current) return error_response(503, "this control plane has not read its configuration from etcd yet");
  auto full = [](std::string why) {
    json body = {{"error_msg", why}, {"full", true}};
    return AdminResponse{409, body.dump(), {}};
  };
  if (cluster != current->state.cluster_id) {
    return full("cluster " + cluster + " is not this control plane's (" + current->state.cluster_id +
                "): fetch a full snapshot");
  }
  std::shared_ptr<Published> now = current;
  int64_t from = since;
  std::string from_hash = hash;
  std::string changes;
  bool behind = false;
  if (since == now->state.revision || (!hash.empty() && hash == now->state.content_hash)) {
    changes = "[]";  // in sync, or the same content under another replica's label (the data plane takes ours)
  } else if (since > now->state.revision) {
    behind = true;
    changes = "[]";
  } else {
    // Net changes from `since` (or, failing that, from the last state with the data plane's content) to now:
    // later deltas override earlier ones for the same resource.
    auto start =
        std::find_if(history.begin(), history.end(), [since](const Delta& d) { return d.from == since; });
    if (start == history.end() && !hash.empty()) {
      auto last = std::find_if(history.rbegin(), history.rend(),
                               [&hash](const Delta& d) { return d.from_hash == hash; });
      if (last != history.rend()) start = std::prev(last.base());
    }
    if (start == history.end()) {
      return full("revision " + std::to_string(since) +
                  " is not in this control plane's change history: fetch a full snapshot");
    }
    from = start->from;
    from_hash = start->from_hash;
    std::map<std::pair<std::string, std::string>, const std::optional<std::string>*> net;
    for (auto it = start; it != history.end(); ++it) {
      for (const sync::ResourceChange& c : it->changes) net[{c.kind, c.id}] = &c.value;
    }
    changes.push_back('[');  // (not `= "["`: GCC 12 warns falsely about that here)
    bool first = true;
    for (const auto& [key, value] : net) {
      if (!first) changes += ',';
      first = false;
      changes += "{\"kind\":";
      changes += json(key.first).dump();
      changes += ",\"id\":";
      changes += json(key.second).dump();
      changes += ",\"value\":";
      changes += *value ? **value : std::string("null");
      changes += '}';
    }
    changes += ']';
  }
  std::string body = "{\"cluster_id\":\"" + now->state.cluster_id + "\",\"from\":" + std::to_string(from);
  if (!from_hash.empty()) body += ",\"from_sha256\":\"" + from_hash + "\"";
  body += ",\"revision\":" + std::to_string(now->state.revision);
  if (behind) body += ",\"behind\":true";
  body += ",\"changes\":";
  body += changes;
  body += ",\"state\":";
  body += state_json(now->state);
  body += '}';
  return AdminResponse{200, std::move(body), {}};
}

namespace {

// A data plane's report (sync_client.cc report_body) as the record kept in etcd, or the error that refuses
// it. Each field is checked against what a data plane sends, with room to spare, so a record stays well under
// a kilobyte and a token cannot turn reports into etcd load. Unknown fields are ignored (not stored), so a
// newer data plane can report to an older control plane.
std::string report_record(const json& body, json& record) {
  if (!body.is_object()) return "a report is a JSON object";
  // A string field of at most `max` bytes: stored, and its value in `out` ("" when absent).
  auto text = [&](const char* field, size_t max, std::string& out) -> std::string {
    out.clear();
    auto it = body.find(field);
    if (it == body.end()) return {};
    if (!it->is_string()) return std::string("report.") + field + ": must be a string";
    out = it->get<std::string>();
    if (out.size() > max) {
      return std::string("report.") + field + ": at most " + std::to_string(max) + " bytes (got " +
             std::to_string(out.size()) + ")";
    }
    record[field] = out;
    return {};
  };
  std::string value;
  for (auto [field, max] :
       {std::pair{"hostname", kReportMaxHostname}, std::pair{"version", kReportMaxVersion}}) {
    if (std::string e = text(field, max, value); !e.empty()) return e;
  }
  if (std::string e = text("content_hash", 64, value); !e.empty()) return e;
  if (!value.empty() &&
      (value.size() != 64 || value.find_first_not_of("0123456789abcdef") != std::string::npos))
    return "report.content_hash: must be a lower-case hex SHA-256";
  if (std::string e = text("source", 16, value); !e.empty()) return e;
  if (!value.empty() && value != "none" && value != "cache" && value != "control_plane" && value != "s3" &&
      value != "file") {
    return "report.source: must be one of none, cache, control_plane, s3, file";
  }
  if (auto it = body.find("node_id");
      it != body.end() && (!it->is_string() || it->get_ref<const std::string&>().size() > 64))
    return "report.node_id: must be a string of at most 64 bytes (the token names the node)";
  if (auto it = body.find("last_error"); it != body.end()) {
    if (!it->is_string()) return "report.last_error: must be a string";
    std::string error = it->get<std::string>();
    // A data plane's error text can be long (a refused config lists every error); its log has all of it,
    // the fleet view keeps the start.
    if (error.size() > kReportMaxError) {
      const size_t all = error.size();
      size_t cut = kReportMaxError;
      while (cut > 0 && (static_cast<unsigned char>(error[cut]) & 0xC0) == 0x80) --cut;  // a UTF-8 boundary
      error.resize(cut);
      error += "... (" + std::to_string(all) + " bytes in all)";
    }
    record["last_error"] = std::move(error);
  }
  for (const char* field : {"revision", "sync_errors"}) {
    auto it = body.find(field);
    if (it == body.end()) continue;
    if (!it->is_number_integer() || (!it->is_number_unsigned() && it->get<int64_t>() < 0))
      return std::string("report.") + field + ": must be a non-negative integer";
    record[field] = *it;
  }
  if (auto it = body.find("last_sync"); it != body.end()) {
    if (!it->is_number() || !std::isfinite(it->get<double>()) || it->get<double>() < 0)
      return "report.last_sync: must be a non-negative number (unix seconds)";
    record["last_sync"] = *it;
  }
  return {};
}

}  // namespace

AdminResponse SyncService::Impl::report(const AdminRequest& request) {
  json record = json::object();
  config::Errors errors;
  std::optional<json> body = config::parse_json(request.body, errors, "report");
  if (!body) {
    const std::vector<config::FieldError>& list = errors.list();
    return error_response(
        400, list.empty() ? "report: invalid JSON" : list.front().path + ": " + list.front().reason);
  }
  if (std::string why = report_record(*body, record); !why.empty()) return error_response(400, why);
  record["node_id"] = request.principal;
  record["control_plane"] = options.name;
  record["reported_at"] = unix_now();
  fleet.record(request.principal, std::move(record));
  return AdminResponse{204, {}, {}};
}

AdminResponse SyncService::fleet(const AdminRequest& request) {
  if (request.method != "GET") {
    AdminResponse r = error_response(405, "the data plane list is read-only");
    r.headers.emplace_back("Allow", "GET");
    return r;
  }
  if (request.path != "/data_planes" && request.path != "/data_planes/")
    return error_response(404, "not found");
  bool stale = false;
  std::vector<json> records = impl_->fleet.list(stale);
  const int64_t revision = published_revision();
  const std::string hash = published_hash();
  const double now = unix_now();
  json list = json::array();
  for (json& r : records) {
    const double reported = r.value("reported_at", 0.0);
    std::string status;
    if (now - reported > impl_->options.stale_after) {
      status = "stale";
    } else if (!r.value("last_error", std::string()).empty()) {
      status = "failing";
    } else if (r.value("content_hash", std::string()) == hash) {
      status = "in_sync";
    } else {
      status = "behind";
    }
    r["status"] = status;
    r["seconds_since_report"] = now - reported;
    list.push_back(std::move(r));
  }
  json body = {{"total", list.size()}, {"list", list}, {"revision", revision}, {"content_hash", hash}};
  AdminResponse out{200, body.dump(), {}};
  if (stale) out.headers.emplace_back("X-Portico-Stale", "true");
  return out;
}

}  // namespace portico::controlplane
