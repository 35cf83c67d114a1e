// limit-count's batched Redis mode (limit_batch.h).
#include "plugins/limit_batch.h"

#include <algorithm>
#include <chrono>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include "plugins/limits_redis.h"

namespace portico::plugins {

namespace asio = boost::asio;

namespace {

// KEYS[1] the counter; ARGV: delta, window ms. {global count, window ms left}. The window starts with the
// key's first increment, as in the unbatched fixed window.
const redis::Script& sync_script() {
  static const redis::Script s(
      "local n = redis.call('INCRBY', KEYS[1], ARGV[1])\n"
      "local ttl = redis.call('PTTL', KEYS[1])\n"
      "if ttl < 0 then\n"
      "  redis.call('PEXPIRE', KEYS[1], ARGV[2])\n"
      "  ttl = tonumber(ARGV[2])\n"
      "end\n"
      "return {n, ttl}\n");
  return s;
}

int64_t ceil_seconds(int64_t ms) {
  return ms <= 0 ? 0 : (ms + 999) / 1000;
}

}  // namespace

// --- BatchTable ---

CountDecision BatchTable::admit(std::string_view key, int64_t now, bool* start_timer) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) {
    if (entries_.size() >= capacity_) make_room(now);
    it = entries_.emplace(std::string(key), Entry{.window_end = now + window_ms_}).first;
  }
  if (start_timer != nullptr && !timer_) timer_ = *start_timer = true;
  Entry& e = it->second;
  if (now >= e.window_end) {  // the window ended here first: Redis' count has expired too (or will)
    e.global = 0;
    e.unsynced = 0;
    ++e.window;  // what is in flight belonged to the old window: it stops counting here
    e.window_end = now + window_ms_;
  }
  e.touched = true;
  const int64_t used = e.global + (e.inflight_window == e.window ? e.inflight : 0) + e.unsynced;
  CountDecision d;
  d.limit = count_;
  d.reset = ceil_seconds(e.window_end - now);
  if (used >= count_) {
    d.kind = CountDecision::Kind::rejected;
    return d;
  }
  ++e.unsynced;
  d.kind = CountDecision::Kind::allowed;
  d.remaining = count_ - used - 1;
  return d;
}

void BatchTable::make_room(int64_t now) {
  for (auto it = entries_.begin(); it != entries_.end();) {
    it = now >= it->second.window_end ? entries_.erase(it) : std::next(it);
  }
  if (entries_.size() < capacity_) return;
  // Every window is live: evict those that end first (they had the least left to count), a batch at once
  // so that a flood of new keys pays one scan per capacity/16 keys.
  using It = decltype(entries_)::iterator;
  std::vector<std::pair<int64_t, It>> ends;
  ends.reserve(entries_.size());
  for (auto it = entries_.begin(); it != entries_.end(); ++it) ends.emplace_back(it->second.window_end, it);
  const size_t n = std::min(ends.size(), std::max<size_t>(1, capacity_ / 16));
  std::nth_element(ends.begin(), ends.begin() + static_cast<ptrdiff_t>(n - 1), ends.end(),
                   [](const auto& a, const auto& b) { return a.first < b.first; });
  for (size_t k = 0; k < n; ++k) entries_.erase(ends[k].second);
}

bool BatchTable::stop_timer_if_empty() {
  std::lock_guard lock(mu_);
  if (!entries_.empty()) return false;
  timer_ = false;
  return true;
}

void BatchTable::collect(int64_t now, std::vector<Delta>& out) {
  out.clear();
  std::lock_guard lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    if (e.unsynced > 0 || e.touched) {
      out.push_back({it->first, e.unsynced});
      if (e.inflight_window != e.window) e.inflight = 0;
      e.inflight += e.unsynced;
      e.inflight_window = e.window;
      e.unsynced = 0;
      e.touched = false;
    } else if (now >= e.window_end && e.inflight == 0) {
      it = entries_.erase(it);
      continue;
    }
    ++it;
  }
}

void BatchTable::synced(std::string_view key, bool ok, int64_t global, int64_t pttl, int64_t now) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end()) return;
  Entry& e = it->second;
  if (ok) {
    e.global = global;
    e.window_end = now + std::max<int64_t>(pttl, 0);
  } else if (e.inflight_window == e.window) {
    e.unsynced += e.inflight;
  }
  e.inflight = 0;
}

size_t BatchTable::size() {
  std::lock_guard lock(mu_);
  return entries_.size();
}

// --- BatchedCount ---

struct BatchedCount::Shared {
  Shared(std::shared_ptr<redis::Target> t, uint64_t n, int64_t count, int64_t window_ms, size_t capacity,
         int64_t interval, int64_t (*now)(), asio::io_context* l)
      : table(count, window_ms, capacity),
        target(std::move(t)),
        ns(n),
        interval_ms(interval),
        now_ms(now),
        loop(l) {
    char buf[24];
    window_arg = std::string(format_int(window_ms, buf));
  }
  // One sync: issues every key's delta on `worker`'s client, unless another sync is being issued or the
  // previous one's calls are not all answered yet.
  static void sync(const std::shared_ptr<Shared>& self, size_t worker, int64_t now);

