// Private to src/plugins: the `redis` and `redis-cluster` policies of limit-count, limit-req and limit-conn
// (docs/plugins/limits-redis.md), next to the local ones of limits.h.
//
// Each decision is one atomic Lua script (EVALSHA, EVAL when the server does not know it: redis::Client)
// that reads the time from Redis (TIME or a key's PTTL), so the data planes' clocks never matter. Keys carry
// a hash tag ("{...}") holding the whole counter name, so a Redis Cluster keeps each counter on one slot.
//
// On the request path a backend issues the script on its worker's redis::Client and suspends the request
// (RequestContext::suspend); the reply (or the client's timeout / `unavailable` while the circuit breaker is
// open) completes it, and finish() turns it into a decision. The call in flight lives in the context's
// RedisLimitCall (a PluginState), cancelled when the request is given up.
//
// The Target is resolved once, when the plugin instance is built (any thread); backends are immutable and
// shared by the workers afterwards, except RedisConn's per-worker lease slots (each written by its worker
// only).
#pragma once

#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "plugins/limits.h"
#include "redis/client.h"
#include "redis/registry.h"

namespace portico::plugins {

struct BuildEnv;

// redis::Options from APISIX's fields: redis_host/redis_port/redis_username/redis_password/redis_database/
// redis_timeout (ms)/redis_ssl/redis_ssl_verify for `redis`; redis_cluster_nodes ["host:port",...]/
// redis_password/redis_timeout/redis_cluster_ssl/redis_cluster_ssl_verify for `redis-cluster`. Throws
// std::invalid_argument for a node that is not host:port.
redis::Options redis_options(const nlohmann::json& conf);

// The Target of `conf` in env.redis; throws std::invalid_argument when the process has no Redis registry.
std::shared_ptr<redis::Target> redis_target(const nlohmann::json& conf, const BuildEnv& env);

// The counter's Redis key: "<head>:{<namespace hex>:<route id>:<key>}" (the hash tag is the whole name; a
// group or global rule has no route id). Heads: portico:lc, portico:lcs, portico:lb, portico:lr and
// limit-conn's redis_prefix.
void redis_key(std::string_view head, uint64_t ns, std::string_view key, std::string& out);

// A number as the shortest text that reads back as the same double ("%.17g"): Lua's tonumber() parses it.
std::string decimal_text(double v);

class RedisConn;

// The context's call in flight (one per context, reused by every Redis limit of the request: they suspend
// one after the other). values[] are the script's integer replies.
class RedisLimitCall final : public PluginState, public redis::Call {
 public:
  ~RedisLimitCall() override { RedisLimitCall::cancel(); }
  // `client` null (the registry shut down): completes at once, `unavailable`.
  void start(RequestContext& ctx, redis::Client* client, const redis::Script& script,
             std::span<const std::string_view> keys, std::span<const std::string_view> args);
  void complete(redis::Result result, const redis::Reply* reply) override;
  // Also gives up the limit-conn lease attempt whose outcome is now unknown (RedisConn::abandon).
  void cancel() override;
  // The script answered an array of at least `n` integers.
  bool answered(size_t n) const { return result == redis::Result::ok && count >= n; }

  // limit-conn: the lease the call in flight tries to add, until RedisConn::finish() takes it back.
  void hold(const RedisConn* owner, uint32_t worker, uint32_t slot) {
    lease_owner_ = owner;
    lease_worker_ = worker;
    lease_slot_ = slot;
  }
  const RedisConn* take_lease(uint32_t& worker, uint32_t& slot) {
    worker = lease_worker_;
    slot = lease_slot_;
    return std::exchange(lease_owner_, nullptr);
  }

  redis::Result result = redis::Result::unavailable;
  int64_t values[4] = {};
  size_t count = 0;

 private:
  redis::Client* client_ = nullptr;
  Completion completion_;
  const RedisConn* lease_owner_ = nullptr;
  uint32_t lease_worker_ = 0, lease_slot_ = 0;
};

// limit-count: fixed window (the window starts with the key's first request, as APISIX; it lasts the key's
// PTTL) or sliding (LocalCount's two-window approximation, windows aligned on Redis' TIME).
class RedisCount final : public CountBackend {
 public:
  RedisCount(std::shared_ptr<redis::Target> target, uint64_t ns, int64_t count, int64_t window_seconds,
             bool sliding);
  bool incoming(RequestContext& ctx, std::string_view key, CountDecision& out) const override;
  CountDecision finish(RequestContext& ctx) const override;

