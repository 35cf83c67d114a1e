#include "upstream/balancer.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "upstream/clock.h"
#include "upstream/hash.h"

namespace portico::upstream {
namespace {

using config::LbType;

// prefix + decimal n. (Built by appending: GCC 12 warns falsely on "literal" + std::string, PR 105651.)
std::string key_of(const char* prefix, int n) {
  std::string s = prefix;
  s += std::to_string(n);
  return s;
}

struct NodeDef {
  int weight = 1;
  int priority = 0;
};

std::vector<NodeRuntime> make_nodes(const std::vector<NodeDef>& defs, int first_octet = 1) {
  std::vector<NodeRuntime> nodes;
  for (size_t i = 0; i < defs.size(); ++i) {
    NodeRuntime n;
    n.spec.host = key_of("10.0.0.", first_octet + static_cast<int>(i));
    n.spec.port = 8080;
    n.spec.weight = defs[i].weight;
    n.spec.priority = defs[i].priority;
    n.address = n.spec.host;
    n.host_port = n.spec.host + ":8080";
    n.pool_key = n.host_port;
    n.health = std::make_shared<NodeHealth>("u", n.pool_key);
    nodes.push_back(std::move(n));
  }
  return nodes;
}

std::vector<NodeRuntime> uniform(size_t n) {
  return make_nodes(std::vector<NodeDef>(n));
}

config::Upstream spec_of(LbType type, bool active = false) {
  config::Upstream u;
  u.type = type;
  if (active) {
    u.checks.emplace();
    u.checks->active.emplace();
  }
  return u;
}

// The reference: nginx's smooth weighted round robin, written the obvious way.
std::vector<int> reference_swrr(const std::vector<int>& weights, size_t picks) {
  std::vector<long long> cw(weights.size(), 0);
  std::vector<int> out;
  for (size_t p = 0; p < picks; ++p) {
    long long total = 0;
    int best = -1;
    for (size_t i = 0; i < weights.size(); ++i) {
      if (weights[i] <= 0) continue;
      cw[i] += weights[i];
      total += weights[i];
      if (best < 0 || cw[i] > cw[best]) best = static_cast<int>(i);
    }
    cw[best] -= total;
    out.push_back(best);
  }
  return out;
}

std::vector<int> picks(Balancer& b, size_t count, std::string_view key = {}) {
  std::vector<int> out;
  for (size_t k = 0; k < count; ++k) out.push_back(b.pick(key, {}));
  return out;
}

const LbType kAllTypes[] = {LbType::roundrobin, LbType::chash, LbType::least_conn, LbType::ewma};

// ---------------------------------------------------------------------------------------------------------
// Round robin

TEST(RoundRobin, SmoothSequenceLikeNginx) {
  auto nodes = make_nodes({{5}, {1}, {1}});
  auto b = make_balancer(spec_of(LbType::roundrobin), nodes);
  // a a b a c a a, twice: b and c are interleaved with a, never bursts of five a's.
  EXPECT_EQ(picks(*b, 14), (std::vector<int>{0, 0, 1, 0, 2, 0, 0, 0, 0, 1, 0, 2, 0, 0}));
}

TEST(RoundRobin, MatchesReferenceInScheduleAndLiveModes) {
  std::mt19937 rng(7);
  for (int round = 0; round < 40; ++round) {
    size_t n = 1 + rng() % 12;
    // Small weights use the precomputed schedule; huge ones (period > 4096) run the loop live.
    int max_weight = round % 2 == 0 ? 10 : 100000;
    std::vector<NodeDef> defs;
    std::vector<int> weights;
    for (size_t i = 0; i < n; ++i) {
      int w = static_cast<int>(rng() % max_weight) + (round % 4 == 1 ? 1 : 0);
      if (i == 0 && w == 0) w = 1;
      defs.push_back({w});
      weights.push_back(w);
    }
    auto nodes = make_nodes(defs);
    auto b = make_balancer(spec_of(LbType::roundrobin), nodes);
    EXPECT_EQ(picks(*b, 500), reference_swrr(weights, 500)) << "round " << round;
  }
}

TEST(RoundRobin, DistributionFollowsWeights) {
  auto nodes = make_nodes({{3}, {2}, {1}});
  auto b = make_balancer(spec_of(LbType::roundrobin), nodes);
  std::map<int, int> count;
  for (int p : picks(*b, 6000)) ++count[p];
  EXPECT_EQ(count[0], 3000);
  EXPECT_EQ(count[1], 2000);
  EXPECT_EQ(count[2], 1000);
}

TEST(RoundRobin, WorkersAreStaggeredButEachIsSmooth) {
  auto nodes = make_nodes({{5}, {1}, {1}});
  BalancerFactory factory(spec_of(LbType::roundrobin), nodes);
  auto w0 = factory.create(0);
  auto w3 = factory.create(3);
  std::map<int, int> count;
  for (int p : picks(*w3, 700)) ++count[p];
  EXPECT_EQ(count[0], 500);
  EXPECT_EQ(count[1], 100);
  EXPECT_EQ(count[2], 100);
  EXPECT_EQ(picks(*w0, 7), (std::vector<int>{0, 0, 1, 0, 2, 0, 0}));
}

TEST(RoundRobin, UnhealthyNodeSkippedAndSequenceStaysSmooth) {
  auto nodes = make_nodes({{5}, {1}, {1}});
  auto b = make_balancer(spec_of(LbType::roundrobin, true), nodes);
  picks(*b, 3);
  nodes[0].health->set_healthy(false);
  std::vector<int> got = picks(*b, 10);
  EXPECT_EQ(got, (std::vector<int>{1, 2, 1, 2, 1, 2, 1, 2, 1, 2}));
  nodes[0].health->set_healthy(true);
  EXPECT_EQ(picks(*b, 7), (std::vector<int>{0, 0, 1, 0, 2, 0, 0}));
}

// ---------------------------------------------------------------------------------------------------------
// Behaviour common to every balancer type

TEST(AllBalancers, WeightZeroNeverPicked) {
  for (LbType type : kAllTypes) {
    auto nodes = make_nodes({{0}, {1}, {0}, {2}});
    auto b = make_balancer(spec_of(type), nodes);
    for (int k = 0; k < 300; ++k) {
      int i = b->pick(key_of("key", k), {});
      b->on_request_start(i);
      b->on_request_end(i, 0.001, false);
      EXPECT_TRUE(i == 1 || i == 3) << static_cast<int>(type) << " picked " << i;
    }
    auto zero = make_nodes({{0}, {0}});
    auto z = make_balancer(spec_of(type), zero);
    EXPECT_EQ(z->pick("k", {}), -1);
    std::vector<NodeRuntime> none;
    EXPECT_EQ(make_balancer(spec_of(type), none)->pick("k", {}), -1);
  }
}

TEST(AllBalancers, RetriesNeverReturnAnExcludedNode) {
  for (LbType type : kAllTypes) {
    for (bool with_key : {false, true}) {
      auto nodes = make_nodes({{3}, {1}, {2, 1}, {1, -1}, {5}});
      auto b = make_balancer(spec_of(type), nodes);
      for (int round = 0; round < 50; ++round) {
        std::string key = with_key ? key_of("user", round) : "";
        std::vector<int> tried;
        for (size_t attempt = 0; attempt < nodes.size(); ++attempt) {
          int i = b->pick(key, tried);
          ASSERT_GE(i, 0);
          ASSERT_EQ(std::count(tried.begin(), tried.end(), i), 0) << static_cast<int>(type);
          tried.push_back(i);
        }
        EXPECT_EQ(b->pick(key, tried), -1);
      }
    }
  }
}

TEST(AllBalancers, PriorityTiersWithHealthAndExclusion) {
  for (LbType type : kAllTypes) {
    // a, b: priority 2; c: priority 1; d: priority 0.
    auto nodes = make_nodes({{1, 2}, {1, 2}, {1, 1}, {1, 0}});
    auto b = make_balancer(spec_of(type, true), nodes);
    for (int k = 0; k < 100; ++k) EXPECT_LT(b->pick(key_of("k", k), {}), 2);
    // b excluded (a retry): a is still in the top tier.
    int excl_b[] = {1};
    for (int k = 0; k < 20; ++k) EXPECT_EQ(b->pick(key_of("k", k), excl_b), 0);
    // Both top nodes tried: the next tier.
    int excl_ab[] = {0, 1};
    EXPECT_EQ(b->pick("x", excl_ab), 2);
    // Top tier down: c serves; c down too: d.
    nodes[0].health->set_healthy(false);
    nodes[1].health->set_healthy(false);
    for (int k = 0; k < 20; ++k) EXPECT_EQ(b->pick(key_of("k", k), {}), 2);
    nodes[2].health->set_healthy(false);
    for (int k = 0; k < 20; ++k) EXPECT_EQ(b->pick(key_of("k", k), {}), 3);
    // Back up: top tier again.
    nodes[1].health->set_healthy(true);
    for (int k = 0; k < 20; ++k) EXPECT_EQ(b->pick(key_of("k", k), {}), 1);
    nodes[0].health->set_healthy(true);
    nodes[2].health->set_healthy(true);
  }
}

TEST(AllBalancers, UnhealthyNodesAvoidedWhileAHealthyOneRemains) {
  for (LbType type : kAllTypes) {
    auto nodes = uniform(4);
    auto b = make_balancer(spec_of(type, true), nodes);
    nodes[0].health->set_healthy(false);
    nodes[2].health->set_healthy(false);
    for (int k = 0; k < 200; ++k) {
      int i = b->pick(key_of("k", k), {});
      b->on_request_start(i);
      b->on_request_end(i, 0.001, false);
      EXPECT_TRUE(i == 1 || i == 3) << static_cast<int>(type);
    }
    // Every healthy node tried: a retry goes to an unhealthy one rather than fail.
    int tried[] = {1, 3};
    int i = b->pick("k", tried);
    EXPECT_TRUE(i == 0 || i == 2);
    nodes[0].health->set_healthy(true);
    nodes[2].health->set_healthy(true);
  }
}

TEST(AllBalancers, FailOpenWhenEveryNodeIsUnhealthy) {
  for (LbType type : kAllTypes) {
    auto nodes = make_nodes({{1, 1}, {1, 1}, {1, 0}});
    auto b = make_balancer(spec_of(type, true), nodes);
    for (auto& n : nodes) n.health->set_healthy(false);
    std::map<int, int> seen;
    for (int k = 0; k < 200; ++k) {
      int i = b->pick(key_of("k", k), {});
      b->on_request_start(i);
      b->on_request_end(i, 0.001, false);
      ++seen[i];
    }
    // Priority still applies when failing open.
    EXPECT_EQ(seen.count(2), 0u) << static_cast<int>(type);
    EXPECT_EQ(seen[0] + seen[1], 200);
    // Exclusion is still honoured.
    int tried[] = {0};
    for (int k = 0; k < 20; ++k) EXPECT_EQ(b->pick(key_of("k", k), tried), 1);
    int tried2[] = {0, 1};
    EXPECT_EQ(b->pick("x", tried2), 2);
    int all[] = {0, 1, 2};
    EXPECT_EQ(b->pick("x", all), -1);
    for (auto& n : nodes) n.health->set_healthy(true);
  }
}

TEST(AllBalancers, PassiveCooldownGivesTheNodeTrafficAgain) {
  for (LbType type : kAllTypes) {
    auto nodes = uniform(2);
    auto b = make_balancer(spec_of(type, false), nodes);  // no active check
    nodes[0].health->set_healthy(false);
    for (int k = 0; k < 20; ++k) EXPECT_EQ(b->pick(key_of("k", k), {}), 1);
    clock::advance_for_testing(NodeHealth::kPassiveCooldown + std::chrono::milliseconds(1));
    bool zero_again = false;
    for (int k = 0; k < 200 && !zero_again; ++k) {
      int i = b->pick(key_of("k", k), {});
      b->on_request_start(i);
      b->on_request_end(i, 0.001, false);
      zero_again = i == 0;
    }
    EXPECT_TRUE(zero_again) << static_cast<int>(type);
  }
}

TEST(AllBalancers, NodesWithoutHealthCountAsHealthy) {
  for (LbType type : kAllTypes) {
    auto nodes = uniform(3);
    for (auto& n : nodes) n.health.reset();
    auto b = make_balancer(spec_of(type), nodes);
    for (int k = 0; k < 30; ++k) EXPECT_GE(b->pick(key_of("k", k), {}), 0);
  }
}

// ---------------------------------------------------------------------------------------------------------
// Consistent hashing

TEST(Chash, HashIsPinned) {
  // FNV-1a 64 reference values, then the pinned composite: changing these breaks agreement between data
  // planes of different versions.
  EXPECT_EQ(fnv1a64(""), 0xcbf29ce484222325ull);
  EXPECT_EQ(fnv1a64("a"), 0xaf63dc4c8601ec8cull);
  EXPECT_EQ(fnv1a64("foobar"), 0x85944171f73967e8ull);
  EXPECT_EQ(hash64(""), fmix64(0xcbf29ce484222325ull));
  EXPECT_EQ(fmix64(0), 0u);
  EXPECT_EQ(hash64("10.0.0.1:8080#0"), 0x65283bf9882a6167ull);
}

TEST(Chash, SameKeySameNodeAcrossBalancers) {
  auto nodes = uniform(5);
  auto a = make_balancer(spec_of(LbType::chash), nodes);
  // A separate factory stands for another worker or another process.
  auto nodes2 = uniform(5);
  auto b = BalancerFactory(spec_of(LbType::chash), nodes2).create(7);
  for (int k = 0; k < 2000; ++k) {
    std::string key = key_of("client-", k);
    int i = a->pick(key, {});
    EXPECT_EQ(i, a->pick(key, {}));
    EXPECT_EQ(i, b->pick(key, {}));
  }
}

TEST(Chash, RemovingANodeRemapsOnlyItsKeys) {
  const int n = 10, keys = 20000;
  auto nodes = uniform(n);
  auto before = make_balancer(spec_of(LbType::chash), nodes);
  // The same nodes without node 4 (same addresses, so the same ring points for the others).
  std::vector<NodeRuntime> fewer;
  for (int i = 0; i < n; ++i) {
    if (i != 4) fewer.push_back(nodes[i]);
  }
  auto after = make_balancer(spec_of(LbType::chash), fewer);
  int moved = 0;
  for (int k = 0; k < keys; ++k) {
    std::string key = key_of("k", k);
    const std::string& was = nodes[before->pick(key, {})].pool_key;
    const std::string& now = fewer[after->pick(key, {})].pool_key;
    if (was != now) {
      ++moved;
      EXPECT_EQ(was, nodes[4].pool_key) << key;
    }
  }
  EXPECT_GT(moved, keys / n / 2);
  EXPECT_LT(moved, keys / n * 3 / 2);
}

TEST(Chash, UnhealthyNodeKeysMoveAndComeBack) {
  auto nodes = uniform(6);
  auto b = make_balancer(spec_of(LbType::chash, true), nodes);
  std::vector<int> home;
  for (int k = 0; k < 3000; ++k) home.push_back(b->pick(key_of("k", k), {}));
  nodes[2].health->set_healthy(false);
  for (int k = 0; k < 3000; ++k) {
    int i = b->pick(key_of("k", k), {});
    if (home[k] == 2) {
      EXPECT_NE(i, 2);
    } else {
      EXPECT_EQ(i, home[k]);
    }
  }
  nodes[2].health->set_healthy(true);
  for (int k = 0; k < 3000; ++k) EXPECT_EQ(b->pick(key_of("k", k), {}), home[k]);
}

TEST(Chash, RetryWalksToTheNextNodeOfTheRing) {
  auto nodes = uniform(4);
  auto b = make_balancer(spec_of(LbType::chash), nodes);
  for (int k = 0; k < 500; ++k) {
    std::string key = key_of("k", k);
    int first = b->pick(key, {});
    int excl[] = {first};
    int second = b->pick(key, excl);
    EXPECT_NE(second, first);
    EXPECT_EQ(second, b->pick(key, excl));  // deterministic too
  }
}

TEST(Chash, DistributionFollowsWeights) {
  auto nodes = make_nodes({{1}, {2}, {3}, {4}});
  auto b = make_balancer(spec_of(LbType::chash), nodes);
  std::map<int, int> count;
  const int keys = 100000;
  for (int k = 0; k < keys; ++k) ++count[b->pick(key_of("/api/items/", k), {})];
  for (int i = 0; i < 4; ++i) {
    double expected = keys * (i + 1) / 10.0;
    EXPECT_NEAR(count[i], expected, expected * 0.15) << "node " << i;
  }
}

TEST(Chash, LargeWeightsKeepTheRingBounded) {
  auto nodes = make_nodes({{10000}, {20000}, {30000}});
  auto b = make_balancer(spec_of(LbType::chash), nodes);
  std::map<int, int> count;
  const int keys = 60000;
  for (int k = 0; k < keys; ++k) ++count[b->pick(key_of("k", k), {})];
  for (int i = 0; i < 3; ++i) EXPECT_NEAR(count[i], keys * (i + 1) / 6.0, keys * (i + 1) / 6.0 * 0.15);
}

TEST(Chash, EmptyKeyIsRoundRobin) {
  auto nodes = make_nodes({{5}, {1}, {1}});
  auto b = make_balancer(spec_of(LbType::chash), nodes);
  EXPECT_EQ(picks(*b, 7, ""), (std::vector<int>{0, 0, 1, 0, 2, 0, 0}));
}

TEST(Chash, DuplicateAddressesBothServe) {
  auto nodes = uniform(2);
  nodes[1].pool_key = nodes[0].pool_key;
  auto b = make_balancer(spec_of(LbType::chash), nodes);
  std::map<int, int> count;
  for (int k = 0; k < 2000; ++k) ++count[b->pick(key_of("k", k), {})];
  EXPECT_GT(count[0], 600);
  EXPECT_GT(count[1], 600);
}

// ---------------------------------------------------------------------------------------------------------
// Least connections

TEST(LeastConn, PrefersFewestInFlight) {
  auto nodes = uniform(3);
  auto b = make_balancer(spec_of(LbType::least_conn), nodes);
  // Idle: ties rotate.
  EXPECT_EQ(picks(*b, 6), (std::vector<int>{0, 1, 2, 0, 1, 2}));
  // Node 1 gets two long requests, node 2 one: the next picks go to node 0 until it catches up.
  b->on_request_start(1);
  b->on_request_start(1);
  b->on_request_start(2);
  EXPECT_EQ(b->pick({}, {}), 0);
  b->on_request_start(0);
  int next = b->pick({}, {});
  EXPECT_TRUE(next == 0 || next == 2);
  b->on_request_start(next);
  // Node 1 finishes both: it is the least loaded now.
  b->on_request_end(1, 0.1, false);
  b->on_request_end(1, 0.1, false);
  EXPECT_EQ(b->pick({}, {}), 1);
}

TEST(LeastConn, WeightsScaleTheLoad) {
  auto nodes = make_nodes({{3}, {1}});
  auto b = make_balancer(spec_of(LbType::least_conn), nodes);
  // Open 40 long requests: in-flight ends up ~3:1.
  std::vector<int> in_flight(2, 0);
  for (int k = 0; k < 40; ++k) {
    int i = b->pick({}, {});
    b->on_request_start(i);
    ++in_flight[i];
  }
  EXPECT_EQ(in_flight[0], 30);
  EXPECT_EQ(in_flight[1], 10);
}

TEST(LeastConn, ExcludedTopChoiceFallsBackToTheNext) {
  auto nodes = uniform(3);
  auto b = make_balancer(spec_of(LbType::least_conn), nodes);
  b->on_request_start(1);
  b->on_request_start(1);
  int excl[] = {0};
  EXPECT_EQ(b->pick({}, excl), 2);
  b->on_request_end(7, 0, false);   // out of range: ignored
  b->on_request_end(-1, 0, false);  // ignored
  b->on_request_end(0, 0, false);   // never started: ignored (no underflow)
  EXPECT_EQ(b->pick({}, {}), 0);
}

// ---------------------------------------------------------------------------------------------------------
// EWMA

TEST(Ewma, OnlyEwmaAsksForLatencies) {
  // The session reads the clock around a try only for a balancer that uses the latency.
  auto nodes = uniform(2);
  for (LbType type : kAllTypes) {
    EXPECT_EQ(make_balancer(spec_of(type), nodes)->uses_latency(), type == LbType::ewma);
  }
}

TEST(Ewma, PrefersTheFastNode) {
  auto nodes = uniform(3);
  auto b = make_balancer(spec_of(LbType::ewma), nodes);
  const double latency[] = {0.200, 0.010, 0.150};
  std::map<int, int> count;
  for (int k = 0; k < 3000; ++k) {
    int i = b->pick({}, {});
    b->on_request_start(i);
    b->on_request_end(i, latency[i], false);
    ++count[i];
  }
  EXPECT_GT(count[1], 3000 * 0.6);
}

TEST(Ewma, InFlightLoadSpillsOver) {
  auto nodes = uniform(2);
  auto b = make_balancer(spec_of(LbType::ewma), nodes);
  // Teach it: node 0 answers in 10 ms, node 1 in 20 ms.
  for (int k = 0; k < 10; ++k) {
    b->on_request_start(0);
    b->on_request_end(0, 0.010, false);
    b->on_request_start(1);
    b->on_request_end(1, 0.020, false);
  }
  // With both compared on every pick (two nodes), the fast node takes requests until its
  // latency x (in flight + 1) exceeds the slow node's.
  std::vector<int> in_flight(2, 0);
  for (int k = 0; k < 30; ++k) {
    int i = b->pick({}, {});
    b->on_request_start(i);
    ++in_flight[i];
  }
  EXPECT_NEAR(in_flight[0], 20, 1);
  EXPECT_NEAR(in_flight[1], 10, 1);
}

TEST(Ewma, FailuresArePenalised) {
  auto nodes = uniform(2);
  auto b = make_balancer(spec_of(LbType::ewma), nodes);
  b->on_request_start(0);
  b->on_request_end(0, 0.0001, true);  // fails fast (e.g. connection refused)
  b->on_request_start(1);
  b->on_request_end(1, 0.050, false);
  for (int k = 0; k < 50; ++k) EXPECT_EQ(b->pick({}, {}), 1);
}

TEST(Ewma, PenalisedNodeIsTriedAgainAfterItsAverageDecays) {
  auto nodes = uniform(2);
  auto b = make_balancer(spec_of(LbType::ewma), nodes);
  b->on_request_start(0);
  b->on_request_end(0, 0.0001, true);  // cost 1 s (failure penalty)
  // Node 1 keeps answering in 50 ms, one request per simulated second. Node 0's average decays with
  // time constant 10 s: 1 s * exp(-t / 10 s) < 50 ms once t > 10 * ln(20) = 30 s.
  int seconds = 0;
  for (; seconds < 120; ++seconds) {
    int i = b->pick({}, {});
    if (i == 0) break;
    b->on_request_start(i);
    b->on_request_end(i, 0.050, false);
    clock::advance_for_testing(std::chrono::seconds(1));
  }
  EXPECT_GE(seconds, 28);
  EXPECT_LE(seconds, 32);
}

// ---------------------------------------------------------------------------------------------------------
// Factory

TEST(Factory, BalancersShareTheRingButNotTheirState) {
  auto nodes = make_nodes({{5}, {1}, {1}});
  BalancerFactory factory(spec_of(LbType::chash), nodes);
  auto a = factory.create(0);
  auto b = factory.create(0);
  for (int k = 0; k < 100; ++k) {
    std::string key = key_of("k", k);
    EXPECT_EQ(a->pick(key, {}), b->pick(key, {}));
  }
  // Independent round-robin positions.
  picks(*a, 3, "");
  EXPECT_EQ(picks(*b, 7, ""), (std::vector<int>{0, 0, 1, 0, 2, 0, 0}));
  BalancerFactory copy = factory;  // copyable
  EXPECT_EQ(copy.create()->pick("k1", {}), a->pick("k1", {}));
}

}  // namespace
}  // namespace portico::upstream
