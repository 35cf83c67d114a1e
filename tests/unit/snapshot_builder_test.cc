// SnapshotBuilder: a delta gives the same routing as loading the whole changed document, is refused with the
// path of what it breaks (keeping the old config), touches only what relies on the change, and costs the
// size of the change.
#include "snapshot/snapshot_builder.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>
#include <deque>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "config/loader.h"
#include "plugins/consumers.h"
#include "plugins/pipeline.h"
#include "upstream/health.h"
#include "upstream/health_checker.h"

namespace portico::snapshot {
namespace {

// A configuration as a data plane holds it: JSON text per (kind, id), documents in id order.
class Docs {
 public:
  void put(const std::string& kind, const std::string& id, std::string json) { kinds_[kind][id] = json; }
  void erase(const std::string& kind, const std::string& id) { kinds_[kind].erase(id); }
  const std::string* find(const std::string& kind, const std::string& id) const {
    auto k = kinds_.find(kind);
    if (k == kinds_.end()) return nullptr;
    auto it = k->second.find(id);
    return it == k->second.end() ? nullptr : &it->second;
  }
  std::string document() const {
    std::string out = "{";
    bool first_kind = true;
    for (const char* kind : {"routes", "services", "upstreams", "consumers", "ssls", "global_rules",
                             "plugin_configs", "credentials"}) {
      if (!first_kind) out += ",";
      first_kind = false;
      out += '"';
      out += kind;
      out += "\":[";
      auto k = kinds_.find(kind);
      if (k != kinds_.end()) {
        bool first = true;
        for (const auto& [id, json] : k->second) {
          if (!first) out += ",";
          first = false;
          out += json;
        }
      }
      out += "]";
    }
    return out + "}";
  }

