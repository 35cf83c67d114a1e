// limit-count's batched Redis mode (limit_batch.h).
#include "plugins/limit_batch.h"

#include <algorithm>

#include "plugins/limits_redis.h"

namespace portico::plugins {

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

CountDecision BatchTable::admit(std::string_view key, int64_t now) {
  std::lock_guard lock(mu_);
  auto it = entries_.find(key);
  if (it == entries_.end())
    it = entries_.emplace(std::string(key), Entry{.window_end = now + window_ms_}).first;
  Entry& e = it->second;
  if (now >= e.window_end) {  // the window ended here first: Redis' count has expired too (or will)
    e.global = 0;
    e.unsynced = 0;
    e.window_end = now + window_ms_;
  }
  e.touched = true;
  const int64_t used = e.global + e.inflight + e.unsynced;
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

void BatchTable::collect(int64_t now, std::vector<Delta>& out) {
  out.clear();
  std::lock_guard lock(mu_);
  for (auto it = entries_.begin(); it != entries_.end();) {
    Entry& e = it->second;
    if (e.unsynced > 0 || e.touched) {
      out.push_back({it->first, e.unsynced});
      e.inflight += e.unsynced;
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
  } else {
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
  Shared(std::shared_ptr<redis::Target> t, uint64_t n, int64_t count, int64_t window_ms)
      : table(count, window_ms), target(std::move(t)), ns(n) {
    char buf[24];
    window_arg = std::string(format_int(window_ms, buf));
  }
  BatchTable table;
  std::shared_ptr<redis::Target> target;
  uint64_t ns;
  std::string window_arg;
  std::atomic<int64_t> next_sync{0};
  std::atomic<int> inflight{0};
  std::vector<BatchTable::Delta> scratch;  // the syncing worker's (one sync at a time)
};

// One key's sync: owns itself until the client completes it (also after the plugin instance is gone).
class BatchedCount::SyncCall final : public redis::Call {
 public:
  SyncCall(std::shared_ptr<Shared> shared, std::string key, int64_t (*now_ms)())
      : shared_(std::move(shared)), key_(std::move(key)), now_ms_(now_ms) {}
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
                          now_ms_());
    shared_->inflight.fetch_sub(1, std::memory_order_acq_rel);
    delete this;
  }

 private:
  std::shared_ptr<Shared> shared_;
  std::string key_;
  int64_t (*now_ms_)();
};

BatchedCount::BatchedCount(std::shared_ptr<redis::Target> target, uint64_t ns, int64_t count,
                           int64_t window_seconds, double interval_seconds, int64_t (*now_ms)())
    : shared_(std::make_shared<Shared>(std::move(target), ns, count, window_seconds * 1000)),
      interval_ms_(std::max<int64_t>(1, static_cast<int64_t>(interval_seconds * 1000))),
      now_ms_(now_ms) {}

bool BatchedCount::incoming(RequestContext& ctx, std::string_view key, CountDecision& out) const {
  const int64_t now = now_ms_();
  out = shared_->table.admit(key, now);
  int64_t next = shared_->next_sync.load(std::memory_order_relaxed);
  if (now >= next && shared_->inflight.load(std::memory_order_acquire) == 0 &&
      shared_->next_sync.compare_exchange_strong(next, now + interval_ms_)) {
    sync(ctx.worker, now);
  }
  return true;
}

void BatchedCount::sync(size_t worker, int64_t now) const {
  Shared& s = *shared_;
  s.table.collect(now, s.scratch);
  if (s.scratch.empty()) return;
  redis::Client* client = s.target->client(worker);
  if (client == nullptr) return;  // the registry shut down
  s.inflight.fetch_add(static_cast<int>(s.scratch.size()), std::memory_order_acq_rel);
  for (BatchTable::Delta& d : s.scratch) {
    auto* call = new SyncCall(shared_, std::move(d.key), now_ms_);
    call->start(*client, d.delta);
  }
}

}  // namespace portico::plugins
