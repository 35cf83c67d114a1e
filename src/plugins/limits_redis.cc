// The Redis policies of the limit plugins (limits_redis.h): options, keys, scripts and backends.
#include "plugins/limits_redis.h"

#include <unistd.h>

#include <charconv>
#include <cmath>
#include <cstdio>
#include <random>
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
      // capped (~300 years) so that a tiny rate still gives an integer Lua prints without an exponent
      "redis.call('PEXPIRE', KEYS[1], math.min(math.ceil((excess + 1000) / rate * 1000) + 1, 1e13))\n"
      "return {1, math.floor(excess)}\n");
  return s;
}

// Connections: a sorted set of leases scored by their expiry (Redis ms). ARGV: conn + burst, lease TTL (s),
// the lease id. {admitted, leases held (this one included when admitted)}. Expired leases (never released)
// are dropped first, so they stop counting by themselves; a rejected attempt neither adds a lease nor
// extends the key's life, so a busy key's leaked leases still expire.
const redis::Script& conn_script() {
  static const redis::Script s(PORTICO_EFFECTS PORTICO_NOW
                               "local ttl = tonumber(ARGV[2]) * 1000\n"
                               "redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)\n"
                               "local c = redis.call('ZCARD', KEYS[1])\n"
                               "if c >= tonumber(ARGV[1]) then return {0, c} end\n"
                               "redis.call('ZADD', KEYS[1], now + ttl, ARGV[3])\n"
                               "redis.call('PEXPIRE', KEYS[1], ttl)\n"
                               "return {1, c + 1}\n");
  return s;
}