 private:
  std::shared_ptr<redis::Target> target_;
  uint64_t ns_;
  int64_t count_;
  int64_t window_ms_;
  bool sliding_;
  std::string count_arg_, window_arg_;
};

// limit-req: resty.limit.req's leaky bucket in a hash {excess, last} (thousandths of a request, ms).
class RedisReq final : public ReqBackend {
 public:
  RedisReq(std::shared_ptr<redis::Target> target, uint64_t ns, double rate, double burst);
  bool incoming(RequestContext& ctx, std::string_view key, ReqDecision& out) const override;
  ReqDecision finish(RequestContext& ctx) const override;

 private:
  std::shared_ptr<redis::Target> target_;
  uint64_t ns_;
  double rate_;                       // thousandths per second
  std::string rate_arg_, burst_arg_;  // thousandths, as decimal_text (a rate of 0.0001/s is not 0)
};

// limit-conn: one lease per admitted request, a member of a sorted set per key (`<redis_prefix>:leases:`),
// its score the Redis time (ms) it expires at: now + lease_ttl. Admission is one script: drop the expired
// members, compare ZCARD with conn + burst, ZADD the request's unique lease id and refresh the key's TTL
// (on admission only). The release is ZREM of that id: idempotent, fire-and-forget on the worker's client.
// A lease nobody releases (a data plane that died, a ZREM lost) costs one slot until it expires by itself;
// it never locks the key out for longer.
//
// A lease whose admission outcome is unknown (timeout, connection lost after the write, request given up
// while the call was in flight or before the pipeline resumed) is `abandoned`: its id is queued per worker
// and ZREMed as soon as the worker's client is available again (before that worker's next admission on
// it); so is a release while the circuit breaker is open. The queue is bounded (kMaxOrphans); past it, the
// lease's expiry is the only cleanup.
class RedisConn final : public ConnBackend, public LeaseHolder {
 public:
  // APISIX's limit-conn has no TTL field: a lease lives 300 s (see docs/plugins/limits-redis.md).
  static constexpr int64_t kLeaseTtl = 300;
  static constexpr size_t kMaxOrphans = 4096;
  RedisConn(std::shared_ptr<redis::Target> target, size_t workers, uint64_t ns, std::string prefix,
            int64_t conn, int64_t burst, double default_delay, int64_t lease_ttl);
  bool incoming(RequestContext& ctx, std::string_view key, ConnDecision& out) const override;
  ConnDecision finish(RequestContext& ctx) const override;
  void release(uint64_t a, uint64_t b, double request_seconds) const override;
  // The outcome of the lease attempt in `slot` is unknown: ZREM it when the client can send. Worker thread.
  void abandon(uint32_t worker, uint32_t slot) const;
  // Leases owed a ZREM on `worker` (tests).
  size_t orphans(size_t worker) const { return workers_[worker].orphans.size(); }

 private:
  struct Lease {
    std::string key;  // the sorted set
    std::string id;   // the member: "<process token>:<worker>:<counter>"
  };
  struct alignas(64) Slots {  // one worker's leases in flight; `free` lists the unused slots
    std::vector<Lease> leases;
    std::vector<uint32_t> free;
    std::vector<uint32_t> orphans;  // slots owed a ZREM
    uint64_t counter = 0;
  };
  uint32_t take_slot(Slots& s) const;
  void flush(Slots& s, redis::Client& client) const;

  std::shared_ptr<redis::Target> target_;
  uint64_t ns_;
  std::string head_;
  int64_t conn_;
  double delay_;
  std::string max_arg_, ttl_arg_;
  mutable std::vector<Slots> workers_;
};

// The backends of a non-local policy (sync_interval > 0 for limit-count: limit_batch.h).
std::unique_ptr<CountBackend> make_redis_count(const nlohmann::json& conf, const BuildEnv& env, uint64_t ns,
                                               LimitStores& stores);
std::unique_ptr<ReqBackend> make_redis_req(const nlohmann::json& conf, const BuildEnv& env, uint64_t ns);
std::unique_ptr<ConnBackend> make_redis_conn(const nlohmann::json& conf, const BuildEnv& env, uint64_t ns);

}  // namespace portico::plugins