 private:
  std::map<std::string, std::map<std::string, std::string>> kinds_;
};

config::Config load(const Docs& docs) {
  config::LoadResult r = config::parse_text(docs.document(), config::Format::json);
  EXPECT_TRUE(r.ok) << r.describe();
  return std::move(r.config);
}

// One delta under construction: the changes and the texts they point to.
struct Delta {
  std::vector<std::pair<std::string, std::string>> keys;  // kind, id
  std::vector<std::optional<std::string>> values;
  Delta& put(std::string kind, std::string id, std::string json) {
    keys.emplace_back(std::move(kind), std::move(id));
    values.emplace_back(std::move(json));
    return *this;
  }
  Delta& erase(std::string kind, std::string id) {
    keys.emplace_back(std::move(kind), std::move(id));
    values.emplace_back(std::nullopt);
    return *this;
  }
  std::vector<ResourceChange> changes() const {
    std::vector<ResourceChange> out;
    for (size_t i = 0; i < keys.size(); ++i) {
      out.push_back({keys[i].first, keys[i].second, values[i] ? &*values[i] : nullptr});
    }
    return out;
  }
  void apply_to(Docs& docs) const {
    for (size_t i = 0; i < keys.size(); ++i) {
      if (values[i]) {
        docs.put(keys[i].first, keys[i].second, *values[i]);
      } else {
        docs.erase(keys[i].first, keys[i].second);
      }
    }
  }
};

router::MatchRequest request(const std::string& host, const std::string& path, const std::string& method) {
  router::MatchRequest m;
  m.host = host;
  m.path = path;
  m.target = path;
  m.method_text = method;
  return m;
}

// What a request gets: the route id and the runtime facts a worker uses.
std::string outcome(const Snapshot& snap, const router::MatchRequest& req) {
  const RouteRuntime* r = snap.match(req);
  if (r == nullptr) return "404";
  std::string out = r->spec->id + " body=" + std::to_string(r->max_body_size) +
                    " ws=" + std::to_string(r->websocket) + " read=" + std::to_string(r->timeout.read) +
                    " up=" + r->upstream->key + ":";
  for (const auto& n : r->upstream->nodes) out += n.spec.host + "/" + std::to_string(n.spec.port) + ",";
  return out;
}

class SnapshotBuilderTest : public ::testing::Test {
 protected:
  BuildContext context() {
    BuildContext c;
    c.health = &health_;
    return c;
  }
  upstream::HealthRegistry health_;
};

std::string route_json(const std::string& id, const std::string& uri, const std::string& extra) {
  return R"({"id":")" + id + R"(","uri":")" + uri + "\"" + (extra.empty() ? "" : "," + extra) + "}";
}
std::string inline_upstream(int port) {
  return R"("upstream":{"nodes":{"127.0.0.1:)" + std::to_string(port) + R"(":1}})";
}

class SnapshotBuilderEquivalence : public SnapshotBuilderTest, public ::testing::WithParamInterface<bool> {};

// Random deltas (routes, upstreams, services, plugin configs, global rules, consumers) against a full load of
// the resulting document, over a grid of requests; with whole rebuilds in the call and in the background.
TEST_P(SnapshotBuilderEquivalence, DeltasRouteLikeAFullLoadOfTheSameDocument) {
  const bool background = GetParam();
  std::mt19937 rng(7);
  auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
  const std::vector<std::string> hosts = {"a.example", "b.example", "*.example"};
  const std::vector<std::string> paths = {"/p0", "/p1", "/p2", "/p3", "/x/*", "/x/y", "/u/:id", "/*"};
  const std::vector<std::string> methods = {"GET", "POST"};

  Docs docs;
  for (int u = 0; u < 4; ++u) {
    docs.put("upstreams", "u" + std::to_string(u),
             R"({"id":"u)" + std::to_string(u) + R"(","nodes":{"127.0.0.1:)" + std::to_string(9000 + u) +
                 R"(":1},"timeout":{"connect":1,"send":2,"read":)" + std::to_string(3 + u) + "}}");
  }
  for (int sv = 0; sv < 3; ++sv) {
    docs.put("services", "s" + std::to_string(sv),
             R"({"id":"s)" + std::to_string(sv) + R"(","upstream_id":"u)" + std::to_string(sv) +
                 R"(","hosts":[")" + hosts[static_cast<size_t>(sv)] + R"("]})");
  }
  docs.put("plugin_configs", "pc1", R"({"id":"pc1","plugins":{"client-control":{"max_body_size":111}}})");
  docs.put("global_rules", "g1", R"({"id":"g1","plugins":{"client-control":{"max_body_size":999}}})");

  // A random route: its own upstream, a named one, or a service's; sometimes a plugin config, a host, a
  // method, a priority.
  auto random_route = [&](const std::string& id) {
    std::string extra;
    int how = pick(3);
    if (how == 0) extra = inline_upstream(8000 + pick(5));
    if (how == 1) extra = R"("upstream_id":"u)" + std::to_string(pick(4)) + "\"";
    if (how == 2) extra = R"("service_id":"s)" + std::to_string(pick(3)) + "\"";
    if (pick(4) == 0) extra += R"(,"plugin_config_id":"pc1")";
    if (how != 2 && pick(3) == 0) extra += R"(,"host":")" + hosts[static_cast<size_t>(pick(3))] + "\"";
    if (pick(3) == 0) extra += R"(,"methods":[")" + methods[static_cast<size_t>(pick(2))] + "\"]";
    if (pick(4) == 0) extra += R"(,"priority":)" + std::to_string(pick(3));
    if (pick(6) == 0)
      extra += R"(,"plugins":{"client-control":{"max_body_size":)" + std::to_string(pick(50)) + "}}";
    if (pick(8) == 0) extra += R"(,"enable_websocket":true)";
    return route_json(id, paths[static_cast<size_t>(pick(static_cast<int>(paths.size())))], extra);
  };
  for (int r = 100; r < 160; ++r) {
    std::string id = std::to_string(r);
    id.insert(0, 1, 'r');  // (not "r" + ...: GCC 12 warns falsely about that under -O2)
    docs.put("routes", id, random_route(id));
  }

  SnapshotBuilderOptions options;
  options.max_overlay_routes = 10;  // so that some deltas rebuild everything
  options.rebuild_in_background = background;
  SnapshotBuilder builder(context(), options);
  std::string error;
  ASSERT_NE(builder.build(load(docs), "h0", "test", 1, &error), nullptr) << error;

  std::vector<router::MatchRequest> requests;
  std::deque<std::string> texts;  // keeps the strings the requests view
  for (const char* host : {"a.example", "b.example", "c.example", "other"}) {
    for (const char* path : {"/p0", "/p1", "/p2", "/p3", "/x/y", "/x/z", "/u/7", "/zzz"}) {
      for (const std::string& method : methods) {
        texts.push_back(host);
        const std::string& h = texts.back();
        texts.push_back(path);
        const std::string& p = texts.back();
        texts.push_back(method);
        requests.push_back(request(h, p, texts.back()));
      }
    }
  }

  int rebuilt = 0;
  int next_id = 200;
  for (int step = 0; step < 150; ++step) {
    Delta d;
    int count = 1 + pick(3);
    for (int c = 0; c < count; ++c) {
      int what = pick(10);
      if (what <= 3) {  // change or add a route
        std::string id =
            pick(3) == 0 ? "r" + std::to_string(next_id++) : "r" + std::to_string(100 + pick(60));
        d.put("routes", id, random_route(id));
      } else if (what == 4) {  // remove a route
        d.erase("routes", "r" + std::to_string(100 + pick(60)));
      } else if (what == 5) {  // move an upstream
        int u = pick(4);
        d.put("upstreams", "u" + std::to_string(u),
              R"({"id":"u)" + std::to_string(u) + R"(","nodes":{"127.0.0.2:)" + std::to_string(7000 + step) +
                  R"(":1}})");
      } else if (what == 6) {  // a service's hosts and upstream
        int sv = pick(3);
        d.put("services", "s" + std::to_string(sv),
              R"({"id":"s)" + std::to_string(sv) + R"(","upstream_id":"u)" + std::to_string(pick(4)) +
                  R"(","enable_websocket":)" + (pick(2) ? "true" : "false") + R"(,"hosts":[")" +
                  hosts[static_cast<size_t>(pick(3))] + R"("]})");
      } else if (what == 7) {  // a plugin config's limit
        d.put("plugin_configs", "pc1",
              R"({"id":"pc1","plugins":{"client-control":{"max_body_size":)" + std::to_string(pick(500)) +
                  "}}}");
      } else if (what == 8) {  // the global rule's limit (touches every route)
        d.put("global_rules", "g1",
              R"({"id":"g1","plugins":{"client-control":{"max_body_size":)" + std::to_string(pick(5000)) +
                  "}}}");
      } else {  // a consumer: touches no route
        d.put("consumers", "c" + std::to_string(pick(3)),
              R"({"username":"c)" + std::to_string(pick(3)) + "\"}");
      }
    }
    // The consumer's key must match its username: rebuild those entries consistently.
    for (size_t i = 0; i < d.keys.size(); ++i) {
      if (d.keys[i].first == "consumers" && d.values[i]) d.keys[i].second = d.values[i]->substr(13, 2);
    }
    if (background && pick(4) == 0) builder.wait_for_background_rebuild();  // installed by this delta
    Docs next = docs;
    d.apply_to(next);
    config::LoadResult whole = config::parse_text(next.document(), config::Format::json);
    auto changes = d.changes();
    auto result =
        builder.apply(changes, "h" + std::to_string(step + 1), "test", static_cast<uint64_t>(step + 2));
    if (!whole.ok) {
      // The delta breaks a rule; the builder must agree.
      ASSERT_EQ(result.outcome, SnapshotBuilder::Outcome::invalid) << whole.describe();
      continue;
    }
    ASSERT_EQ(result.outcome, SnapshotBuilder::Outcome::built)
        << "step " << step << ": "
        << (result.errors.empty() ? result.internal_error : result.errors[0].reason);
    rebuilt += result.rebuilt ? 1 : 0;
    docs = std::move(next);
    auto full = build(std::move(whole.config), "full", "test", 1, context(), &error);
    ASSERT_NE(full, nullptr) << error;
    EXPECT_EQ(result.snapshot->route_count, full->route_count);
    for (const auto& req : requests) {
      ASSERT_EQ(outcome(*result.snapshot, req), outcome(*full, req))
          << "step " << step << " " << req.method_text << " " << req.host << req.path;
    }
  }
  EXPECT_GT(rebuilt, 0);    // the overlay limit and the global rule forced whole rebuilds
  EXPECT_LT(rebuilt, 150);  // and most deltas were applied to the overlay
}

