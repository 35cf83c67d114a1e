// The rate limits' local state (limit_table.h, limits.h) with an injected clock, and the three plugins as
// the pipeline runs them (answers, headers, keys, groups, counters kept across a rebuild, leases).
#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "plugins/limits.h"
#include "plugins/pipeline.h"
#include "plugins_test_support.h"

namespace portico::plugins {
namespace {

using test::json;
using test::Request;

int64_t fake_now = 1'000'000;

// "<prefix><n>" (GCC 12 warns, wrongly, about `"literal" + std::to_string(n)`).
std::string named(std::string prefix, int n) {
  prefix += std::to_string(n);
  return prefix;
}
int64_t now_fn() {
  return fake_now;
}

struct Stores : LimitStores {
  explicit Stores(size_t capacity = 4096) : LimitStores(capacity) {
    now_ms = &now_fn;
    fake_now = 1'000'000;
  }
};

TEST(LimitTable, EntriesExpireAndAFullTableEvictsTheSoonestToExpireButNeverAPinnedOne) {
  LimitTable table(1);  // the minimum: 64 stripes x 8 slots
  ASSERT_EQ(table.capacity(), LimitTable::kStripes * LimitTable::kWindow);
  int fresh = 0;
  auto touch = [&](std::string_view key, int64_t now, int64_t ttl) {
    return table.update(7, key, now, [&](LimitTable::Entry& e, bool f) {
      fresh += f;
      if (f) e.expires_ms = now + ttl;
      ++e.a;
    });
  };
  EXPECT_TRUE(touch("k", 0, 100));
  EXPECT_TRUE(touch("k", 50, 100));
  EXPECT_EQ(fresh, 1);
  EXPECT_TRUE(touch("k", 100, 100));  // expired at 100: a new entry
  EXPECT_EQ(fresh, 2);
  // Far more keys than slots: every update succeeds (evicting), the table never grows.
  for (int i = 0; i < 5000; ++i) EXPECT_TRUE(touch(named("key", i), 200, 1000 + i));
  EXPECT_GT(table.evictions(), 0u);
  // Pinned entries (limit-conn in use) are never evicted: once a window is all pinned, update fails.
  LimitTable pinned(1);
  int refused = 0;
  for (int i = 0; i < 2000; ++i) {
    refused +=
        !pinned.update(1, named("p", i), 0, [](LimitTable::Entry& e, bool) { e.expires_ms = INT64_MAX; });
  }
  EXPECT_GT(refused, 0);
  EXPECT_EQ(pinned.evictions(), 0u);
}

TEST(LimitTable, AHandleGoesStaleOnceItsSlotHoldsAnotherEntry) {
  LimitTable table(1);
  LimitTable::Handle h;
  ASSERT_TRUE(table.update(
      1, "a", 0, [](LimitTable::Entry& e, bool) { e.expires_ms = 10; }, &h));
  int seen = 0;
  table.with(h, [&](LimitTable::Entry&) { ++seen; });
  EXPECT_EQ(seen, 1);
  // Expired, then reused by other keys of the same window until the slot changes hands.
  for (int i = 0; i < 4000; ++i) {
    table.update(1, named("b", i), 20, [](LimitTable::Entry& e, bool) { e.expires_ms = 30; });
  }
  table.with(h, [&](LimitTable::Entry&) { ++seen; });
  EXPECT_EQ(seen, 1);
}

TEST(LocalCount, AFixedWindowAdmitsCountThenRejectsUntilItEnds) {
  Stores s;
  LocalCount lim(s, 1, 3, 10, false);
  CountDecision d = lim.take("k", 0);
  EXPECT_EQ(d.kind, CountDecision::Kind::allowed);
  EXPECT_EQ(d.remaining, 2);
  EXPECT_EQ(d.reset, 10);
  EXPECT_EQ(lim.take("k", 2500).remaining, 1);
  d = lim.take("k", 2500);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.reset, 8);  // 7.5 s left, rounded up
  d = lim.take("k", 9999);
  EXPECT_EQ(d.kind, CountDecision::Kind::rejected);
  EXPECT_EQ(d.reset, 1);
  EXPECT_EQ(lim.take("other", 9999).kind, CountDecision::Kind::allowed);  // keys count apart
  d = lim.take("k", 10000);  // the window started at 0 ended at 10 s
  EXPECT_EQ(d.kind, CountDecision::Kind::allowed);
  EXPECT_EQ(d.remaining, 2);
}

TEST(LocalCount, ASlidingWindowWeighsThePreviousWindow) {
  Stores s;
  LocalCount lim(s, 1, 10, 10, true);
  for (int i = 0; i < 10; ++i) EXPECT_EQ(lim.take("k", 5000).kind, CountDecision::Kind::allowed) << i;
  EXPECT_EQ(lim.take("k", 9000).kind, CountDecision::Kind::rejected);
  // 2.5 s into the next window, 75% of the previous 10 still count: 7.5, so 2 more fit (8.5, 9.5), not 3.
  EXPECT_EQ(lim.take("k", 12500).kind, CountDecision::Kind::allowed);
  CountDecision d = lim.take("k", 12500);
  EXPECT_EQ(d.kind, CountDecision::Kind::allowed);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.reset, 8);
  EXPECT_EQ(lim.take("k", 12500).kind, CountDecision::Kind::rejected);
  // A fixed window would have admitted 10 at once at 10 s; two windows later nothing of it is left.
  EXPECT_EQ(lim.take("k", 30000).remaining, 9);
}

