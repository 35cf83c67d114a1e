// Mirror: two threads. The mirror thread owns the copy's bookkeeping and runs every callback; it does the
// full reads and the verification reads itself. A watch thread per watch session only runs
// EtcdWatch::run() and queues what the stream delivers; the mirror thread applies the queue in order. The
// split keeps callbacks on one thread while a blocking stream and periodic checks both make progress.
#include "store/mirror.h"

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_set>

#include "base/log.h"
#include "base/time.h"

namespace portico::store {
namespace {

using Clock = std::chrono::steady_clock;

// A stream silent for this long is re-created. Only a backstop: verification finds a stalled stream within
// two verify intervals, and TCP keep-alive finds a dead peer.
constexpr double kWatchIdleTimeout = 300;
constexpr double kMaxBackoff = 2.0;
// A watch session shorter than this that ends by itself is a failure to back off from, not a one-off loss.
constexpr double kShortSession = 1.0;
constexpr int kFullReadAttempts = 3;  // compactions racing one full read before it counts as failed

long long ll(int64_t v) {
  return static_cast<long long>(v);
}

}  // namespace

struct Mirror::Impl {
  Impl(EtcdClient& c, std::string p, MirrorCallbacks cb, MirrorOptions o)
      : client(c),
        prefix(std::move(p)),
        // etcd has no empty key; "\0" is the smallest one, so the empty prefix still means "everything".
        first_key(prefix.empty() ? std::string(1, '\0') : prefix),
        range_end(prefix_end(prefix)),
        callbacks(std::move(cb)),
        options(o) {}

  // What a watch thread hands to the mirror thread.
  struct Item {
    enum class Kind { created, events, ended } kind;
    ResponseHeader header;
    std::vector<WatchEvent> events;
    Status status;
  };
  struct Session {
    std::unique_ptr<EtcdWatch> watch;
    std::thread thread;
    Clock::time_point started;
    bool created = false;
  };
  // A discrepancy seen by one verification, to be explained by the next one.
  struct Suspicion {
    bool active = false;
    bool behind = false;  // etcd had a newer mod_revision (else: only the key count differed)
    int64_t newest = 0;   // etcd's newest mod_revision then
    int64_t applied = 0;  // the copy's revision then
  };

  void run();
  Status full_read();
  void apply(Item& item);
  void apply_events(const ResponseHeader& header, std::vector<WatchEvent>& events);
  void verify();
  void start_session();
  void end_session();
  void restart_watch(const std::string& why);
  void request_reset(const std::string& why);
  void update_connection(const std::string& why);
  void publish(int64_t revision);
  void push(Item item);
  bool stopping_now();

  EtcdClient& client;
  const std::string prefix;
  const std::string first_key;
  const std::string range_end;
  const MirrorCallbacks callbacks;
  const MirrorOptions options;

  mutable std::mutex mu;
  std::condition_variable wake;     // the mirror thread: queue or stop
  std::condition_variable applied;  // wait_for()
  std::deque<Item> queue;           // guarded by mu
  bool stopping = false;            // guarded by mu
  std::atomic<bool> cancel{false};  // set with `stopping`: abandons a client call in flight
  std::string last_error;           // guarded by mu
  std::atomic<int64_t> revision{0};
  std::atomic<int64_t> horizon{0};  // >= revision: the copy is known complete up to here (Mirror::horizon)
  std::atomic<bool> connected{false};
  std::atomic<uint64_t> cluster_id{0};
  std::thread thread;

