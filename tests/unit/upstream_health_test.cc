#include "upstream/health.h"

#include <gtest/gtest.h>

#include <chrono>
#include <thread>
#include <vector>

#include "upstream/clock.h"

namespace portico::upstream {
namespace {

constexpr int kTcp = 0;
constexpr int kTimeout = -1;

void advance_past_cooldown() {
  clock::advance_for_testing(NodeHealth::kPassiveCooldown + std::chrono::milliseconds(1));
}

// ---------------------------------------------------------------------------------------------------------
// Passive

TEST(PassiveHealth, HttpFailuresReachTheThreshold) {
  config::PassiveCheck spec;  // http_failures 5 on 429/500/503
  NodeHealth h;
  for (int k = 0; k < 4; ++k) h.report_passive(spec, 500, true);
  EXPECT_TRUE(h.healthy());
  h.report_passive(spec, 503, true);
  EXPECT_FALSE(h.healthy());
  EXPECT_EQ(h.transitions(), 1u);
}

TEST(PassiveHealth, EachKindHasItsOwnThreshold) {
  config::PassiveCheck spec;  // tcp 2, timeouts 7, http 5
  NodeHealth tcp;
  tcp.report_passive(spec, kTcp, true);
  EXPECT_TRUE(tcp.healthy());
  tcp.report_passive(spec, kTcp, true);
  EXPECT_FALSE(tcp.healthy());

  NodeHealth timeouts;
  for (int k = 0; k < 6; ++k) timeouts.report_passive(spec, kTimeout, true);
  EXPECT_TRUE(timeouts.healthy());
  timeouts.report_passive(spec, kTimeout, true);
  EXPECT_FALSE(timeouts.healthy());

  // Kinds are counted separately: 4 http failures + 1 tcp failure + 6 timeouts are below every threshold.
  NodeHealth mixed;
  for (int k = 0; k < 4; ++k) mixed.report_passive(spec, 500, true);
  mixed.report_passive(spec, kTcp, true);
  for (int k = 0; k < 6; ++k) mixed.report_passive(spec, kTimeout, true);
  EXPECT_TRUE(mixed.healthy());
  mixed.report_passive(spec, kTcp, true);
  EXPECT_FALSE(mixed.healthy());
}

TEST(PassiveHealth, SuccessResetsFailuresAndOtherStatusesAreIgnored) {
  config::PassiveCheck spec;
  NodeHealth h;
  for (int round = 0; round < 10; ++round) {
    for (int k = 0; k < 4; ++k) h.report_passive(spec, 500, true);
    h.report_passive(spec, 404, true);  // in neither list: neither a failure nor a success
    h.report_passive(spec, 200, true);  // resets the count
  }
  EXPECT_TRUE(h.healthy());
  h.report_passive(spec, kTcp, true);
  h.report_passive(spec, 404, true);
  h.report_passive(spec, kTcp, true);
  EXPECT_FALSE(h.healthy());
}

TEST(PassiveHealth, ConsecutiveSuccessesBringItBack) {
  config::PassiveCheck spec;  // successes 5
  NodeHealth h;
  h.set_healthy(false);
  for (int k = 0; k < 4; ++k) h.report_passive(spec, 200, true);
  h.report_passive(spec, 500, true);  // breaks the streak
  for (int k = 0; k < 4; ++k) h.report_passive(spec, 204, true);
  EXPECT_FALSE(h.healthy());
  h.report_passive(spec, 301, true);
  EXPECT_TRUE(h.healthy());
  EXPECT_EQ(h.transitions(), 2u);
}

TEST(PassiveHealth, DisabledKindsDoNotCount) {
  config::PassiveCheck spec;
  spec.unhealthy.tcp_failures = 0;
  NodeHealth h;
  for (int k = 0; k < 50; ++k) h.report_passive(spec, kTcp, true);
  EXPECT_TRUE(h.healthy());
}

TEST(PassiveHealth, TcpTypeIgnoresHttpStatuses) {
  config::PassiveCheck spec;
  spec.type = "tcp";
  NodeHealth h;
  for (int k = 0; k < 20; ++k) h.report_passive(spec, 500, true);
  EXPECT_TRUE(h.healthy());
}

TEST(PassiveHealth, CooldownRetryWithoutActiveChecks) {
  config::PassiveCheck spec;
  NodeHealth h;
  h.report_passive(spec, kTcp, false);
  h.report_passive(spec, kTcp, false);
  ASSERT_FALSE(h.healthy());
  EXPECT_FALSE(h.healthy_or_retry(false));
  EXPECT_FALSE(h.healthy_or_retry(true));
  // A failure during the cool-down (a request already in flight) does not extend it.
  uint64_t gen = NodeHealth::generation();
  h.report_passive(spec, 500, false);
  EXPECT_EQ(NodeHealth::generation(), gen);

  advance_past_cooldown();
  EXPECT_TRUE(h.healthy_or_retry(false));  // one more chance
  EXPECT_FALSE(h.healthy_or_retry(true));  // active checks decide instead
  EXPECT_FALSE(h.healthy());

  // The retried request fails: down again for another cool-down.
  h.report_passive(spec, kTimeout, false);
  EXPECT_GT(NodeHealth::generation(), gen);
  EXPECT_FALSE(h.healthy_or_retry(false));
  EXPECT_EQ(h.transitions(), 1u);  // still the same "down" period

  advance_past_cooldown();
  EXPECT_TRUE(h.healthy_or_retry(false));
  for (int k = 0; k < 5; ++k) h.report_passive(spec, 200, false);
  EXPECT_TRUE(h.healthy());
  EXPECT_EQ(h.transitions(), 2u);
}

TEST(PassiveHealth, ConcurrentReportsTransitionOnce) {
  config::PassiveCheck spec;
  spec.unhealthy.http_failures = 100;
  NodeHealth h;
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int k = 0; k < 30; ++k) h.report_passive(spec, 500, true);
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_FALSE(h.healthy());
  EXPECT_EQ(h.transitions(), 1u);
}

// ---------------------------------------------------------------------------------------------------------
// Active

TEST(ActiveHealth, Thresholds) {
  config::ActiveCheck spec;  // successes 2; http 5, tcp 2, timeouts 3
  NodeHealth h;
  for (int k = 0; k < 4; ++k) h.report_active(spec, 500);
  EXPECT_TRUE(h.healthy());
  h.report_active(spec, 502);
  EXPECT_FALSE(h.healthy());

  h.report_active(spec, 200);
  EXPECT_FALSE(h.healthy());
  h.report_active(spec, 302);
  EXPECT_TRUE(h.healthy());

  h.report_active(spec, kTcp);
  h.report_active(spec, kTcp);
  EXPECT_FALSE(h.healthy());
  h.report_active(spec, 200);
  h.report_active(spec, kTimeout);  // breaks the success streak
  h.report_active(spec, 200);
  EXPECT_FALSE(h.healthy());
  h.report_active(spec, 200);
  EXPECT_TRUE(h.healthy());

  for (int k = 0; k < 2; ++k) h.report_active(spec, kTimeout);
  h.report_active(spec, 200);  // resets
  for (int k = 0; k < 2; ++k) h.report_active(spec, kTimeout);
  EXPECT_TRUE(h.healthy());
  h.report_active(spec, kTimeout);
  EXPECT_FALSE(h.healthy());
  EXPECT_EQ(h.transitions(), 5u);
}

TEST(ActiveHealth, NeutralStatusesAndTcpType) {
  config::ActiveCheck spec;
  NodeHealth h;
  for (int k = 0; k < 20; ++k) h.report_active(spec, 401);  // in neither list
  EXPECT_TRUE(h.healthy());

  config::ActiveCheck tcp;
  tcp.type = "tcp";
  h.set_healthy(false);
  h.report_active(tcp, 200);
  h.report_active(tcp, 200);
  EXPECT_TRUE(h.healthy());
}

TEST(ActiveHealth, SetHealthyCountsTransitionsAndBumpsGeneration) {
  NodeHealth h;
  uint64_t gen = NodeHealth::generation();
  h.set_healthy(true);
  EXPECT_EQ(h.transitions(), 0u);
  EXPECT_EQ(NodeHealth::generation(), gen);
  h.set_healthy(false);
  int64_t down = h.down_since_ns();
  h.set_healthy(false);  // no change: the cool-down keeps its start
  EXPECT_EQ(h.down_since_ns(), down);
  h.set_healthy(true);
  EXPECT_EQ(h.transitions(), 2u);
  EXPECT_EQ(NodeHealth::generation(), gen + 2);
}

// ---------------------------------------------------------------------------------------------------------
// Registry

TEST(HealthRegistry, SameKeySameStateUntilCollected) {
  HealthRegistry reg;
  auto a = reg.get("u1", "10.0.0.1:80");
  auto b = reg.get("u1", "10.0.0.1:80");
  auto c = reg.get("u1", "10.0.0.2:80");
  auto d = reg.get("u2", "10.0.0.1:80");
  EXPECT_EQ(a, b);
  EXPECT_NE(a, c);
  EXPECT_NE(a, d);
  EXPECT_EQ(a->upstream_key(), "u1");
  EXPECT_EQ(a->node_key(), "10.0.0.1:80");
  // Keys cannot collide through concatenation.
  EXPECT_NE(reg.get("u", "1x"), reg.get("u1", "x"));

  a->set_healthy(false);
  auto list = reg.list();
  ASSERT_EQ(list.size(), 5u);
  EXPECT_EQ(list[0].upstream_key, "u");
  EXPECT_EQ(list[1].upstream_key, "u1");
  EXPECT_EQ(list[1].node_key, "10.0.0.1:80");
  EXPECT_FALSE(list[1].healthy);
  EXPECT_TRUE(list[2].healthy);

  // A reload holds on to a: it survives; c and d are dropped.
  c.reset();
  d.reset();
  b.reset();
  reg.collect_garbage();
  EXPECT_EQ(reg.list().size(), 1u);
  EXPECT_EQ(reg.get("u1", "10.0.0.1:80"), a);
  EXPECT_FALSE(reg.get("u1", "10.0.0.1:80")->healthy());
  // Once nobody holds it, it is forgotten and comes back fresh.
  a.reset();
  reg.collect_garbage();
  EXPECT_TRUE(reg.list().empty());
  auto fresh = reg.get("u1", "10.0.0.1:80");
  EXPECT_TRUE(fresh->healthy());
}

}  // namespace
}  // namespace portico::upstream