TEST(LocalReq, TheLeakyBucketDelaysTheBurstAndRejectsBeyondIt) {
  Stores s;
  LocalReq lim(s, 1, 2, 1);  // 2 per second, 1 more delayed
  ReqDecision d = lim.take("k", 0);
  EXPECT_EQ(d.kind, ReqDecision::Kind::allowed);
  EXPECT_DOUBLE_EQ(d.delay, 0);
  d = lim.take("k", 0);
  EXPECT_EQ(d.kind, ReqDecision::Kind::allowed);
  EXPECT_DOUBLE_EQ(d.delay, 0.5);                                 // excess 1 at 2/s
  EXPECT_EQ(lim.take("k", 0).kind, ReqDecision::Kind::rejected);  // excess 2 > burst 1, not counted
  d = lim.take("k", 250);                                         // drained 0.5: excess 1.5 - ... = 1.5 > 1
  EXPECT_EQ(d.kind, ReqDecision::Kind::rejected);
  d = lim.take("k", 500);  // drained 1: excess 1
  EXPECT_EQ(d.kind, ReqDecision::Kind::allowed);
  EXPECT_DOUBLE_EQ(d.delay, 0.5);
  d = lim.take("k", 5000);  // long drained
  EXPECT_DOUBLE_EQ(d.delay, 0);
}

TEST(LocalConn, CountsInFlightDelaysTheBurstAndReleasesExactlyOnce) {
  Stores s;
  LocalConn lim(s, 1, 2, 1, 0.5, true);
  LimitTable::Handle h1, h2, h3, h4;
  EXPECT_EQ(lim.take("k", 0, h1).kind, ConnDecision::Kind::allowed);
  EXPECT_EQ(lim.take("k", 0, h2).kind, ConnDecision::Kind::allowed);
  ConnDecision d = lim.take("k", 0, h3);
  EXPECT_EQ(d.kind, ConnDecision::Kind::allowed);
  EXPECT_DOUBLE_EQ(d.delay, 0.5);  // one `conn` ahead
  EXPECT_EQ(lim.take("k", 0, h4).kind, ConnDecision::Kind::rejected);
  lim.release((uint64_t{h1.slot} << 32) | h1.gen, 0, 1.0);
  EXPECT_EQ(lim.take("k", 0, h4).kind, ConnDecision::Kind::allowed);
  EXPECT_DOUBLE_EQ(lim.unit_delay(), 0.5);  // only_use_default_delay

  // Through a context: the lease is given back once, by whichever comes first.
  Stores s2;
  LocalConn one(s2, 1, 1, 0, 0.5, false);
  {
    RequestContext ctx;
    ConnDecision out;
    one.incoming(ctx, "k", out);
    EXPECT_EQ(out.kind, ConnDecision::Kind::allowed);
    EXPECT_EQ(ctx.leases(), 1u);
    RequestContext other;
    one.incoming(other, "k", out);
    EXPECT_EQ(out.kind, ConnDecision::Kind::rejected);
    EXPECT_EQ(other.leases(), 0u);
    ctx.release_leases(2.0);                   // the log phase
    ctx.release_leases(2.0);                   // nothing left to give back
    EXPECT_DOUBLE_EQ(one.unit_delay(), 1.25);  // (2 + 0.5) / 2
    one.incoming(other, "k", out);
    EXPECT_EQ(out.kind, ConnDecision::Kind::allowed);
  }  // `other` destroyed without a log phase: its lease goes back too
  RequestContext third;
  ConnDecision out;
  one.incoming(third, "k", out);
  EXPECT_EQ(out.kind, ConnDecision::Kind::allowed);
}

std::shared_ptr<const Plugin> build(std::string_view name, json conf, LimitStores& stores) {
  EXPECT_EQ(test::refusal(name, conf), "") << conf.dump();
  BuildEnv env;
  env.limits = &stores;
  std::string error;
  auto p = create_plugin(name, conf, config::find_plugin(name)->priority, env, &error);
  EXPECT_TRUE(p) << error;
  return p;
}

