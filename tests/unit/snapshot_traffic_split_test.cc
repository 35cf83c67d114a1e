// The upstreams a route's traffic-split sends to: compiled per route in the plugin's numbering (an
// upstream_id's shared runtime, an inline upstream's own, the route's own), probed when checked, refused
// when an upstream_id is missing (whole configs and deltas, with the field path), and rebuilt when an
// upstream they name changes.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "config/loader.h"
#include "plugins/pipeline.h"
#include "snapshot/snapshot_builder.h"
#include "upstream/health.h"
#include "upstream/health_checker.h"

namespace portico::snapshot {
namespace {

router::MatchRequest request(const std::string& path) {
  router::MatchRequest m;
  m.host = "x";
  m.path = path;
  m.target = path;
  m.method_text = "GET";
  return m;
}

const char* kSplit = R"({"rules":[{"weighted_upstreams":[
  {"upstream_id":"canary","weight":1},
  {"upstream":{"nodes":{"127.0.0.1:9005":1},"checks":{"active":{"http_path":"/h"}}},"weight":1},
  {"weight":8}]}]})";

std::string document(const std::string& canary_port, const std::string& split = kSplit) {
  return R"({"upstreams":[{"id":"canary","nodes":{"127.0.0.1:)" + canary_port + R"(":1}},
                         {"id":"other","nodes":{"127.0.0.1:9009":1}}],
            "routes":[{"id":"r1","uri":"/a","upstream":{"nodes":{"127.0.0.1:9001":1}},"timeout":{"connect":1,"send":2,"read":3},
                       "plugins":{"traffic-split":)" +
         split + R"(}},
                      {"id":"r2","uri":"/b","upstream_id":"other"}]})";
}

class TrafficSplitSnapshot : public ::testing::Test {
 protected:
  BuildContext context() {
    BuildContext c;
    c.health = &health_;
    c.workers = 2;
    return c;
  }
  upstream::HealthRegistry health_;
};

TEST_F(TrafficSplitSnapshot, TargetsFollowThePluginsNumbering) {
  config::LoadResult loaded = config::parse_text(document("9004"), config::Format::json);
  ASSERT_TRUE(loaded.ok) << loaded.describe();
  std::string error;
  auto snap = build(std::move(loaded.config), "h", "test", 1, context(), &error);
  ASSERT_NE(snap, nullptr) << error;
  const RouteRuntime* r1 = snap->match(request("/a"));
  ASSERT_NE(r1, nullptr);
  ASSERT_NE(r1->split, nullptr);
  ASSERT_EQ(r1->split->targets.size(), 3u);
  // The owner is the route chain's traffic-split instance.
  ASSERT_NE(r1->plugins, nullptr);
  EXPECT_EQ(r1->split->owner, r1->plugins->plugins.front().get());
  const SplitTarget& by_id = r1->split->targets[0];
  EXPECT_EQ(by_id.upstream->key, "canary");
  EXPECT_EQ(by_id.upstream->nodes[0].spec.port, 9004);
  const SplitTarget& inline_target = r1->split->targets[1];
  EXPECT_EQ(inline_target.upstream->key, "route:r1#traffic-split/1");
  EXPECT_EQ(inline_target.upstream->per_worker.size(), 2u);  // its own balancer per worker
  EXPECT_EQ(r1->split->targets[2].upstream, r1->upstream);
  // The route's timeouts apply whichever upstream serves.
  EXPECT_EQ(by_id.timeout.read, 3);
  EXPECT_EQ(inline_target.timeout.connect, 1);
  // A choice another instance made, or none, is the route's own upstream.
  EXPECT_EQ(r1->target_for(nullptr, 0).upstream, r1->upstream);
  EXPECT_EQ(r1->target_for(r1->split->owner, -1).upstream, r1->upstream);
  EXPECT_EQ(r1->target_for(r1->split->owner, 1).upstream, inline_target.upstream);
  EXPECT_EQ(r1->target_for(r1->split->owner, 3).upstream, r1->upstream);
  EXPECT_EQ(snap->match(request("/b"))->split, nullptr);
  // The inline split upstream's active check is probed.
  std::vector<std::string> probed;
  for (const auto& t : probe_targets(*snap)) probed.push_back(t.upstream_key);
  EXPECT_EQ(probed, (std::vector<std::string>{"route:r1#traffic-split/1"}));
}

