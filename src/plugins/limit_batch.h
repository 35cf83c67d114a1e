// Private to src/plugins: limit-count's batched Redis mode (`sync_interval` > 0;
// docs/plugins/limits-redis.md).
//
// Requests are counted in the process (BatchTable, shared by the workers under one mutex) and never wait for
// Redis: a request is admitted while (the key's global count at the last sync + what this process admitted
// since) < count. Every sync_interval seconds each key's unsynced delta goes to Redis in one script
// (INCRBY, the window starting with the key's first increment as in the unbatched mode), whose reply is the
// new global count and the window's remaining time. A sync runs on the worker of the first request that
// finds the interval elapsed (request-driven: an idle process has nothing new to sync), one at a time per
// plugin instance.
//
// Error bound (derived in the docs): with D data planes each admitting at most r requests/s for a key, the
// admitted count per window is at most N + D * r * (sync_interval + sync round trip), and no data plane
// alone admits more than N. While Redis is unreachable each process keeps limiting on its own view (a
// per-process limit of N per window), and never fails a request.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "plugins/limits.h"
#include "redis/registry.h"

namespace portico::plugins {

// The per-process counts. Any thread (one mutex).
class BatchTable {
 public:
  BatchTable(int64_t count, int64_t window_ms) : count_(count), window_ms_(window_ms) {}

  CountDecision admit(std::string_view key, int64_t now_ms);

  struct Delta {
    std::string key;
    int64_t delta = 0;
  };
  // The keys to sync (an unsynced delta, or requests seen since the last sync), their deltas moved to
  // "in flight"; forgets keys whose window ended with nothing left to sync. `out` is cleared first.
  void collect(int64_t now_ms, std::vector<Delta>& out);
  // A sync's outcome for `key`: the global count and the window's remaining ms; or failed (the delta is
  // unsynced again).
  void synced(std::string_view key, bool ok, int64_t global, int64_t pttl_ms, int64_t now_ms);

  size_t size();

 private:
  struct Entry {
    int64_t global = 0;    // the count Redis returned at the last sync
    int64_t inflight = 0;  // sent, not yet answered
    int64_t unsynced = 0;  // admitted since
    int64_t window_end = 0;
    bool touched = false;  // requests since the last sync
  };
  struct Hash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
  };
  std::mutex mu_;
  std::unordered_map<std::string, Entry, Hash, std::equal_to<>> entries_;
  int64_t count_;
  int64_t window_ms_;
};

class BatchedCount final : public CountBackend {
 public:
  BatchedCount(std::shared_ptr<redis::Target> target, uint64_t ns, int64_t count, int64_t window_seconds,
               double interval_seconds, int64_t (*now_ms)());
  bool incoming(RequestContext& ctx, std::string_view key, CountDecision& out) const override;

 private:
  struct Shared;
  class SyncCall;
  void sync(size_t worker, int64_t now) const;

  std::shared_ptr<Shared> shared_;  // kept alive by the syncs in flight
  int64_t interval_ms_;
  int64_t (*now_ms_)();
};

}  // namespace portico::plugins
