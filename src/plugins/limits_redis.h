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

// The context's call in flight (one per context, reused by every Redis limit of the request: they suspend
// one after the other). values[] are the script's integer replies.
class RedisLimitCall final : public PluginState, public redis::Call {
 public:
  ~RedisLimitCall() override { RedisLimitCall::cancel(); }
  // `client` null (the registry shut down): completes at once, `unavailable`.
  void start(RequestContext& ctx, redis::Client* client, const redis::Script& script,
             std::span<const std::string_view> keys, std::span<const std::string_view> args);
  void complete(redis::Result result, const redis::Reply* reply) override;
  void cancel() override;
  // The script answered an array of at least `n` integers.
  bool answered(size_t n) const { return result == redis::Result::ok && count >= n; }

  redis::Result result = redis::Result::unavailable;
  int64_t values[4] = {};
  size_t count = 0;
  std::string key;  // the Redis key of the call (limit-conn keeps it for its lease)

 private:
  redis::Client* client_ = nullptr;
  Completion completion_;
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
  double rate_;  // thousandths per second
  std::string rate_arg_, burst_arg_;
};

// limit-conn: INCR with a TTL (key_ttl seconds, refreshed by every admission: a count leaked by a data plane
// that died with requests in flight disappears with it); the release is a fire-and-forget DECR on the
// worker's client, also when the client disconnected mid-request. The key is kept in a per-worker slot until
// then (the lease names the slot).
class RedisConn final : public ConnBackend, public LeaseHolder {
 public:
  static constexpr int64_t kDefaultKeyTtl = 3600;
  RedisConn(std::shared_ptr<redis::Target> target, size_t workers, uint64_t ns, std::string prefix,
            int64_t conn, int64_t burst, double default_delay, int64_t key_ttl);
  bool incoming(RequestContext& ctx, std::string_view key, ConnDecision& out) const override;
  ConnDecision finish(RequestContext& ctx) const override;
  void release(uint64_t a, uint64_t b, double request_seconds) const override;

 private:
  struct Slots {  // one worker's keys of requests in flight; `free` lists the unused slots
    std::vector<std::string> keys;
    std::vector<uint32_t> free;
  };
  std::shared_ptr<redis::Target> target_;
  uint64_t ns_;
  std::string prefix_;
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