INSTANTIATE_TEST_SUITE_P(RebuildInCallOrBackground, SnapshotBuilderEquivalence, ::testing::Bool());

TEST_F(SnapshotBuilderTest, RefusedDeltaNamesTheFieldAndKeepsTheConfig) {
  Docs docs;
  docs.put("upstreams", "u1", R"({"id":"u1","nodes":{"127.0.0.1:9001":1}})");
  docs.put("routes", "r1", route_json("r1", "/a", R"("upstream_id":"u1")"));
  docs.put("routes", "r2", route_json("r2", "/b", inline_upstream(9002)));
  SnapshotBuilder builder(context());
  std::string error;
  ASSERT_NE(builder.build(load(docs), "h0", "test", 1, &error), nullptr);

  // Removing an upstream a route still uses.
  auto r = builder.apply(Delta().erase("upstreams", "u1").changes(), "h1", "test", 2);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::invalid);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "routes/r1.upstream_id");
  EXPECT_EQ(r.errors[0].reason, "upstream \"u1\" is not defined in upstreams");

  // A resource that fails its own validation, and one whose id is not its key.
  Delta bad;
  bad.put("routes", "r3", route_json("r3", "no-slash", inline_upstream(1)));
  bad.put("routes", "r4", route_json("r5", "/c", inline_upstream(1)));
  r = builder.apply(bad.changes(), "h1", "test", 2);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::invalid);
  ASSERT_EQ(r.errors.size(), 2u);
  EXPECT_EQ(r.errors[0].path, "routes/r3.uri");
  EXPECT_EQ(r.errors[1].path, "routes/r4.id");

  // Nothing of the refused deltas was kept: the base is still h0 and a valid delta applies on it.
  EXPECT_EQ(builder.hash(), "h0");
  r = builder.apply(Delta().erase("routes", "r1").erase("upstreams", "u1").changes(), "h1", "test", 2);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_EQ(r.snapshot->match(request("x", "/a", "GET")), nullptr);
  ASSERT_NE(r.snapshot->match(request("x", "/b", "GET")), nullptr);
  EXPECT_EQ(r.snapshot->route_count, 1u);
}

