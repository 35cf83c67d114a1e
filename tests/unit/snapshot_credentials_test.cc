// Credentials (APISIX 3.x) through snapshot deltas: each authenticates as its consumer with its own id, a
// delta changing one rebuilds only that consumer's entries, and a credential never outlives its consumer.
#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "config/loader.h"
#include "plugins/consumers.h"
#include "snapshot/snapshot_builder.h"
#include "upstream/health.h"

namespace portico::snapshot {
namespace {

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
};

TEST(SnapshotBuilderCredentials, CredentialsAuthenticateAsTheirConsumerAndGoWithIt) {
  config::LoadResult loaded = config::parse_text(
      R"({"consumers": [{"username": "jack", "plugins": {"key-auth": {"key": "k-own"}}}],
          "credentials": [{"id": "jack/credentials/c1", "plugins": {"key-auth": {"key": "k-c1"}}}],
          "routes": [{"id": "r1", "uri": "/a", "upstream": {"nodes": {"127.0.0.1:9001": 1}}}]})",
      config::Format::json);
  ASSERT_TRUE(loaded.ok) << loaded.describe();
  upstream::HealthRegistry health;
  BuildContext context;
  context.health = &health;
  SnapshotBuilder builder(context);
  std::string error;
  auto first = builder.build(std::move(loaded.config), "h0", "test", 1, &error);
  ASSERT_NE(first, nullptr) << error;
  const auto* own = first->consumers->find_key("k-own");
  const auto* c1 = first->consumers->find_key("k-c1");
  ASSERT_NE(own, nullptr);
  ASSERT_NE(c1, nullptr);
  EXPECT_EQ(own->credential_id, "");
  EXPECT_EQ(c1->credential_id, "c1");
  EXPECT_EQ(c1->consumer, own->consumer);  // the same consumer: its chain, its username

  // A credential added by a delta: an overlay with the consumer and all its credentials.
  auto r = builder.apply(Delta()
                             .put("credentials", "jack/credentials/c2",
                                  R"({"id":"jack/credentials/c2","plugins":{"key-auth":{"key":"k-c2"}}})")
                             .changes(),
                         "h1", "test", 2);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  ASSERT_NE(r.snapshot->consumers->find_key("k-c2"), nullptr);
  EXPECT_EQ(r.snapshot->consumers->find_key("k-c2")->credential_id, "c2");
  EXPECT_EQ(r.snapshot->consumers->find_key("k-c2")->consumer->username, "jack");
  EXPECT_NE(r.snapshot->consumers->find_key("k-c1"), nullptr);
  EXPECT_NE(r.snapshot->consumers->find_key("k-own"), nullptr);
  EXPECT_EQ(first->consumers->find_key("k-c2"), nullptr);  // the older snapshot is untouched

  // A credential of a consumer that does not exist, and a consumer removed without its credentials: refused.
  r = builder.apply(Delta()
                        .put("credentials", "rose/credentials/c1",
                             R"({"id":"rose/credentials/c1","plugins":{"key-auth":{"key":"k-rose"}}})")
                        .changes(),
                    "h2", "test", 3);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::invalid);
  EXPECT_EQ(r.errors[0].path, "credentials/rose/credentials/c1.id");
  r = builder.apply(Delta().erase("consumers", "jack").erase("credentials", "jack/credentials/c1").changes(),
                    "h2", "test", 3);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::invalid);
  EXPECT_EQ(r.errors[0].path, "credentials/jack/credentials/c2.id");

  // A credential removed: its key no longer authenticates; the consumer with the rest of them: nothing does.
  r = builder.apply(Delta().erase("credentials", "jack/credentials/c1").changes(), "h3", "test", 4);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_EQ(r.snapshot->consumers->find_key("k-c1"), nullptr);
  EXPECT_NE(r.snapshot->consumers->find_key("k-c2"), nullptr);
  r = builder.apply(Delta().erase("consumers", "jack").erase("credentials", "jack/credentials/c2").changes(),
                    "h4", "test", 5);
  ASSERT_EQ(r.outcome, SnapshotBuilder::Outcome::built);
  EXPECT_EQ(r.snapshot->consumers->find_key("k-c2"), nullptr);
  EXPECT_EQ(r.snapshot->consumers->find_key("k-own"), nullptr);
  EXPECT_EQ(r.snapshot->consumers->find_consumer("jack"), nullptr);
}

}  // namespace
}  // namespace portico::snapshot