// Distinguishes this process's lease ids from every other data plane's (and from an earlier run's).
const std::string& process_token() {
  static const std::string token = [] {
    std::random_device rd;
    const uint64_t r = (static_cast<uint64_t>(rd()) << 32) ^ rd() ^ static_cast<uint64_t>(::getpid());
    static constexpr char kHex[] = "0123456789abcdef";
    std::string t;
    for (int shift = 60; shift >= 0; shift -= 4) t += kHex[(r >> shift) & 15];
    return t;
  }();
  return token;
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

std::string decimal_text(double v) {
  char buf[32];
  const int n = std::snprintf(buf, sizeof buf, "%.17g", v);
  return std::string(buf, static_cast<size_t>(n));
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
  uint32_t worker, slot;
  // The script may have run (or may still run): its lease is owed a ZREM.
  if (const RedisConn* owner = take_lease(worker, slot)) owner->abandon(worker, slot);
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
      rate_arg_(decimal_text(rate * 1000)),
      burst_arg_(decimal_text(burst * 1000)) {}

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
                     int64_t conn, int64_t burst, double default_delay, int64_t lease_ttl)
    : target_(std::move(target)),
      ns_(ns),
      // Not the INCR counter's key of earlier versions: a data plane of either kind meeting the other's key
      // would fail every request with WRONGTYPE.
      head_(std::move(prefix) + ":leases"),
      conn_(conn),
      delay_(default_delay),
      max_arg_(to_text(conn + burst)),
      ttl_arg_(to_text(lease_ttl)),
      workers_(std::max<size_t>(workers, 1)) {}

uint32_t RedisConn::take_slot(Slots& s) const {
  if (s.free.empty()) {
    s.leases.emplace_back();
    return static_cast<uint32_t>(s.leases.size() - 1);
  }
  const uint32_t slot = s.free.back();
  s.free.pop_back();
  return slot;
}

void RedisConn::flush(Slots& s, redis::Client& client) const {
  if (s.orphans.empty() || !client.available()) return;
  for (uint32_t slot : s.orphans) {
    const std::string_view argv[] = {"ZREM", s.leases[slot].key, s.leases[slot].id};
    client.command(argv, nullptr);
    s.free.push_back(slot);
  }
  s.orphans.clear();
}

bool RedisConn::incoming(RequestContext& ctx, std::string_view key, ConnDecision&) const {
  RedisLimitCall& call = ctx.state<RedisLimitCall>();
  redis::Client* client = target_->client(ctx.worker);  // null after shutdown: the call fails at once
  if (ctx.worker >= workers_.size()) {  // not a worker of this process (tests): a lease nobody releases
    thread_local Lease lease;
    redis_key(head_, ns_, key, lease.key);
    lease.id = process_token() + ":test";
    const std::string_view keys[] = {lease.key};
    const std::string_view args[] = {max_arg_, ttl_arg_, lease.id};
    call.start(ctx, client, conn_script(), keys, args);
    return false;
  }
  Slots& s = workers_[ctx.worker];
  if (client != nullptr)
    flush(s, *client);  // before this admission, on the same connection: freed slots count
  const uint32_t slot = take_slot(s);
  Lease& l = s.leases[slot];
  redis_key(head_, ns_, key, l.key);
  char buf[24];
  l.id.assign(process_token());
  l.id += ':';
  l.id += format_int(static_cast<int64_t>(ctx.worker), buf);
  l.id += ':';
  l.id += format_int(static_cast<int64_t>(++s.counter), buf);
  const std::string_view keys[] = {l.key};
  const std::string_view args[] = {max_arg_, ttl_arg_, l.id};
  call.start(ctx, client, conn_script(), keys, args);
  call.hold(this, static_cast<uint32_t>(ctx.worker), slot);
  return false;
}

ConnDecision RedisConn::finish(RequestContext& ctx) const {
  RedisLimitCall& call = ctx.state<RedisLimitCall>();
  uint32_t worker, slot;
  const bool held = call.take_lease(worker, slot) == this;
  ConnDecision d;
  if (!call.answered(2)) {  // failed: the lease may or may not be in Redis
    if (held) abandon(worker, slot);
    return d;
  }
  if (call.values[0] != 1) {
    d.kind = ConnDecision::Kind::rejected;
    if (held) workers_[worker].free.push_back(slot);
    return d;
  }
  d.kind = ConnDecision::Kind::allowed;
  const int64_t c = call.values[1];
  if (c > conn_) d.delay = delay_ * static_cast<double>((c - 1) / conn_);
  if (held) ctx.add_lease(this, (static_cast<uint64_t>(worker) << 32) | slot, 0);
  return d;
}

void RedisConn::abandon(uint32_t worker, uint32_t slot) const {
  Slots& s = workers_[worker];
  if (s.orphans.size() < kMaxOrphans) {
    s.orphans.push_back(slot);
  } else {
    s.free.push_back(slot);  // its expiry cleans up
  }
}

void RedisConn::release(uint64_t a, uint64_t, double) const {
  const size_t worker = static_cast<size_t>(a >> 32);
  const uint32_t slot = static_cast<uint32_t>(a);
  Slots& s = workers_[worker];
  // No client after shutdown (a context destroyed with its loop): the lease's expiry undoes it.
  redis::Client* client = target_->client(worker);
  if (client == nullptr) {
    s.free.push_back(slot);
    return;
  }
  if (!client->available()) {  // a command now would be dropped: ZREM it once the breaker closes
    abandon(static_cast<uint32_t>(worker), slot);
    return;
  }
  flush(s, *client);
  const std::string_view argv[] = {"ZREM", s.leases[slot].key, s.leases[slot].id};
  client->command(argv, nullptr);  // fire and forget: the lease's expiry undoes a lost one
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
    return std::make_unique<BatchedCount>(std::move(target), ns, count, window, interval, stores.now_ms,
                                          env.redis->context(0));
  }
  return std::make_unique<RedisCount>(std::move(target), ns, count, window,
                                      conf.value("window_type", std::string("fixed")) == "sliding");
}

std::unique_ptr<ReqBackend> make_redis_req(const nlohmann::json& conf, const BuildEnv& env, uint64_t ns) {
  return std::make_unique<RedisReq>(redis_target(conf, env), ns, conf.at("rate").get<double>(),
                                    conf.at("burst").get<double>());
}

std::unique_ptr<ConnBackend> make_redis_conn(const nlohmann::json& conf, const BuildEnv& env, uint64_t ns) {
  return std::make_unique<RedisConn>(redis_target(conf, env), env.workers, ns,
                                     conf.value("redis_prefix", std::string("limit_conn")),
                                     conf.at("conn").get<int64_t>(), conf.at("burst").get<int64_t>(),
                                     conf.at("default_conn_delay").get<double>(), RedisConn::kLeaseTtl);
}

}  // namespace portico::plugins