  // Mirror thread only.
  std::unique_ptr<Session> session;
  std::unordered_set<std::string> keys;  // what the copy holds, for the count check
  bool need_reset = true;
  std::string reset_reason = "start";
  bool watch_ok = false;   // the last watch session was established (a loss alone does not clear it)
  bool verify_ok = false;  // the last quorum read (or full read) succeeded
  bool state_known = false;
  double backoff = 0;
  Clock::time_point next_verify{};
  Clock::time_point rewatch_at{};
  Suspicion suspicion;
  int strikes = 0;
};

bool Mirror::Impl::stopping_now() {
  std::lock_guard lock(mu);
  return stopping;
}

void Mirror::Impl::push(Item item) {
  {
    std::lock_guard lock(mu);
    queue.push_back(std::move(item));
  }
  wake.notify_one();
}

void Mirror::Impl::publish(int64_t rev) {
  {
    std::lock_guard lock(mu);
    revision.store(rev);
  }
  applied.notify_all();
}

void Mirror::Impl::update_connection(const std::string& why) {
  bool now = watch_ok && verify_ok;
  if (state_known && now == connected.load()) return;
  state_known = true;
  connected.store(now);
  if (now) {
    PORTICO_LOG(info, "etcd mirror %s: connected at revision %lld", prefix.c_str(), ll(revision.load()));
  } else {
    PORTICO_LOG(warn, "etcd mirror %s: disconnected, copy is stale: %s", prefix.c_str(), why.c_str());
  }
  if (callbacks.on_connection) callbacks.on_connection(now, now ? std::string() : why);
}

void Mirror::Impl::request_reset(const std::string& why) {
  need_reset = true;
  reset_reason = why;
}

void Mirror::Impl::start_session() {
  auto s = std::make_unique<Session>();
  s->started = Clock::now();
  EtcdWatch::Callbacks cb;
  cb.on_created = [this](const ResponseHeader& h) { push({Item::Kind::created, h, {}, {}}); };
  cb.on_events = [this](const ResponseHeader& h, std::vector<WatchEvent>& events) {
    push({Item::Kind::events, h, std::move(events), {}});
  };
  s->watch = std::make_unique<EtcdWatch>(client, std::move(cb));
  // Not just revision + 1: etcd may have been compacted past the copy's revision up to the horizon, with
  // nothing under the prefix in between.
  int64_t from = std::max(revision.load(), horizon.load()) + 1;
  s->thread = std::thread([this, watch = s->watch.get(), from] {
    Status status = watch->run(first_key, range_end, from, kWatchIdleTimeout);
    push({Item::Kind::ended, {}, {}, std::move(status)});
  });
  session = std::move(s);
}

// Stops the session at once and drops whatever it queued: only used before a full read, which supersedes it.
void Mirror::Impl::end_session() {
  if (session) {
    session->watch->stop();
    session->thread.join();
    session.reset();
  }
  std::lock_guard lock(mu);
  queue.clear();
}

// The session's "ended" item (Code::ok, since stopped) comes after everything it queued, so the events
// already received are applied before the new session starts from the revision after them.
void Mirror::Impl::restart_watch(const std::string& why) {
  PORTICO_LOG(warn, "etcd mirror %s: %s; re-watching from revision %lld", prefix.c_str(), why.c_str(),
              ll(revision.load() + 1));
  if (session) {
    session->watch->stop();
  } else {
    rewatch_at = Clock::now();
  }
}

Status Mirror::Impl::full_read() {
  PORTICO_LOG(info, "etcd mirror %s: full read (%s)", prefix.c_str(), reset_reason.c_str());
  Status s;
  for (int attempt = 0; attempt < kFullReadAttempts; ++attempt) {
    std::vector<KeyValue> all;
    ResponseHeader header;
    RangeRequest r;
    r.key = first_key;
    r.range_end = range_end;
    r.limit = std::max<int64_t>(1, options.page_size);
    r.cancel = &cancel;
    while (true) {
      if (stopping_now()) return {Code::unavailable, "stopping"};
      RangeResult page;
      s = client.range(r, page);
      if (!s.ok()) break;
      // Every page after the first reads at the first page's revision: the pages form one snapshot.
      if (r.revision == 0) {
        header = page.header;
        r.revision = page.header.revision;
      }
      for (KeyValue& kv : page.kvs) all.push_back(std::move(kv));
      if (!page.more || page.kvs.empty()) break;
      r.key = all.back().key + '\0';
    }
    if (s.code == Code::compacted) continue;  // compacted past our snapshot between two pages: start over
    if (!s.ok()) return s;

    uint64_t old_cluster = cluster_id.load();
    if (old_cluster != 0 && old_cluster != header.cluster_id) {
      PORTICO_LOG(warn, "etcd mirror %s: cluster id changed from %llx to %llx", prefix.c_str(),
                  static_cast<unsigned long long>(old_cluster),
                  static_cast<unsigned long long>(header.cluster_id));
    }
    cluster_id.store(header.cluster_id);
    keys.clear();
    for (const KeyValue& kv : all) keys.insert(kv.key);
    PORTICO_LOG(info, "etcd mirror %s: loaded %zu keys at revision %lld", prefix.c_str(), all.size(),
                ll(header.revision));
    if (callbacks.on_reset) callbacks.on_reset(header, std::move(all));
    horizon.store(header.revision);
    publish(header.revision);
    return {};
  }
  return s;
}

void Mirror::Impl::apply_events(const ResponseHeader& header, std::vector<WatchEvent>& events) {
  if (header.cluster_id != 0 && header.cluster_id != cluster_id.load()) {
    request_reset("watch answered from another cluster");
    return;
  }
  int64_t current = revision.load();
  // Only a progress notice has no events. It is sent to a watcher that has everything up to
  // header.revision, so the copy is complete up to there. An events answer's header.revision may run ahead
  // of the events in it (a watcher catching up), so only the events' own revisions count there.
  bool progress = events.empty();
  std::erase_if(events, [current](const WatchEvent& e) { return e.kv.mod_revision <= current; });
  int64_t newest = current;
  if (progress) {
    if (header.revision <= current) return;
    newest = header.revision;
  } else if (events.empty()) {
    return;  // all already applied (a re-watch overlapping the previous stream)
  }
  for (const WatchEvent& e : events) {
    if (e.type == WatchEvent::Type::put) {
      keys.insert(e.kv.key);
    } else {
      keys.erase(e.kv.key);
    }
    newest = std::max(newest, e.kv.mod_revision);
  }
  ResponseHeader out = header;
  out.revision = newest;
  if (callbacks.on_events) callbacks.on_events(out, events);
  if (newest > horizon.load()) horizon.store(newest);
  publish(newest);
}

void Mirror::Impl::apply(Item& item) {
  switch (item.kind) {
    case Item::Kind::created:
      if (item.header.cluster_id != cluster_id.load()) {
        request_reset("the endpoints now reach another cluster");
        return;
      }
      session->created = true;
      watch_ok = true;
      backoff = options.retry_backoff;
      if (!verify_ok) next_verify = Clock::now();  // confirm the quorum before reporting "connected"
      update_connection("");
      return;
    case Item::Kind::events:
      apply_events(item.header, item.events);
      return;
    case Item::Kind::ended: {
      bool created = session->created;
      double lived = std::chrono::duration<double>(Clock::now() - session->started).count();
      session->thread.join();
      session.reset();
      const Status& s = item.status;
      if (s.code == Code::compacted) {
        request_reset("revision " + std::to_string(revision.load() + 1) + " compacted (oldest available " +
                      std::to_string(s.compact_revision) + ")");
        return;
      }
      if (s.ok()) {  // stopped by restart_watch()
        rewatch_at = Clock::now();
        return;
      }
      {
        std::lock_guard lock(mu);
        last_error = s.message;
      }
      if (!created) {
        watch_ok = false;
        update_connection(s.message);
      }
      if (created && lived >= kShortSession) {
        PORTICO_LOG(info, "etcd mirror %s: watch lost (%s); resuming from revision %lld", prefix.c_str(),
                    s.message.c_str(), ll(revision.load() + 1));
        rewatch_at = Clock::now();
      } else {
        rewatch_at = Clock::now() + base::seconds(backoff);
        backoff = std::min(backoff * 2, kMaxBackoff);
      }
      return;
    }
  }
}

// One linearizable read of the newest mod_revision and the key count under the prefix. It proves a quorum,
// and compares the copy with etcd. A discrepancy is first assumed to be events in flight; it is a gap only
// if the copy has not caught up with it one interval later (repaired by a re-watch), and a second gap in a
// row means the watch cannot repair it (full read).
void Mirror::Impl::verify() {
  RangeRequest r;
  r.key = first_key;
  r.range_end = range_end;
  r.limit = 1;
  r.keys_only = true;
  r.sort_order = RangeRequest::SortOrder::descend;
  r.sort_target = RangeRequest::SortTarget::mod_revision;
  r.cancel = &cancel;
  RangeResult result;
  if (stopping_now()) return;
  Status s = client.range(r, result);
  if (!s.ok()) {
    if (stopping_now()) return;
    {
      std::lock_guard lock(mu);
      last_error = s.message;
    }
    verify_ok = false;
    update_connection("quorum check failed: " + s.message);
    return;
  }
  if (result.header.cluster_id != cluster_id.load()) {
    request_reset("cluster id changed");
    return;
  }
  verify_ok = true;
  update_connection("");

  int64_t current = revision.load();
  int64_t newest = result.kvs.empty() ? 0 : result.kvs[0].mod_revision;
  bool behind = current < newest;
  bool count_differs = static_cast<int64_t>(keys.size()) != result.count;
  if (!behind && !count_differs) {
    suspicion = {};
    strikes = 0;
    // Nothing under the prefix changed after the copy's revision up to the read's: the copy is etcd's state
    // at that revision too. (Writes elsewhere, e.g. fleet records, move etcd's revision but not the copy's.)
    if (result.header.revision > horizon.load()) horizon.store(result.header.revision);
    return;
  }
  std::string what = "copy at revision " + std::to_string(current) + " with " + std::to_string(keys.size()) +
                     " keys, etcd has mod_revision " + std::to_string(newest) + " and " +
                     std::to_string(result.count) + " keys at revision " +
                     std::to_string(result.header.revision);
  if (!behind && current >= result.header.revision) {
    request_reset(what);  // nothing can be in flight: the copy is wrong
    return;
  }
  if (suspicion.active) {
    bool stuck = suspicion.behind ? current < suspicion.newest : current == suspicion.applied;
    if (stuck) {
      suspicion = {};
      if (++strikes >= 2) {
        request_reset(what + ", still after a re-watch");
      } else {
        restart_watch(what);
      }
      return;
    }
  }
  suspicion = {true, behind, newest, current};
}

void Mirror::Impl::run() {
  backoff = options.retry_backoff;
  while (!stopping_now()) {
    if (need_reset) {
      end_session();
      Status s = full_read();
      if (!s.ok()) {
        if (stopping_now()) break;
        {
          std::lock_guard lock(mu);
          last_error = s.message;
        }
        verify_ok = false;
        update_connection("full read failed: " + s.message);
        std::unique_lock lock(mu);
        wake.wait_for(lock, base::seconds(backoff), [this] { return stopping; });
        backoff = std::min(backoff * 2, kMaxBackoff);
        continue;
      }
      need_reset = false;
      verify_ok = true;
      suspicion = {};
      strikes = 0;
      next_verify = Clock::now() + base::seconds(options.verify_interval);
      start_session();
    }
    if (!session && Clock::now() >= rewatch_at) start_session();

    std::deque<Item> items;
    {
      std::unique_lock lock(mu);
      Clock::time_point until = session ? next_verify : std::min(next_verify, rewatch_at);
      wake.wait_until(lock, until, [this] { return stopping || !queue.empty(); });
      if (stopping) break;
      items.swap(queue);
    }
    for (Item& item : items) {
      apply(item);
      if (need_reset) break;  // the rest is superseded by the full read
    }
    if (!need_reset && Clock::now() >= next_verify) {
      verify();
      next_verify = Clock::now() + base::seconds(options.verify_interval);
    }
  }
  end_session();
}

Mirror::Mirror(EtcdClient& client, std::string prefix, MirrorCallbacks callbacks, MirrorOptions options)
    : impl_(std::make_unique<Impl>(client, std::move(prefix), std::move(callbacks), options)) {}

Mirror::~Mirror() {
  stop();
}

void Mirror::start() {
  if (impl_->thread.joinable()) return;
  impl_->thread = std::thread([this] { impl_->run(); });
}

void Mirror::stop() {
  {
    std::lock_guard lock(impl_->mu);
    impl_->stopping = true;
    impl_->cancel.store(true);
  }
  impl_->wake.notify_all();
  impl_->applied.notify_all();
  if (impl_->thread.joinable()) impl_->thread.join();
}

bool Mirror::wait_for(int64_t revision, double timeout_seconds) {
  std::unique_lock lock(impl_->mu);
  return impl_->applied.wait_for(lock, base::seconds(timeout_seconds), [&] {
    return impl_->revision.load() >= revision || impl_->stopping;
  }) && impl_->revision.load() >= revision;
}

int64_t Mirror::revision() const {
  return impl_->revision.load();
}

int64_t Mirror::horizon() const {
  return impl_->horizon.load();
}

bool Mirror::connected() const {
  return impl_->connected.load();
}

uint64_t Mirror::cluster_id() const {
  return impl_->cluster_id.load();
}

std::string Mirror::last_error() const {
  std::lock_guard lock(impl_->mu);
  return impl_->last_error;
}

}  // namespace portico::store