// The plugins of each global rule, "g1:key-auth g2:prometheus".
std::string global_plugins(const Snapshot& snap) {
  std::string out;
  if (!snap.global_rules) return out;
  for (const auto& chain : snap.global_rules->chains) {
    for (const auto& p : chain->plugins) {
      if (!out.empty()) out += ' ';
      out += p->name();
    }
  }
  return out;
}

// A global rule arriving in a delta keeps its plugins, also once another rule or change follows (the checks
// used to move the pending rules out before they were built and committed).
TEST_F(SnapshotBuilderTest, GlobalRulesOfADeltaKeepTheirPlugins) {
  Docs docs;
  docs.put("routes", "r1", route_json("r1", "/a", inline_upstream(9001)));
  SnapshotBuilder builder(context());
  std::string error;
  ASSERT_NE(builder.build(load(docs), "h0", "test", 1, &error), nullptr) << error;

  auto r =
      builder.apply(Delta().put("global_rules", "g1", R"({"id":"g1","plugins":{"key-auth":{}}})").changes(),
                    "h1", "test", 2);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_EQ(global_plugins(*r.snapshot), "key-auth");

  r = builder.apply(Delta().put("global_rules", "g2", R"({"id":"g2","plugins":{"prometheus":{}}})").changes(),
                    "h2", "test", 3);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_EQ(global_plugins(*r.snapshot), "key-auth prometheus");

  r = builder.apply(Delta().put("routes", "r2", route_json("r2", "/b", inline_upstream(9002))).changes(),
                    "h3", "test", 4);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_EQ(global_plugins(*r.snapshot), "key-auth prometheus");

  r = builder.apply(Delta().erase("global_rules", "g1").changes(), "h4", "test", 5);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_EQ(global_plugins(*r.snapshot), "prometheus");
}

