// The Redis policies of the limit plugins (limits_redis.h): options, keys, scripts and backends.
#include "plugins/limits_redis.h"

#include <charconv>
#include <cmath>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "plugins/limit_batch.h"
#include "plugins/plugin.h"

namespace portico::plugins {

namespace {

// Scripts run with effects replication (the default since Redis 5), so reading TIME before writing is
// allowed; replicate_commands() turns it on where it is not the default.
#define PORTICO_EFFECTS "if redis.replicate_commands then pcall(redis.replicate_commands) end\n"
#define PORTICO_NOW                \
  "local t = redis.call('TIME')\n" \
  "local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)\n"

// Fixed window, counting up: KEYS[1] the counter; ARGV: limit, window ms. {admitted, remaining, reset ms}.
// The window starts with the key's first request and ends when the key expires (APISIX's semantics).
const redis::Script& fixed_script() {
  static const redis::Script s(
      "local limit = tonumber(ARGV[1])\n"
      "local ttl = redis.call('PTTL', KEYS[1])\n"
      "if ttl < 0 then\n"
      "  redis.call('SET', KEYS[1], 1, 'PX', ARGV[2])\n"
      "  return {1, limit - 1, tonumber(ARGV[2])}\n"
      "end\n"
      "local n = tonumber(redis.call('GET', KEYS[1])) or 0\n"
      "if n >= limit then return {0, 0, ttl} end\n"
      "n = redis.call('INCR', KEYS[1])\n"
      "return {1, limit - n, ttl}\n");
  return s;
}

// Sliding window: a hash {s: current window start, p: previous window's count, c: current's}; windows
// aligned on multiples of the window in Redis' time. Same reply.
const redis::Script& sliding_script() {
  static const redis::Script s(PORTICO_EFFECTS PORTICO_NOW
                               "local limit = tonumber(ARGV[1])\n"
                               "local w = tonumber(ARGV[2])\n"
                               "local start = now - now % w\n"
                               "local h = redis.call('HMGET', KEYS[1], 's', 'p', 'c')\n"
                               "local s = tonumber(h[1])\n"
                               "local p = tonumber(h[2]) or 0\n"
                               "local c = tonumber(h[3]) or 0\n"
                               "if s ~= start then\n"
                               "  if s == start - w then p = c else p = 0 end\n"
                               "  c = 0\n"
                               "end\n"
                               "local est = p * (w - (now - start)) / w + c\n"
                               "if est + 1 > limit then return {0, 0, start + w - now} end\n"
                               "c = c + 1\n"
                               "redis.call('HSET', KEYS[1], 's', start, 'p', p, 'c', c)\n"
                               "redis.call('PEXPIRE', KEYS[1], 2 * w)\n"
                               "return {1, math.floor(limit - est - 1), start + w - now}\n");
  return s;
}

// Leaky bucket: a hash {e: excess, l: last (ms)}; ARGV: rate, burst (thousandths). {admitted, excess}.
const redis::Script& bucket_script() {
  static const redis::Script s(
      PORTICO_EFFECTS PORTICO_NOW
      "local rate = tonumber(ARGV[1])\n"
      "local burst = tonumber(ARGV[2])\n"
      "local h = redis.call('HMGET', KEYS[1], 'e', 'l')\n"
      "local excess = 0\n"
      "if h[1] and h[2] then\n"
      "  excess = math.max(tonumber(h[1]) - rate * math.abs(now - tonumber(h[2])) / 1000 + 1000, 0)\n"
      "end\n"
      "if excess > burst then return {0, math.floor(excess)} end\n"
      "redis.call('HSET', KEYS[1], 'e', excess, 'l', now)\n"
      "redis.call('PEXPIRE', KEYS[1], math.ceil((excess + 1000) / rate * 1000) + 1)\n"
      "return {1, math.floor(excess)}\n");
  return s;
}

// Connections: ARGV: conn + burst, key TTL (s). {admitted, count}. A count below 1 after the INCR means
// releases outlived the key (it expired mid-request): it starts over at 1.
const redis::Script& conn_script() {
  static const redis::Script s(
      "local c = redis.call('INCR', KEYS[1])\n"
      "if c < 1 then redis.call('SET', KEYS[1], 1); c = 1 end\n"
      "redis.call('EXPIRE', KEYS[1], ARGV[2])\n"
      "if c > tonumber(ARGV[1]) then\n"
      "  redis.call('DECR', KEYS[1])\n"
      "  return {0, c}\n"
      "end\n"
      "return {1, c}\n");
  return s;
}

std::string to_text(int64_t v) {
  char buf[24];
  return std::string(format_int(v, buf));
}

std::string& key_buffer() {
  thread_local std::string buffer;
  return buffer;
}

int64_t ceil_seconds(int64_t ms) {
  return ms <= 0 ? 0 : (ms + 999) / 1000;
}

}  // namespace

redis::Options redis_options(const nlohmann::json& conf) {
  redis::Options o;
  const bool cluster = conf.value("policy", std::string("local")) == "redis-cluster";
  o.cluster = cluster;
  o.timeout_seconds = static_cast<double>(conf.value("redis_timeout", int64_t{1000})) / 1000.0;
  o.password = conf.value("redis_password", std::string());
  o.username = conf.value("redis_username", std::string());
  if (cluster) {
    for (const auto& node : conf.at("redis_cluster_nodes")) {
      const std::string& text = node.get_ref<const std::string&>();
      const size_t colon = text.rfind(':');
      int port = 0;
      const char* end = text.data() + text.size();
      if (colon == std::string::npos || colon == 0 ||
          std::from_chars(text.data() + colon + 1, end, port).ptr != end || port <= 0 || port > 65535) {
        throw std::invalid_argument("redis_cluster_nodes: not host:port: " + text);
      }
      std::string host = text.substr(0, colon);
      if (host.size() > 2 && host.front() == '[' && host.back() == ']')
        host = host.substr(1, host.size() - 2);
      o.nodes.emplace_back(std::move(host), static_cast<uint16_t>(port));
    }
    o.tls = conf.value("redis_cluster_ssl", false);
    o.tls_verify = conf.value("redis_cluster_ssl_verify", false);
  } else {
    o.nodes.emplace_back(conf.at("redis_host").get<std::string>(),
                         static_cast<uint16_t>(conf.value("redis_port", 6379)));
    o.database = conf.value("redis_database", 0);
    o.tls = conf.value("redis_ssl", false);
    o.tls_verify = conf.value("redis_ssl_verify", false);
  }
  return o;
}

std::shared_ptr<redis::Target> redis_target(const nlohmann::json& conf, const BuildEnv& env) {
  if (env.redis == nullptr)
    throw std::invalid_argument("policy " + conf.value("policy", std::string()) +
                                ": this process has no Redis registry");
  return env.redis->target(redis_options(conf));
}

void redis_key(std::string_view head, uint64_t ns, std::string_view key, std::string& out) {
  static constexpr char kHex[] = "0123456789abcdef";
  out.assign(head);
  out += ":{";
  for (int shift = 60; shift >= 0; shift -= 4) out += kHex[(ns >> shift) & 15];
  out += ':';
  // The table key's "<route id>\n" (route ids never hold ':') reads better in redis-cli as "<route id>:".
  const size_t at = out.size();
  out += key;
  const size_t nl = out.find('\n', at);
  if (nl != std::string::npos) out[nl] = ':';
  out += '}';
}

// --- the call in flight ---

void RedisLimitCall::start(RequestContext& ctx, redis::Client* client, const redis::Script& script,
                           std::span<const std::string_view> keys, std::span<const std::string_view> args) {
  cancel();
  count = 0;
  result = redis::Result::unavailable;
  completion_ = ctx.suspend();
  client_ = client;
  if (client == nullptr) return completion_.complete();
  client->eval(script, keys, args, this);
}

void RedisLimitCall::complete(redis::Result r, const redis::Reply* reply) {
  result = r;
  count = 0;
  if (r == redis::Result::ok && reply != nullptr && reply->type == redis::ReplyType::array) {
    for (const redis::Reply& e : reply->elements) {
      if (e.type != redis::ReplyType::integer || count == std::size(values)) break;
      values[count++] = e.integer;
    }
  }
  completion_.complete();
}

void RedisLimitCall::cancel() {
  if (client_ != nullptr && pending()) client_->cancel(this);
}

// --- limit-count ---

RedisCount::RedisCount(std::shared_ptr<redis::Target> target, uint64_t ns, int64_t count,
                       int64_t window_seconds, bool sliding)
    : target_(std::move(target)),
      ns_(ns),
      count_(count),
      window_ms_(window_seconds * 1000),
      sliding_(sliding),
      count_arg_(to_text(count)),
      window_arg_(to_text(window_seconds * 1000)) {}

bool RedisCount::incoming(RequestContext& ctx, std::string_view key, CountDecision&) const {
  std::string& k = key_buffer();
  redis_key(sliding_ ? "portico:lcs" : "portico:lc", ns_, key, k);
  const std::string_view keys[] = {k};
  const std::string_view args[] = {count_arg_, window_arg_};
  ctx.state<RedisLimitCall>().start(ctx, target_->client(ctx.worker),
                                    sliding_ ? sliding_script() : fixed_script(), keys, args);
  return false;
}

CountDecision RedisCount::finish(RequestContext& ctx) const {
  const RedisLimitCall& call = ctx.state<RedisLimitCall>();
  CountDecision d;
  d.limit = count_;
  if (!call.answered(3)) return d;  // failed
  d.kind = call.values[0] == 1 ? CountDecision::Kind::allowed : CountDecision::Kind::rejected;
  d.remaining = std::max<int64_t>(0, call.values[1]);
  d.reset = ceil_seconds(call.values[2]);
  return d;
}

// --- limit-req ---

RedisReq::RedisReq(std::shared_ptr<redis::Target> target, uint64_t ns, double rate, double burst)
    : target_(std::move(target)),
      ns_(ns),
      rate_(rate * 1000),
      rate_arg_(to_text(std::llround(rate * 1000))),
      burst_arg_(to_text(std::llround(burst * 1000))) {}

bool RedisReq::incoming(RequestContext& ctx, std::string_view key, ReqDecision&) const {
  std::string& k = key_buffer();
  redis_key("portico:lr", ns_, key, k);
  const std::string_view keys[] = {k};
  const std::string_view args[] = {rate_arg_, burst_arg_};
  ctx.state<RedisLimitCall>().start(ctx, target_->client(ctx.worker), bucket_script(), keys, args);
  return false;
}

ReqDecision RedisReq::finish(RequestContext& ctx) const {
  const RedisLimitCall& call = ctx.state<RedisLimitCall>();
  ReqDecision d;
  if (!call.answered(2)) return d;
  if (call.values[0] != 1) {
    d.kind = ReqDecision::Kind::rejected;
    return d;
  }
  d.kind = ReqDecision::Kind::allowed;
  d.delay = static_cast<double>(call.values[1]) / rate_;
  return d;
}

// --- limit-conn ---

RedisConn::RedisConn(std::shared_ptr<redis::Target> target, size_t workers, uint64_t ns, std::string prefix,
                     int64_t conn, int64_t burst, double default_delay, int64_t key_ttl)
    : target_(std::move(target)),
      ns_(ns),
      prefix_(std::move(prefix)),
      conn_(conn),
      delay_(default_delay),
      max_arg_(to_text(conn + burst)),
      ttl_arg_(to_text(key_ttl)),
      workers_(std::max<size_t>(workers, 1)) {}

bool RedisConn::incoming(RequestContext& ctx, std::string_view key, ConnDecision&) const {
  RedisLimitCall& call = ctx.state<RedisLimitCall>();
  redis_key(prefix_, ns_, key, call.key);
  const std::string_view keys[] = {call.key};
  const std::string_view args[] = {max_arg_, ttl_arg_};
  call.start(ctx, target_->client(ctx.worker), conn_script(), keys, args);
  return false;
}

ConnDecision RedisConn::finish(RequestContext& ctx) const {
  const RedisLimitCall& call = ctx.state<RedisLimitCall>();
  ConnDecision d;
  if (!call.answered(2)) return d;
  if (call.values[0] != 1) {
    d.kind = ConnDecision::Kind::rejected;
    return d;
  }
  d.kind = ConnDecision::Kind::allowed;
  const int64_t c = call.values[1];
  if (c > conn_) d.delay = delay_ * static_cast<double>((c - 1) / conn_);
  if (ctx.worker >= workers_.size()) return d;  // not a worker of this process (tests): no release
  Slots& s = workers_[ctx.worker];
  uint32_t slot;
  if (s.free.empty()) {
    slot = static_cast<uint32_t>(s.keys.size());
    s.keys.emplace_back();
  } else {
    slot = s.free.back();
    s.free.pop_back();
  }
  s.keys[slot].assign(call.key);
  ctx.add_lease(this, (static_cast<uint64_t>(ctx.worker) << 32) | slot, 0);
  return d;
}

void RedisConn::release(uint64_t a, uint64_t, double) const {
  const size_t worker = static_cast<size_t>(a >> 32);
  const uint32_t slot = static_cast<uint32_t>(a);
  Slots& s = workers_[worker];
  const std::string_view argv[] = {"DECR", s.keys[slot]};
  // Fire and forget: the TTL undoes a lost one. No client after shutdown (a context destroyed with its loop).
  if (redis::Client* client = target_->client(worker)) client->command(argv, nullptr);
  s.free.push_back(slot);
}

// --- factories ---

std::unique_ptr<CountBackend> make_redis_count(const nlohmann::json& conf, const BuildEnv& env, uint64_t ns,
                                               LimitStores& stores) {
  auto target = redis_target(conf, env);
  const int64_t count = conf.at("count").get<int64_t>();
  const int64_t window = conf.at("time_window").get<int64_t>();
  const double interval = conf.value("sync_interval", -1.0);
  if (interval > 0) {
    return std::make_unique<BatchedCount>(std::move(target), ns, count, window, interval, stores.now_ms);
  }
  return std::make_unique<RedisCount>(std::move(target), ns, count, window,
                                      conf.value("window_type", std::string("fixed")) == "sliding");
}

std::unique_ptr<ReqBackend> make_redis_req(const nlohmann::json& conf, const BuildEnv& env, uint64_t ns) {
  return std::make_unique<RedisReq>(redis_target(conf, env), ns, conf.at("rate").get<double>(),
                                    conf.at("burst").get<double>());
}

std::unique_ptr<ConnBackend> make_redis_conn(const nlohmann::json& conf, const BuildEnv& env, uint64_t ns) {
  return std::make_unique<RedisConn>(
      redis_target(conf, env), env.workers, ns, conf.value("redis_prefix", std::string("limit_conn")),
      conf.at("conn").get<int64_t>(), conf.at("burst").get<int64_t>(),
      conf.at("default_conn_delay").get<double>(), conf.value("key_ttl", RedisConn::kDefaultKeyTtl));
}

}  // namespace portico::plugins