TEST(LimitCountPlugin, QuotaHeadersAndApisixsRejection) {
  Stores s;
  auto p = build(
      "limit-count",
      {{"count", 2}, {"time_window", 60}, {"rejected_code", 429}, {"rejected_msg", "Too many requests"}}, s);
  for (int i = 0; i < 2; ++i) {
    Request r("GET /a HTTP/1.1\r\nHost: h");
    p->access(r.ctx);
    EXPECT_FALSE(r.ctx.replied());
    EXPECT_EQ(r.response_header("X-RateLimit-Limit"), "2");
    EXPECT_EQ(r.response_header("X-RateLimit-Remaining"), std::to_string(1 - i));
    EXPECT_EQ(r.response_header("X-RateLimit-Reset"), "60");
  }
  Request r("GET /a HTTP/1.1\r\nHost: h");
  p->access(r.ctx);
  EXPECT_EQ(r.ctx.reply.status, 429);
  EXPECT_EQ(r.ctx.reply.body, "{\"error_msg\":\"Too many requests\"}\n");
  EXPECT_EQ(r.response_header("X-RateLimit-Remaining"), "0");
  // Another client address is another key.
  Request other("GET /a HTTP/1.1\r\nHost: h", "10.0.0.2");
  p->access(other.ctx);
  EXPECT_FALSE(other.ctx.replied());
}

TEST(LimitCountPlugin, KeysFallBackToTheClientAddressAndHeadersCanBeOff) {
  Stores s;
  auto p = build(
      "limit-count",
      {{"count", 1}, {"time_window", 60}, {"key", "http_x_user"}, {"show_limit_quota_header", false}}, s);
  Request alice("GET /a HTTP/1.1\r\nX-User: alice\r\nHost: h");
  p->access(alice.ctx);
  EXPECT_FALSE(alice.ctx.replied());
  EXPECT_EQ(alice.response_header("X-RateLimit-Limit"), "");
  Request bob("GET /a HTTP/1.1\r\nX-User: bob\r\nHost: h");
  p->access(bob.ctx);
  EXPECT_FALSE(bob.ctx.replied());
  Request alice2("GET /a HTTP/1.1\r\nX-User: alice\r\nHost: h", "10.9.9.9");
  p->access(alice2.ctx);
  EXPECT_EQ(alice2.ctx.reply.status, 503);
  EXPECT_EQ(alice2.ctx.reply.body, "");  // no rejected_msg: no body
  // No header: the client address is the key (its own counter).
  Request none("GET /a HTTP/1.1\r\nHost: h", "10.1.1.1");
  p->access(none.ctx);
  EXPECT_FALSE(none.ctx.replied());
  Request none2("GET /a HTTP/1.1\r\nHost: h", "10.1.1.1");
  p->access(none2.ctx);
  EXPECT_TRUE(none2.ctx.replied());
}

TEST(LimitCountPlugin, RoutesCountApartAGroupTogetherAndARebuildKeepsTheCounters) {
  Stores s;
  const json conf = {{"count", 1}, {"time_window", 60}};
  auto p = build("limit-count", conf, s);
  Request r1("GET /a HTTP/1.1\r\nHost: h");
  p->access(r1.ctx);
  Request r2("GET /a HTTP/1.1\r\nHost: h");
  r2.ctx.route_id = "r2";  // the same configuration on another route (a service's plugin)
  p->access(r2.ctx);
  EXPECT_FALSE(r2.ctx.replied());
  // The same configuration rebuilt (a reload): its counters are still there.
  auto rebuilt = build("limit-count", conf, s);
  Request again("GET /a HTTP/1.1\r\nHost: h");
  rebuilt->access(again.ctx);
  EXPECT_TRUE(again.ctx.replied());
  // A changed configuration starts over (APISIX keys by the configuration's version).
  auto changed = build("limit-count", {{"count", 1}, {"time_window", 61}}, s);
  Request fresh("GET /a HTTP/1.1\r\nHost: h");
  changed->access(fresh.ctx);
  EXPECT_FALSE(fresh.ctx.replied());

  const json grouped = {{"count", 1}, {"time_window", 60}, {"group", "g"}};
  auto g1 = build("limit-count", grouped, s);
  auto g2 = build("limit-count", grouped, s);
  Request a("GET /a HTTP/1.1\r\nHost: h");
  g1->access(a.ctx);
  EXPECT_FALSE(a.ctx.replied());
  Request b("GET /b HTTP/1.1\r\nHost: h");
  b.ctx.route_id = "r2";
  g2->access(b.ctx);
  EXPECT_TRUE(b.ctx.replied());
}