TEST_F(SnapshotBuilderTest, TouchesOnlyWhatReliesOnTheChangeAndReusesUpstreams) {
  Docs docs;
  docs.put("upstreams", "u1", R"({"id":"u1","type":"least_conn","nodes":{"127.0.0.1:9001":1}})");
  docs.put("upstreams", "u2", R"({"id":"u2","nodes":{"127.0.0.1:9002":1}})");
  for (int i = 0; i < 10; ++i) {
    // Appended, not `"r" + std::to_string(i)`: GCC 12 warns falsely (-Wrestrict) on that at -O2.
    std::string id = "r";
    id += std::to_string(i);
    docs.put("routes", id,
             route_json(id, "/" + id, i < 5 ? R"("upstream_id":"u1")" : R"("upstream_id":"u2")"));
  }
  SnapshotBuilder builder(context());
  std::string error;
  auto base = builder.build(load(docs), "h0", "test", 1, &error);
  ASSERT_NE(base, nullptr);
  const UpstreamRuntime* u1 = base->match(request("x", "/r0", "GET"))->upstream;

  // A new route on u1: only it goes to the overlay, and it shares u1's runtime (one least_conn count).
  auto r = builder.apply(
      Delta().put("routes", "r99", route_json("r99", "/new", R"("upstream_id":"u1")")).changes(), "h1",
      "test", 2);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_EQ(r.snapshot->base, base->base);  // the base layer is shared, not rebuilt
  ASSERT_NE(r.snapshot->overlay, nullptr);
  EXPECT_EQ(r.snapshot->overlay->routes.size(), 1u);
  EXPECT_EQ(r.snapshot->match(request("x", "/new", "GET"))->upstream, u1);

  // Moving u2 touches exactly the five routes using it.
  r = builder.apply(Delta().put("upstreams", "u2", R"({"id":"u2","nodes":{"127.0.0.1:9003":1}})").changes(),
                    "h2", "test", 3);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_EQ(r.snapshot->overlay->routes.size(), 6u);
  EXPECT_EQ(r.snapshot->match(request("x", "/r7", "GET"))->upstream->nodes[0].spec.port, 9003);
  EXPECT_EQ(r.snapshot->match(request("x", "/r0", "GET"))->upstream, u1);

  // A consumer touches no route: the overlay layer is kept as it is.
  auto before = r.snapshot->overlay;
  r = builder.apply(Delta().put("consumers", "jack", R"({"username":"jack"})").changes(), "h3", "test", 4);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_EQ(r.snapshot->overlay, before);
}

TEST_F(SnapshotBuilderTest, ProbeTargetsFollowTheLiveRoutes) {
  const std::string checked =
      R"("upstream":{"nodes":{"127.0.0.1:9001":1},"checks":{"active":{"http_path":"/h"}}})";
  Docs docs;
  docs.put("routes", "r1", route_json("r1", "/a", checked));
  docs.put("routes", "r2", route_json("r2", "/b", inline_upstream(9002)));
  SnapshotBuilder builder(context());
  std::string error;
  auto s0 = builder.build(load(docs), "h0", "test", 1, &error);
  ASSERT_NE(s0, nullptr);
  auto keys = [](const Snapshot& s) {
    std::vector<std::string> out;
    for (const auto& t : probe_targets(s)) out.push_back(t.upstream_key + " " + t.host_header);
    return out;
  };
  EXPECT_EQ(keys(*s0), (std::vector<std::string>{"route:r1 127.0.0.1:9001"}));
  // Moved: the overlay's runtime is probed, not the base's old one.
  auto moved = R"("upstream":{"nodes":{"127.0.0.1:9003":1},"checks":{"active":{"http_path":"/h"}}})";
  auto r =
      builder.apply(Delta().put("routes", "r1", route_json("r1", "/a", moved)).changes(), "h1", "test", 2);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_EQ(keys(*r.snapshot), (std::vector<std::string>{"route:r1 127.0.0.1:9003"}));
  // Removed: nothing is probed any more, although the base still holds the runtime.
  r = builder.apply(Delta().erase("routes", "r1").changes(), "h2", "test", 3);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_TRUE(keys(*r.snapshot).empty());
}

