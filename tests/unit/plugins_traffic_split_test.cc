// traffic-split: the weighted picker (exact shares, spread, zero weights), rule matching (first matching
// rule, any match entry, every expression of an entry), the numbering the snapshot follows, and what the
// schema and the check refuse.
#include "plugins/traffic_split.h"

#include <map>

#include "plugins_test_support.h"

namespace portico::plugins {
namespace {

using test::build;
using test::json;
using test::refusal;
using test::Request;

std::vector<int> picks(WeightedPicker& p, int n) {
  std::vector<int> out;
  for (int i = 0; i < n; ++i) out.push_back(p.pick());
  return out;
}

TEST(WeightedPicker, ExactSharesOverEveryCycle) {
  WeightedPicker p({1, 9});
  for (int cycle = 0; cycle < 100; ++cycle) {
    std::map<int, int> count;
    for (int x : picks(p, 10)) ++count[x];
    EXPECT_EQ(count[0], 1);
    EXPECT_EQ(count[1], 9);
  }
  WeightedPicker q({5, 3, 2});
  std::map<int, int> count;
  for (int x : picks(q, 1000)) ++count[x];
  EXPECT_EQ(count[0], 500);
  EXPECT_EQ(count[1], 300);
  EXPECT_EQ(count[2], 200);
}

TEST(WeightedPicker, SpreadsThePicksOfASmallWeight) {
  // Smooth: 1:1 alternates, and the 1 of 1:4 is never picked twice in a row (plain weighted round robin
  // would send bursts).
  WeightedPicker even({1, 1});
  EXPECT_EQ(picks(even, 6), (std::vector<int>{0, 1, 0, 1, 0, 1}));
  WeightedPicker p({1, 4});
  std::vector<int> seq = picks(p, 50);
  for (size_t i = 1; i < seq.size(); ++i) EXPECT_FALSE(seq[i] == 0 && seq[i - 1] == 0) << i;
}

TEST(WeightedPicker, ZeroWeightsAreNeverPicked) {
  WeightedPicker p({0, 3, 0});
  for (int x : picks(p, 30)) EXPECT_EQ(x, 1);
  WeightedPicker none({0, 0});
  EXPECT_EQ(none.pick(), -1);
  WeightedPicker empty;
  EXPECT_EQ(empty.pick(), -1);
}

// The choice a request gets: -2 when the plugin did not choose (no rule applied).
int choice(const Plugin& p, const std::string& head) {
  Request r(head);
  p.access(r.ctx);
  if (r.ctx.split_owner == nullptr) return -2;
  EXPECT_EQ(r.ctx.split_owner, &p);
  return r.ctx.split_choice;
}

TEST(TrafficSplit, FirstMatchingRuleAndItsNumbering) {
  // Rule 0 (numbers 0, 1): header canary, or arg beta=1 with a cookie; rule 1 (number 2): everything else.
  auto p = build("traffic-split",
                 {{"rules",
                   {{{"match",
                      {{{"vars", {{"http_x-canary", "==", "1"}}}},
                       {{"vars", {{"arg_beta", "==", "1"}, {"cookie_u", "~~", "^vip"}}}}}},
                     {"weighted_upstreams", {{{"upstream_id", "canary"}, {"weight", 1}}, {{"weight", 0}}}}},
                    {{"weighted_upstreams", {{{"upstream_id", 7}}}}}}}});
  ASSERT_TRUE(p);
  EXPECT_EQ(p->priority(), 966);
  EXPECT_EQ(p->phases(), kAccess);
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(choice(*p, "GET / HTTP/1.1\r\nHost: h\r\nX-Canary: 1"), 0);
    EXPECT_EQ(choice(*p, "GET /?beta=1 HTTP/1.1\r\nHost: h\r\nCookie: u=vip7"), 0);
    // One expression of an entry failing fails the entry.
    EXPECT_EQ(choice(*p, "GET /?beta=1 HTTP/1.1\r\nHost: h\r\nCookie: u=plain"), 2);
    EXPECT_EQ(choice(*p, "GET / HTTP/1.1\r\nHost: h\r\nX-Canary: 2"), 2);
  }
  auto targets =
      split_targets(json{{"rules",
                          {{{"weighted_upstreams", {{{"upstream_id", "canary"}}, {{"weight", 0}}}}},
                           {{"weighted_upstreams", {{{"upstream", {{"nodes", {{"a:1", 1}}}}}}}}}}}});
  ASSERT_EQ(targets.size(), 3u);
  EXPECT_TRUE(targets[0].upstream_id != nullptr && targets[0].upstream == nullptr);
  EXPECT_TRUE(targets[1].upstream_id == nullptr && targets[1].upstream == nullptr);  // the route's own
  EXPECT_TRUE(targets[2].upstream != nullptr);
}

TEST(TrafficSplit, NoRuleAppliesOrEveryWeightZeroMeansTheRoutesUpstream) {
  auto only_header = build("traffic-split", {{"rules",
                                              {{{"match", {{{"vars", {{"http_x-canary", "==", "1"}}}}}},
                                                {"weighted_upstreams", {{{"upstream_id", "c"}}}}}}}});
  EXPECT_EQ(choice(*only_header, "GET / HTTP/1.1\r\nHost: h"), -2);
  auto zero = build("traffic-split",
                    {{"rules", {{{"weighted_upstreams", {{{"upstream_id", "c"}, {"weight", 0}}}}}}}});
  EXPECT_EQ(choice(*zero, "GET / HTTP/1.1\r\nHost: h"), -1);
  // A rule without weighted_upstreams gets the schema's default: the route's own upstream.
  auto bare = build("traffic-split", {{"rules", {json::object()}}});
  EXPECT_EQ(choice(*bare, "GET / HTTP/1.1\r\nHost: h"), 0);
  EXPECT_EQ(split_targets(json{{"rules", {{{"weighted_upstreams", {{{"weight", 1}}}}}}}}).size(), 1u);
}

TEST(TrafficSplit, AnEmptyMatchHoldsOnlyAsTheFirstRule) {
  // APISIX's match_passed starts true and only an evaluated entry changes it: `match: []` first holds; after
  // a rule that failed it keeps that rule's verdict (fails), so the next rule or the route's upstream serves.
  auto first =
      build("traffic-split", {{"rules",
                               {{{"match", json::array()}, {"weighted_upstreams", {{{"upstream_id", "a"}}}}},
                                {{"weighted_upstreams", {{{"upstream_id", "b"}}}}}}}});
  EXPECT_EQ(choice(*first, "GET / HTTP/1.1\r\nHost: h"), 0);
  auto after_failed =
      build("traffic-split", {{"rules",
                               {{{"match", {{{"vars", {{"http_x-canary", "==", "1"}}}}}},
                                 {"weighted_upstreams", {{{"upstream_id", "a"}}}}},
                                {{"match", json::array()}, {"weighted_upstreams", {{{"upstream_id", "b"}}}}},
                                {{"weighted_upstreams", {{{"upstream_id", "c"}}}}}}}});
  EXPECT_EQ(choice(*after_failed, "GET / HTTP/1.1\r\nHost: h"), 2);
  EXPECT_EQ(choice(*after_failed, "GET / HTTP/1.1\r\nHost: h\r\nx-canary: 1"), 0);
  auto last = build("traffic-split",
                    {{"rules",
                      {{{"match", {{{"vars", {{"http_x-canary", "==", "1"}}}}}},
                        {"weighted_upstreams", {{{"upstream_id", "a"}}}}},
                       {{"match", json::array()}, {"weighted_upstreams", {{{"upstream_id", "b"}}}}}}}});
  EXPECT_EQ(choice(*last, "GET / HTTP/1.1\r\nHost: h"), -2);
}

TEST(TrafficSplit, WeightsSplitRequestsExactlyPerWorker) {
  auto p =
      build("traffic-split",
            {{"rules",
              {{{"weighted_upstreams",
                 {{{"upstream", {{"nodes", {{"127.0.0.1:1", 1}}}}}, {"weight", 1}}, {{"weight", 9}}}}}}}});
  std::map<int, int> count;
  for (int i = 0; i < 1000; ++i) ++count[choice(*p, "GET / HTTP/1.1\r\nHost: h")];
  EXPECT_EQ(count[0], 100);
  EXPECT_EQ(count[1], 900);
}

TEST(TrafficSplit, SchemaAndCheckRefusals) {
  auto refused = [](json conf) { return refusal("traffic-split", conf); };
  EXPECT_EQ(refused({{"rules", {{{"weighted_upstreams", json::array()}}}}}),
            "rules[0].weighted_upstreams: expect array to have at least 1 items");
  EXPECT_NE(refused({{"rules", {{{"weighted_upstreams", {{{"weight", -1}}}}}}}}), "");
  EXPECT_NE(refused({{"rules", {{{"other", 1}}}}}), "");
  EXPECT_NE(refused({{"rules", {{{"match", {{{"vars", {{"http_a", "=~", "1"}}}}}}}}}}), "");
  EXPECT_EQ(
      refused(
          {{"rules",
            {{{"weighted_upstreams", {{{"upstream", {{"nodes", {{"a:1", 1}}}}}, {"upstream_id", "x"}}}}}}}}),
      "rules[0].weighted_upstreams[0].upstream_id: set either upstream or upstream_id, not both");
  // The inline upstream is checked as a route's inline upstream, with its path.
  EXPECT_EQ(refused({{"rules", {{{"weighted_upstreams", {{{"upstream", {{"type", "roundrobin"}}}}}}}}}}),
            "rules[0].weighted_upstreams[0].upstream.nodes: property \"nodes\" is required");
  EXPECT_NE(refused({{"rules",
                      {{{"weighted_upstreams", {{{"upstream", {{"id", "u"}, {"nodes", {{"a:1", 1}}}}}}}}}}}}),
            "");
  // 20 weighted upstreams at most, as APISIX.
  json many = json::array();
  for (int i = 0; i < 21; ++i) many.push_back({{"weight", 1}});
  EXPECT_NE(refused({{"rules", {{{"weighted_upstreams", many}}}}}), "");
  EXPECT_EQ(refused({{"rules", {{{"weighted_upstreams", {{{"upstream_id", 1}, {"weight", 3}}}}}}}}), "");
}

}  // namespace
}  // namespace portico::plugins
