// The Redis policies' pure parts: APISIX's redis_* fields to redis::Options, the hash-tagged keys, and the
// batched mode's per-process accounting (limit_batch.h BatchTable). The scripts run against a real Redis in
// tests/e2e/test_plugin_limits_redis.py.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>

#include <nlohmann/json.hpp>

#include "plugins/limit_batch.h"
#include "plugins/limits_redis.h"

namespace portico::plugins {
namespace {

using json = nlohmann::json;
using Kind = CountDecision::Kind;

TEST(RedisOptions, StandaloneFieldsAsApisixNamesThem) {
  json conf = {{"policy", "redis"},     {"redis_host", "10.0.0.5"}, {"redis_port", 6380},
               {"redis_username", "u"}, {"redis_password", "pw"},   {"redis_database", 3},
               {"redis_timeout", 250},  {"redis_ssl", true},        {"redis_ssl_verify", true}};
  const redis::Options o = redis_options(conf);
  ASSERT_EQ(o.nodes.size(), 1u);
  EXPECT_EQ(o.nodes[0].first, "10.0.0.5");
  EXPECT_EQ(o.nodes[0].second, 6380);
  EXPECT_FALSE(o.cluster);
  EXPECT_EQ(o.username, "u");
  EXPECT_EQ(o.password, "pw");
  EXPECT_EQ(o.database, 3);
  EXPECT_DOUBLE_EQ(o.timeout_seconds, 0.25);
  EXPECT_TRUE(o.tls);
  EXPECT_TRUE(o.tls_verify);
}

TEST(RedisOptions, ClusterNodesAndTls) {
  json conf = {
      {"policy", "redis-cluster"}, {"redis_cluster_nodes", {"127.0.0.1:7000", "[::1]:7001", "redis-2:7002"}},
      {"redis_cluster_name", "c"}, {"redis_password", "pw"},
      {"redis_timeout", 1000},     {"redis_cluster_ssl", true}};
  const redis::Options o = redis_options(conf);
  EXPECT_TRUE(o.cluster);
  ASSERT_EQ(o.nodes.size(), 3u);
  EXPECT_EQ(o.nodes[1].first, "::1");
  EXPECT_EQ(o.nodes[1].second, 7001);
  EXPECT_EQ(o.nodes[2].first, "redis-2");
  EXPECT_EQ(o.database, 0);
  EXPECT_TRUE(o.tls);
  EXPECT_FALSE(o.tls_verify);
  EXPECT_DOUBLE_EQ(o.timeout_seconds, 1.0);
  conf["redis_cluster_nodes"] = {"nohost"};
  EXPECT_THROW(redis_options(conf), std::invalid_argument);
}

TEST(RedisKey, WholeNameIsTheHashTag) {
  std::string k;
  redis_key("portico:lc", 0x0123456789abcdefULL, "route-1\n10.0.0.1", k);
  EXPECT_EQ(k, "portico:lc:{0123456789abcdef:route-1:10.0.0.1}");
  redis_key("limit_conn", 1, "\nkey", k);  // a global rule's or group's key has no route
  EXPECT_EQ(k, "limit_conn:{0000000000000001::key}");
}

TEST(BatchTable, AdmitsWhileGlobalPlusUnsyncedIsBelowTheLimit) {
  BatchTable t(10, 60000);
  for (int i = 0; i < 4; ++i) EXPECT_EQ(t.admit("k", 1000).kind, Kind::allowed);
  std::vector<BatchTable::Delta> out;
  t.collect(1000, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].delta, 4);
  // Another data plane admitted 5 meanwhile: Redis answers 9 (ours included).
  t.synced("k", true, 9, 50000, 1100);
  const CountDecision d = t.admit("k", 1200);
  EXPECT_EQ(d.kind, Kind::allowed);
  EXPECT_EQ(d.remaining, 0);
  EXPECT_EQ(d.reset, 50);  // ceil((1100 + 50000 - 1200) / 1000)
  EXPECT_EQ(t.admit("k", 1200).kind, Kind::rejected);
}

TEST(BatchTable, InFlightDeltaCountsUntilAnsweredAndComesBackOnFailure) {
  BatchTable t(3, 60000);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t.admit("k", 0).kind, Kind::allowed);
  std::vector<BatchTable::Delta> out;
  t.collect(0, out);
  EXPECT_EQ(t.admit("k", 1).kind, Kind::rejected);  // the 3 in flight still count
  t.synced("k", false, 0, 0, 2);                    // Redis unreachable: unsynced again
  EXPECT_EQ(t.admit("k", 3).kind, Kind::rejected);
  t.collect(4, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].delta, 3);  // resent in full
}