TEST_F(TrafficSplitSnapshot, InlineUpstreamWithoutTimeoutsGetsApisixsFifteenSeconds) {
  const std::string split =
      R"({"rules":[{"weighted_upstreams":[{"upstream":{"nodes":{"127.0.0.1:9005":1}}}]}]})";
  config::LoadResult loaded = config::parse_text(
      R"({"routes":[{"id":"r1","uri":"/a","upstream":{"nodes":{"127.0.0.1:9001":1}},"plugins":{"traffic-split":)" +
          split + "}}]}",
      config::Format::json);
  ASSERT_TRUE(loaded.ok) << loaded.describe();
  std::string error;
  auto snap = build(std::move(loaded.config), "h", "test", 1, context(), &error);
  ASSERT_NE(snap, nullptr) << error;
  const RouteRuntime* r1 = snap->match(request("/a"));
  EXPECT_EQ(r1->split->targets[0].timeout.read, 15);
  EXPECT_EQ(r1->timeout.read, 60);
}

TEST_F(TrafficSplitSnapshot, MissingUpstreamIdIsRefusedWithItsPath) {
  const std::string split = R"({"rules":[{"weighted_upstreams":[{"weight":1},{"upstream_id":"nope"}]}]})";
  config::LoadResult loaded = config::parse_text(document("9004", split), config::Format::json);
  ASSERT_FALSE(loaded.ok);
  ASSERT_FALSE(loaded.errors.empty());
  EXPECT_EQ(loaded.errors[0].path,
            "routes[0].plugins.traffic-split.rules[0].weighted_upstreams[1].upstream_id");
  EXPECT_EQ(loaded.errors[0].reason, "upstream \"nope\" is not defined in upstreams");
}

TEST_F(TrafficSplitSnapshot, DeltasRebuildWhatReliesOnANamedUpstreamAndRefuseItsRemoval) {
  config::LoadResult loaded = config::parse_text(document("9004"), config::Format::json);
  ASSERT_TRUE(loaded.ok) << loaded.describe();
  SnapshotBuilder builder(context(), SnapshotBuilderOptions{512, false});
  std::string error;
  ASSERT_NE(builder.build(std::move(loaded.config), "h0", "test", 1, &error), nullptr) << error;

  // The canary upstream moves: r1 (which names it only through traffic-split) is rebuilt and follows.
  const std::string moved = R"({"id":"canary","nodes":{"127.0.0.1:9014":1}})";
  std::vector<ResourceChange> changes{{"upstreams", "canary", &moved}};
  auto r = builder.apply(changes, "h1", "test", 2);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  const RouteRuntime* r1 = r.snapshot->match(request("/a"));
  ASSERT_NE(r1->split, nullptr);
  EXPECT_EQ(r1->split->targets[0].upstream->nodes[0].spec.port, 9014);

  // Removing it is refused with the path of the reference.
  std::vector<ResourceChange> removal{{"upstreams", "canary", nullptr}};
  r = builder.apply(removal, "h2", "test", 3);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::invalid);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "routes/r1.plugins.traffic-split.rules[0].weighted_upstreams[0].upstream_id");

  // A plugin config naming a missing upstream is refused too, even when no route uses it.
  const std::string pc =
      R"({"id":"pc1","plugins":{"traffic-split":{"rules":[{"weighted_upstreams":[{"upstream_id":"gone"}]}]}}})";
  std::vector<ResourceChange> add_pc{{"plugin_configs", "pc1", &pc}};
  r = builder.apply(add_pc, "h3", "test", 4);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::invalid);
  EXPECT_EQ(r.errors[0].path,
            "plugin_configs/pc1.plugins.traffic-split.rules[0].weighted_upstreams[0].upstream_id");
}

}  // namespace
}  // namespace portico::snapshot