TEST_F(SnapshotBuilderTest, TiesGoToTheRouteWhoseIdSortsFirstAcrossLayers) {
  Docs docs;
  docs.put("routes", "b", route_json("b", "/same", inline_upstream(9001)));
  SnapshotBuilder builder(context());
  std::string error;
  ASSERT_NE(builder.build(load(docs), "h0", "test", 1, &error), nullptr);
  auto r = builder.apply(
      Delta().put("routes", "a", route_json("a", "/same", inline_upstream(9002))).changes(), "h1", "test", 2);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_EQ(r.snapshot->match(request("x", "/same", "GET"))->spec->id, "a");
  r = builder.apply(
      Delta()
          .put("routes", "c", route_json("c", "/same", inline_upstream(9003) + R"(,"priority":1)"))
          .changes(),
      "h2", "test", 3);
  EXPECT_EQ(r.snapshot->match(request("x", "/same", "GET"))->spec->id, "c");  // priority beats order
}

TEST_F(SnapshotBuilderTest, ABaseNotOrderedByIdTakesNoDelta) {
  Docs unused;
  config::Config c;
  config::LoadResult r = config::parse_text(R"({"routes":[)" + route_json("z", "/z", inline_upstream(1)) +
                                                "," + route_json("a", "/a", inline_upstream(2)) + "]}",
                                            config::Format::json);
  ASSERT_TRUE(r.ok);
  SnapshotBuilder builder(context());
  std::string error;
  ASSERT_NE(builder.build(std::move(r.config), "h0", "file", 1, &error), nullptr);
  auto result = builder.apply(Delta().erase("routes", "a").changes(), "h1", "test", 2);
  EXPECT_EQ(result.outcome, SnapshotBuilder::Outcome::no_base);
}