TEST(LimitReqPlugin, DelaysWithinTheBurstUnlessNodelayAndRejects) {
  Stores s;
  auto p = build("limit-req", {{"rate", 1}, {"burst", 1}, {"key", "remote_addr"}}, s);
  Request a("GET / HTTP/1.1\r\nHost: h"), b("GET / HTTP/1.1\r\nHost: h"), c("GET / HTTP/1.1\r\nHost: h");
  p->access(a.ctx);
  EXPECT_EQ(a.ctx.delay_seconds, 0);
  p->access(b.ctx);
  EXPECT_DOUBLE_EQ(b.ctx.delay_seconds, 1);
  p->access(c.ctx);
  EXPECT_EQ(c.ctx.reply.status, 503);
  auto nodelay =
      build("limit-req", {{"rate", 1}, {"burst", 1}, {"key", "remote_addr"}, {"nodelay", true}}, s);
  Request d("GET / HTTP/1.1\r\nHost: h"), e("GET / HTTP/1.1\r\nHost: h");
  nodelay->access(d.ctx);
  nodelay->access(e.ctx);
  EXPECT_FALSE(e.ctx.replied());
  EXPECT_EQ(e.ctx.delay_seconds, 0);
}

TEST(LimitConnPlugin, TheSecondRequestInFlightIsRejectedUntilTheFirstIsReleased) {
  Stores s;
  auto p = build("limit-conn",
                 {{"conn", 1},
                  {"burst", 0},
                  {"default_conn_delay", 0.1},
                  {"key", "remote_addr"},
                  {"rejected_code", 429},
                  {"rejected_msg", "busy"}},
                 s);
  Request a("GET / HTTP/1.1\r\nHost: h");
  p->access(a.ctx);
  EXPECT_FALSE(a.ctx.replied());
  Request b("GET / HTTP/1.1\r\nHost: h");
  p->access(b.ctx);
  EXPECT_EQ(b.ctx.reply.status, 429);
  EXPECT_EQ(b.ctx.reply.body, "{\"error_msg\":\"busy\"}\n");
  a.ctx.release_leases(0.01);
  Request c("GET / HTTP/1.1\r\nHost: h");
  p->access(c.ctx);
  EXPECT_FALSE(c.ctx.replied());
}

TEST(LimitSchemas, PoliciesKeysAndDefaultsAsApisix) {
  json conf = {{"count", 1}, {"time_window", 1}};
  EXPECT_EQ(test::refusal("limit-count", conf), "");
  EXPECT_EQ(conf["key"], "remote_addr");
  EXPECT_EQ(conf["rejected_code"], 503);
  EXPECT_EQ(conf["policy"], "local");
  EXPECT_EQ(conf["window_type"], "fixed");
  EXPECT_FALSE(conf.contains("redis_port"));  // the redis branch's defaults only with policy redis
  json redis = {{"count", 1}, {"time_window", 1}, {"policy", "redis"}};
  EXPECT_EQ(test::refusal("limit-count", redis), "redis_host: property \"redis_host\" is required");
  json cluster = {{"rate", 1},
                  {"burst", 0},
                  {"key", "remote_addr"},
                  {"policy", "redis-cluster"},
                  {"redis_cluster_nodes", {"127.0.0.1:7000"}},
                  {"redis_cluster_name", "c"}};
  EXPECT_EQ(test::refusal("limit-req", cluster), "");
  EXPECT_EQ(cluster["redis_timeout"], 1000);
  json bad_node = cluster;
  bad_node["redis_cluster_nodes"] = {"127.0.0.1:7000", "127.0.0.1"};
  EXPECT_EQ(test::refusal("limit-req", bad_node), "redis_cluster_nodes: not host:port: 127.0.0.1");
  json batched_sliding = {{"count", 1},         {"time_window", 1},     {"policy", "redis"},
                          {"redis_host", "rh"}, {"sync_interval", 0.5}, {"window_type", "sliding"}};
  EXPECT_NE(test::refusal("limit-count", batched_sliding).find("sync_interval"), std::string::npos);
  json bad_key = {{"conn", 1}, {"burst", 0}, {"default_conn_delay", 1}, {"key", "$http_a x"}};
  EXPECT_EQ(test::refusal("limit-conn", bad_key), "key: not a variable name: $http_a x");
  json unknown = {{"conn", 1},
                  {"burst", 0},
                  {"default_conn_delay", 1},
                  {"key", "$nope"},
                  {"key_type", "var_combination"}};
  EXPECT_NE(test::refusal("limit-conn", unknown).find("unknown variable $nope"), std::string::npos);
  json zero = {{"count", 0}, {"time_window", 1}};
  EXPECT_NE(test::refusal("limit-count", zero), "");
}

}  // namespace
}  // namespace portico::plugins
