// Private to src/plugins: limit-count's batched Redis mode (`sync_interval` > 0;
// docs/plugins/limits-redis.md).
//
// Requests are counted in the process (BatchTable, shared by the workers under one mutex) and never wait for
// Redis: a request is admitted while (the key's global count at the last sync + what this process admitted
// since) < count. Every sync_interval seconds each key's unsynced delta goes to Redis in one script
// (INCRBY, the window starting with the key's first increment as in the unbatched mode), whose reply is the
// new global count and the window's remaining time. The sync runs on worker 0's event loop, on a timer
// every sync_interval while the table has keys (started by the request that adds a key to an empty table,
// stopped when the table empties, the plugin instance is destroyed or the loop stops); one at a time per
// plugin instance (an atomic token, held until every call of the sync is issued). Without an event loop
// (unit tests) the sync is request-driven instead: run by the first request that finds the interval elapsed.
//
// The table is bounded (capacity keys): when full, keys whose window ended are purged; if still full, the
// keys closest to their window's end are evicted (a sixteenth of the capacity at once), their unsynced
// deltas lost.
//
// Error bound (derived in the docs): with D data planes each admitting at most r requests/s for a key, the
// admitted count per window is at most N + D * r * (sync_interval + sync round trip), and no data plane
// alone admits more than N. While Redis is unreachable each process keeps limiting on its own view (a
// per-process limit of N per window), and never fails a request.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "plugins/limits.h"
#include "redis/registry.h"

namespace boost::asio {
class io_context;
}

namespace portico::plugins {

// The per-process counts. Any thread (one mutex).
class BatchTable {
 public:
  BatchTable(int64_t count, int64_t window_ms, size_t capacity = LimitStores::kDefaultCapacity)
      : count_(count), window_ms_(window_ms), capacity_(std::max<size_t>(capacity, 1)) {}

  // `start_timer` (optional): set when the caller must start the timed sync (the table had no timer
  // running); the table then counts it as running.
  CountDecision admit(std::string_view key, int64_t now_ms, bool* start_timer = nullptr);
  // The timed sync may stop: the table is empty (it then counts the timer as stopped).
  bool stop_timer_if_empty();

  struct Delta {
    std::string key;
    int64_t delta = 0;
  };
  // The keys to sync (an unsynced delta, or requests seen since the last sync), their deltas moved to
  // "in flight"; forgets keys whose window ended with nothing left to sync. `out` is cleared first.
  void collect(int64_t now_ms, std::vector<Delta>& out);
  // A sync's outcome for `key`: the global count and the window's remaining ms; or failed (the delta is
  // unsynced again, unless its window ended meanwhile: it counts for no later window).
  void synced(std::string_view key, bool ok, int64_t global, int64_t pttl_ms, int64_t now_ms);

  size_t size();
  size_t capacity() const { return capacity_; }

 private:
  struct Entry {
    int64_t global = 0;    // the count Redis returned at the last sync
    int64_t inflight = 0;  // sent, not yet answered
    int64_t unsynced = 0;  // admitted since
    int64_t window_end = 0;
    uint32_t window = 0;           // local windows started (rollovers)
    uint32_t inflight_window = 0;  // the window `inflight` was admitted in
    bool touched = false;          // requests since the last sync
  };
  // Room for one more key (mu_ held).
  void make_room(int64_t now_ms);
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> entries_;
  bool timer_ = false;
  int64_t count_;
  int64_t window_ms_;
  size_t capacity_;
};

class BatchedCount final : public CountBackend {
 public:
  // `loop`: worker 0's event loop, where the timed sync runs; null: request-driven syncs.
  BatchedCount(std::shared_ptr<redis::Target> target, uint64_t ns, int64_t count, int64_t window_seconds,
               double interval_seconds, int64_t (*now_ms)(), boost::asio::io_context* loop,
               size_t capacity = LimitStores::kDefaultCapacity);
  ~BatchedCount() override;  // stops the timer (at its next tick)
  bool incoming(RequestContext& ctx, std::string_view key, CountDecision& out) const override;

 private:
  struct Shared;
  class SyncCall;
  class Ticker;

  std::shared_ptr<Shared> shared_;  // kept alive by the syncs in flight and the timer's current tick
};

}  // namespace portico::plugins