TEST(BatchTable, WindowEndResetsAndIdleKeysAreForgotten) {
  BatchTable t(2, 1000);
  EXPECT_EQ(t.admit("k", 0).kind, Kind::allowed);
  EXPECT_EQ(t.admit("k", 0).kind, Kind::allowed);
  EXPECT_EQ(t.admit("k", 999).kind, Kind::rejected);
  // Without Redis the process keeps a window of its own: a per-process limit.
  EXPECT_EQ(t.admit("k", 1000).kind, Kind::allowed);
  std::vector<BatchTable::Delta> out;
  t.collect(1001, out);
  t.synced("k", true, 1, 500, 1001);
  t.collect(1600, out);  // nothing new, window over, nothing in flight
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(t.size(), 0u);
}

TEST(BatchTable, TouchedKeysAreRefreshedWithAZeroDelta) {
  BatchTable t(1, 60000);
  EXPECT_EQ(t.admit("k", 0).kind, Kind::allowed);
  std::vector<BatchTable::Delta> out;
  t.collect(0, out);
  t.synced("k", true, 1, 60000, 0);
  EXPECT_EQ(t.admit("k", 10).kind, Kind::rejected);
  t.collect(10, out);  // a rejected request still asks Redis for the current count (the window may move)
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].delta, 0);
}

TEST(BatchTable, AnInFlightDeltaOfAnEndedWindowCountsForNoLaterOne) {
  BatchTable t(3, 1000);
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t.admit("k", 0).kind, Kind::allowed);
  std::vector<BatchTable::Delta> out;
  t.collect(0, out);  // 3 in flight, for the window [0, 1000)
  // The local window rolls over while the sync is unanswered: the old delta no longer counts...
  for (int i = 0; i < 3; ++i) EXPECT_EQ(t.admit("k", 1000).kind, Kind::allowed) << i;
  EXPECT_EQ(t.admit("k", 1000).kind, Kind::rejected);
  // ...and a failed sync does not push it into the new window either.
  t.synced("k", false, 0, 0, 1001);
  t.collect(1002, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].delta, 3);  // the new window's 3 only
}

TEST(BatchTable, FullTablePurgesEndedWindowsThenEvictsThoseEndingFirst) {
  BatchTable t(5, 1000, 32);
  for (int i = 0; i < 16; ++i)
    t.admit(std::string("old").append(std::to_string(i)), 0);  // windows end at 1000
  for (int i = 0; i < 16; ++i) t.admit(std::string("new").append(std::to_string(i)), 500 + i);
  EXPECT_EQ(t.size(), 32u);
  t.admit("x", 1000);  // full: the 16 ended windows go
  EXPECT_EQ(t.size(), 17u);
  for (int i = 0; i < 15; ++i) t.admit(std::string("y").append(std::to_string(i)), 1200);
  EXPECT_EQ(t.size(), 32u);
  t.admit("z", 1300);  // full, every window live: the two ending first (new0, new1) are evicted
  EXPECT_EQ(t.size(), 31u);
  std::vector<BatchTable::Delta> out;
  t.collect(1300, out);
  std::vector<std::string> keys;
  for (const auto& d : out) keys.push_back(d.key);
  EXPECT_EQ(std::count(keys.begin(), keys.end(), "new0"), 0);
  EXPECT_EQ(std::count(keys.begin(), keys.end(), "new1"), 0);
  EXPECT_EQ(std::count(keys.begin(), keys.end(), "new2"), 1);
  EXPECT_EQ(std::count(keys.begin(), keys.end(), "z"), 1);
}

TEST(BatchTable, TimerStartsWithTheFirstKeyAndStopsWhenEmpty) {
  BatchTable t(5, 1000);
  bool start = false;
  t.admit("a", 0, &start);
  EXPECT_TRUE(start);
  start = false;
  t.admit("b", 0, &start);
  EXPECT_FALSE(start);  // already running
  EXPECT_FALSE(t.stop_timer_if_empty());
  std::vector<BatchTable::Delta> out;
  t.collect(0, out);
  t.synced("a", true, 1, 1000, 0);
  t.synced("b", true, 1, 1000, 0);
  t.collect(2000, out);  // windows over, nothing new: forgotten
  EXPECT_TRUE(t.stop_timer_if_empty());
  t.admit("c", 2000, &start);
  EXPECT_TRUE(start);
}

TEST(DecimalText, SmallRatesKeepTheirValue) {
  // limit-req sends rate * 1000: 0.0001 request/s must not round to 0 (a division by zero in the script).
  EXPECT_EQ(std::stod(decimal_text(0.0001 * 1000)), 0.0001 * 1000);
  EXPECT_EQ(std::stod(decimal_text(1.5)), 1.5);
  EXPECT_EQ(decimal_text(2000), "2000");
  EXPECT_NE(decimal_text(1e-7), "0");
  EXPECT_EQ(std::stod(decimal_text(1e-7)), 1e-7);
}

}  // namespace
}  // namespace portico::plugins