// Not a timing assertion (those live in bench/): prints what a one-route delta costs at 100k routes.
TEST_F(SnapshotBuilderTest, OneRouteDeltaAtScalePrintsItsCost) {
  const int kRoutes = 100000;
  std::string doc = R"({"routes":[)";
  char buf[256];
  for (int i = 0; i < kRoutes; ++i) {
    std::snprintf(
        buf, sizeof buf,
        R"(%s{"id":"r%06d","uri":"/api/v1/r%06d/*","host":"h%d.example","upstream":{"nodes":{"127.0.0.1:%d":1}}})",
        i == 0 ? "" : ",", i, i, i % 100, 9000 + i % 50);
    doc += buf;
  }
  doc += "]}";
  auto t0 = std::chrono::steady_clock::now();
  config::LoadResult loaded = config::parse_text(doc, config::Format::json);
  ASSERT_TRUE(loaded.ok);
  auto t1 = std::chrono::steady_clock::now();
  SnapshotBuilder builder(context());
  std::string error;
  ASSERT_NE(builder.build(std::move(loaded.config), "h0", "test", 1, &error), nullptr);
  auto t2 = std::chrono::steady_clock::now();
  std::vector<double> ms;
  int rebuilt = 0;
  // Held as the applier holds what it serves: old snapshots are freed off the delta's path (on the applier
  // thread in the server), so not inside the timing here either.
  std::shared_ptr<const Snapshot> served;
  for (int k = 0; k < 1500; ++k) {  // past max_overlay_routes: whole rebuilds run in the background
    std::snprintf(buf, sizeof buf, "r%06d", (k * 7919) % kRoutes);
    std::string id = buf;
    std::string value = route_json(id, "/changed/" + std::to_string(k), inline_upstream(7000 + k));
    auto a = std::chrono::steady_clock::now();
    std::string hash = "h";
    hash += std::to_string(k + 1);
    auto r =
        builder.apply(Delta().put("routes", id, value).changes(), hash, "test", static_cast<uint64_t>(k + 2));
    auto b = std::chrono::steady_clock::now();
    ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
    ASSERT_NE(r.snapshot->match(request("x", "/changed/" + std::to_string(k), "GET")), nullptr);
    ASSERT_EQ(r.snapshot->route_count, static_cast<size_t>(kRoutes));
    rebuilt += r.rebuilt ? 1 : 0;
    ms.push_back(std::chrono::duration<double, std::milli>(b - a).count());
    served = r.snapshot;
  }
  EXPECT_GT(rebuilt, 0);  // a background rebuild was installed
  std::sort(ms.begin(), ms.end());
  std::printf(
      "  %d routes: load+validate %.0f ms, full build %.0f ms; %zu one-route deltas (%d installing a "
      "background "
      "rebuild): p50 %.2f ms, p99 %.2f ms, max %.2f ms\n",
      kRoutes, std::chrono::duration<double, std::milli>(t1 - t0).count(),
      std::chrono::duration<double, std::milli>(t2 - t1).count(), ms.size(), rebuilt, ms[ms.size() / 2],
      ms[ms.size() * 99 / 100], ms.back());
}

}  // namespace
}  // namespace portico::snapshot

namespace portico::snapshot {
namespace {

TEST_F(SnapshotBuilderTest, ConsumerDeltasLayerOverTheWholeIndexAndPluginConfigChangesReachTheirRoutes) {
  Docs docs;
  docs.put("consumers", "jack", R"({"username":"jack","plugins":{"key-auth":{"key":"k-jack"}}})");
  docs.put("consumers", "rose", R"({"username":"rose","plugins":{"key-auth":{"key":"k-rose"}}})");
  docs.put("plugin_configs", "pc", R"({"id":"pc","plugins":{"key-auth":{}}})");
  docs.put("routes", "r1", route_json("r1", "/a", inline_upstream(9001) + R"(,"plugin_config_id":"pc")"));
  docs.put("routes", "r2", route_json("r2", "/b", inline_upstream(9002)));
  SnapshotBuilder builder(context());
  std::string error;
  auto first = builder.build(load(docs), "h0", "test", 1, &error);
  ASSERT_NE(first, nullptr) << error;
  ASSERT_NE(first->consumers, nullptr);
  EXPECT_FALSE(first->consumers->is_layer());
  ASSERT_NE(first->consumers->find_key("k-jack"), nullptr);
  EXPECT_NE(first->base->routes[0].plugins, nullptr);  // r1 runs key-auth from its plugin config
  EXPECT_EQ(first->base->routes[1].plugins, nullptr);  // r2 has none: it pays nothing

  // One consumer changes its key: an overlay over the same whole index.
  auto r = builder.apply(
      Delta()
          .put("consumers", "jack", R"({"username":"jack","plugins":{"key-auth":{"key":"k-jack-2"}}})")
          .changes(),
      "h1", "test", 2);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  ASSERT_TRUE(r.snapshot->consumers->is_layer());
  EXPECT_EQ(r.snapshot->consumers->whole(), first->consumers.get());
  EXPECT_EQ(r.snapshot->consumers->find_key("k-jack"), nullptr);
  EXPECT_NE(r.snapshot->consumers->find_key("k-jack-2"), nullptr);
  EXPECT_NE(r.snapshot->consumers->find_key("k-rose"), nullptr);
  EXPECT_NE(first->consumers->find_key("k-jack"), nullptr);  // the older snapshot is untouched

  // The plugin config loses its plugin: r1 (relying on it) no longer runs any.
  r = builder.apply(Delta().put("plugin_configs", "pc", R"({"id":"pc","plugins":{}})").changes(), "h2",
                    "test", 3);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  const RouteRuntime* r1 = r.snapshot->match(request("x", "/a", "GET"));
  ASSERT_NE(r1, nullptr);
  EXPECT_EQ(r1->plugins, nullptr);

  // A consumer delta whose plugin configuration is invalid is refused with the path.
  r = builder.apply(
      Delta().put("consumers", "rose", R"({"username":"rose","plugins":{"key-auth":{}}})").changes(), "h3",
      "test", 4);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::invalid);
  EXPECT_EQ(r.errors[0].path, "consumers/rose.plugins.key-auth.key");
}

}  // namespace
}  // namespace portico::snapshot
