// Private to src/plugins: what limit-count, limit-req and limit-conn share (docs/plugins/limits.md).
//
// - LimitStores: the process-wide local state (one LimitTable per plugin kind) and the clock, owned by the
//   server and reached through BuildEnv::limits (design point 4: it outlives snapshots, so the counters of a
//   plugin configuration that did not change survive a reload, and a limit-count `group` is one counter for
//   every route naming it).
// - LimitKey: the request's key (key_type var / var_combination / constant), as APISIX resolves it.
// - The backends: each plugin counts through an interface with a `local` implementation (here) and, later,
//   Redis ones. A backend either answers at once (incoming() returns true) or suspends the request
//   (RequestContext::suspend, incoming() returns false) and answers in finish() when the plugin resumes.
//
// Backends are immutable after construction and shared by every worker; any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "plugins/context.h"
#include "plugins/limit_table.h"
#include "plugins/template.h"

namespace portico::plugins {

struct LimitStores {
  // Slots per table. Each slot is about 80 bytes plus its key: ~10 MB per table once used, in the order of
  // APISIX's 10m-20m shared dicts.
  static constexpr size_t kDefaultCapacity = 1 << 17;
  explicit LimitStores(size_t capacity = kDefaultCapacity) : count(capacity), req(capacity), conn(capacity) {}
  LimitTable count;
  LimitTable req;
  LimitTable conn;
  // Milliseconds on a monotonic clock; tests replace it.
  int64_t (*now_ms)() = &steady_ms;
  static int64_t steady_ms();
};

// A stable 64-bit namespace for a plugin configuration: the same configuration (the same validated JSON)
// gives the same namespace in every build, so a rebuilt instance finds its counters again.
uint64_t conf_namespace(std::string_view plugin, const nlohmann::json& conf);

class LimitKey {
 public:
  // `key_type`/`key` as validated ("var": a variable name without '$'; "var_combination": a template;
  // "constant": the text). Throws std::invalid_argument for a variable this version does not know.
  LimitKey(std::string_view key_type, const std::string& key);
  // Appends the key to `out`: the constant, or the expansion; a key that resolves empty (a missing header,
  // no consumer) is the client address instead, as APISIX falls back to remote_addr.
  void resolve(const RequestContext& ctx, std::string& out) const;

 private:
  bool constant_ = false;
  std::string text_;
  Template template_;
  size_t literal_size_ = 0;  // bytes of template text: an expansion no longer than this resolved nothing
};

// --- limit-count ---
struct CountDecision {
  enum class Kind : uint8_t { allowed, rejected, failed };
  Kind kind = Kind::failed;
  int64_t limit = 0;
  int64_t remaining = 0;
  int64_t reset = 0;  // seconds until the window ends
};

class CountBackend {
 public:
  virtual ~CountBackend() = default;
  virtual bool incoming(RequestContext& ctx, std::string_view key, CountDecision& out) const = 0;
  virtual CountDecision finish(RequestContext&) const { return {}; }
};

// Fixed window (APISIX's resty.limit.count: the window starts with the key's first request and lasts
// time_window seconds) or sliding (two fixed windows aligned on multiples of time_window, the previous one
// weighted by the part of it still inside the sliding window: Cloudflare's and nginx's approximation).
class LocalCount final : public CountBackend {
 public:
  LocalCount(LimitStores& stores, uint64_t ns, int64_t count, int64_t window_seconds, bool sliding)
      : stores_(stores), ns_(ns), count_(count), window_ms_(window_seconds * 1000), sliding_(sliding) {}
  bool incoming(RequestContext& ctx, std::string_view key, CountDecision& out) const override;
  CountDecision take(std::string_view key, int64_t now_ms) const;

 private:
  LimitStores& stores_;
  uint64_t ns_;
  int64_t count_;
  int64_t window_ms_;
  bool sliding_;
};

// --- limit-req ---
struct ReqDecision {
  enum class Kind : uint8_t { allowed, rejected, failed };
  Kind kind = Kind::failed;
  double delay = 0;  // seconds the request should wait (the bucket's excess over the rate)
};

class ReqBackend {
 public:
  virtual ~ReqBackend() = default;
  virtual bool incoming(RequestContext& ctx, std::string_view key, ReqDecision& out) const = 0;
  virtual ReqDecision finish(RequestContext&) const { return {}; }
};

// resty.limit.req's leaky bucket: the excess drains at `rate` per second; a request adds one; above `burst`
// it is rejected (and not counted); otherwise it waits excess / rate seconds.
class LocalReq final : public ReqBackend {
 public:
  LocalReq(LimitStores& stores, uint64_t ns, double rate, double burst)
      : stores_(stores), ns_(ns), rate_(rate), burst_(burst) {}
  bool incoming(RequestContext& ctx, std::string_view key, ReqDecision& out) const override;
  ReqDecision take(std::string_view key, int64_t now_ms) const;

 private:
  LimitStores& stores_;
  uint64_t ns_;
  double rate_;
  double burst_;
};

// --- limit-conn ---
struct ConnDecision {
  enum class Kind : uint8_t { allowed, rejected, failed };
  Kind kind = Kind::failed;
  double delay = 0;
};

class ConnBackend {
 public:
  virtual ~ConnBackend() = default;
  // On `allowed`, the backend recorded a lease in ctx (released after the log phase).
  virtual bool incoming(RequestContext& ctx, std::string_view key, ConnDecision& out) const = 0;
  virtual ConnDecision finish(RequestContext&) const { return {}; }
};

// resty.limit.conn: a count of requests in flight per key; above conn + burst rejected; above conn delayed
// by default_conn_delay for each `conn` requests ahead. The delay unit follows the requests' durations (the
// mean of the unit and each finished request's time, less its own delay) unless only_use_default_delay.
class LocalConn final : public ConnBackend, public LeaseHolder {
 public:
  LocalConn(LimitStores& stores, uint64_t ns, int64_t conn, int64_t burst, double default_delay,
            bool only_default_delay)
      : stores_(stores),
        ns_(ns),
        conn_(conn),
        burst_(burst),
        unit_delay_(default_delay),
        only_default_(only_default_delay) {}
  bool incoming(RequestContext& ctx, std::string_view key, ConnDecision& out) const override;
  // Without a context (tests): the decision and, when allowed, the handle to give back.
  ConnDecision take(std::string_view key, int64_t now_ms, LimitTable::Handle& handle) const;
  // `a`: the handle; `b`: the delay given, in microseconds.
  void release(uint64_t a, uint64_t b, double request_seconds) const override;
  double unit_delay() const { return unit_delay_.load(std::memory_order_relaxed); }

 private:
  LimitStores& stores_;
  uint64_t ns_;
  int64_t conn_;
  int64_t burst_;
  mutable std::atomic<double> unit_delay_;
  bool only_default_;
};

// Formats `v` into `buf` (at least 24 bytes); the text's view.
std::string_view format_int(int64_t v, char* buf);

}  // namespace portico::plugins