  BatchTable table;
  std::shared_ptr<redis::Target> target;
  uint64_t ns;
  int64_t interval_ms;
  int64_t (*now_ms)();
  asio::io_context* loop;
  std::string window_arg;
  std::atomic<int64_t> next_sync{0};  // request-driven mode
  std::atomic<bool> token{false};     // held while a sync collects and issues its calls
  std::atomic<int> inflight{0};       // calls issued, not answered
  std::atomic<bool> stopped{false};   // the plugin instance is gone: the timer stops
};

// One key's sync: owns itself until the client completes it (also after the plugin instance is gone).
class BatchedCount::SyncCall final : public redis::Call {
 public:
  SyncCall(std::shared_ptr<Shared> shared, std::string key)
      : shared_(std::move(shared)), key_(std::move(key)) {}
  void start(redis::Client& client, int64_t delta) {
    std::string rkey;
    redis_key("portico:lb", shared_->ns, key_, rkey);
    char buf[24];
    const std::string_view keys[] = {rkey};
    const std::string_view args[] = {format_int(delta, buf), shared_->window_arg};
    client.eval(sync_script(), keys, args, this);
  }
  void complete(redis::Result result, const redis::Reply* reply) override {
    const bool ok = result == redis::Result::ok && reply != nullptr &&
                    reply->type == redis::ReplyType::array && reply->elements.size() >= 2 &&
                    reply->elements[0].type == redis::ReplyType::integer &&
                    reply->elements[1].type == redis::ReplyType::integer;
    shared_->table.synced(key_, ok, ok ? reply->elements[0].integer : 0, ok ? reply->elements[1].integer : 0,
                          shared_->now_ms());
    shared_->inflight.fetch_sub(1, std::memory_order_acq_rel);
    delete this;
  }

 private:
  std::shared_ptr<Shared> shared_;
  std::string key_;
};

void BatchedCount::Shared::sync(const std::shared_ptr<Shared>& self, size_t worker, int64_t now) {
  Shared& s = *self;
  bool idle = false;
  if (!s.token.compare_exchange_strong(idle, true, std::memory_order_acq_rel)) return;
  // Only the token's holder adds to `inflight`, so zero stays zero until it issues.
  redis::Client* client = s.target->client(worker);  // null after shutdown: nothing is synced any more
  if (client != nullptr && s.inflight.load(std::memory_order_acquire) == 0) {
    std::vector<BatchTable::Delta> batch;
    s.table.collect(now, batch);
    s.inflight.fetch_add(static_cast<int>(batch.size()), std::memory_order_acq_rel);
    // A completion never runs inside eval(): `inflight` only drops after the loop.
    for (BatchTable::Delta& d : batch) (new SyncCall(self, std::move(d.key)))->start(*client, d.delta);
  }
  s.token.store(false, std::memory_order_release);
}

// The timed sync on worker 0's loop: one tick per interval while the table has keys. It holds the state
// only weakly between ticks, so a destroyed plugin instance's timer ends at its next tick; a stopped loop
// destroys it with its pending handlers.
class BatchedCount::Ticker : public std::enable_shared_from_this<Ticker> {
 public:
  Ticker(std::weak_ptr<Shared> shared, asio::io_context& loop, int64_t interval_ms)
      : shared_(std::move(shared)), timer_(loop), interval_(interval_ms) {}
  static void start(const std::shared_ptr<Shared>& shared) {
    auto t = std::make_shared<Ticker>(shared, *shared->loop, shared->interval_ms);
    asio::post(*shared->loop, [t] { t->arm(); });
  }

 private:
  void arm() {
    timer_.expires_after(std::chrono::milliseconds(interval_));
    timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) { self->tick(ec); });
  }
  void tick(const boost::system::error_code& ec) {
    if (ec) return;
    std::shared_ptr<Shared> s = shared_.lock();
    if (!s || s->stopped.load(std::memory_order_acquire)) return;
    Shared::sync(s, 0, s->now_ms());
    if (s->table.stop_timer_if_empty()) return;  // the next new key starts another
    arm();
  }

  std::weak_ptr<Shared> shared_;
  asio::steady_timer timer_;
  int64_t interval_;
};

BatchedCount::BatchedCount(std::shared_ptr<redis::Target> target, uint64_t ns, int64_t count,
                           int64_t window_seconds, double interval_seconds, int64_t (*now_ms)(),
                           asio::io_context* loop, size_t capacity)
    : shared_(std::make_shared<Shared>(std::move(target), ns, count, window_seconds * 1000, capacity,
                                       std::max<int64_t>(1, static_cast<int64_t>(interval_seconds * 1000)),
                                       now_ms, loop)) {}

BatchedCount::~BatchedCount() {
  shared_->stopped.store(true, std::memory_order_release);
}

bool BatchedCount::incoming(RequestContext& ctx, std::string_view key, CountDecision& out) const {
  Shared& s = *shared_;
  const int64_t now = s.now_ms();
  if (s.loop != nullptr) {
    bool start_timer = false;
    out = s.table.admit(key, now, &start_timer);
    if (start_timer) Ticker::start(shared_);
    return true;
  }
  out = s.table.admit(key, now);
  int64_t next = s.next_sync.load(std::memory_order_relaxed);
  if (now >= next && s.next_sync.compare_exchange_strong(next, now + s.interval_ms)) {
    Shared::sync(shared_, ctx.worker, now);
  }
  return true;
}

}  // namespace portico::plugins
