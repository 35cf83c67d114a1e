// The control plane's in-memory copy (ResourceStore) and admin key files, without etcd: the copy is fed the
// same key-values the mirror would deliver.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "controlplane/control_plane.h"
#include "controlplane/resource_store.h"
#include "gtest/gtest.h"
#include "tls_test_certs.h"

namespace portico::controlplane {
namespace {

store::KeyValue kv(std::string key, std::string value, int64_t rev) {
  store::KeyValue out;
  out.key = std::move(key);
  out.value = std::move(value);
  out.create_revision = rev;
  out.mod_revision = rev;
  return out;
}

store::ResponseHeader header(int64_t rev) {
  store::ResponseHeader h;
  h.revision = rev;
  h.cluster_id = 7;
  return h;
}

const char kUpstream[] = R"({"id":"u1","type":"roundrobin","nodes":{"127.0.0.1:8080":1}})";
const char kRoute[] = R"({"id":"r1","uri":"/a","upstream_id":"u1"})";

TEST(ResourceStore, ResetKeepsValidValuesAndListsRejectedOnes) {
  ResourceStore copy("/apisix");
  std::vector<store::KeyValue> all = {
      kv("/apisix/upstreams/u1", kUpstream, 2),
      kv("/apisix/routes/r1", kRoute, 3),
      kv("/apisix/routes/bad", R"({"uri": 5})", 4),
      kv("/apisix/routes/notjson", "{", 5),
      kv("/apisix/routes/other", R"({"id":"x","uri":"/b","upstream_id":"u1"})", 6),
  };
  copy.reset(header(6), std::move(all));
  EXPECT_TRUE(copy.loaded());
  EXPECT_EQ(copy.revision(), 6);
  ASSERT_TRUE(copy.get(Kind::routes, "r1"));
  EXPECT_EQ(copy.get(Kind::routes, "r1")->upstream_id, "u1");
  EXPECT_EQ(copy.get(Kind::routes, "r1")->mod_revision, 3);
  EXPECT_FALSE(copy.get(Kind::routes, "bad"));
  auto rejected = copy.rejected();
  ASSERT_EQ(rejected.size(), 3u);
  EXPECT_EQ(rejected[0].key, "/apisix/routes/bad");
  EXPECT_NE(rejected[0].reason.find("uri"), std::string::npos) << rejected[0].reason;
  EXPECT_NE(rejected[1].reason.find("not valid JSON"), std::string::npos);
  EXPECT_NE(rejected[2].reason.find("differs from the key"), std::string::npos) << rejected[2].reason;
}

// A value written into etcd by hand goes through the Admin API's strict reader: nesting 200k levels deep
// (which crashed the control plane when the tree was copied or freed) or repeating a key, it is skipped and
// listed like any invalid value, and the rest of the config is kept.
TEST(ResourceStore, DeepOrDuplicateKeyValuesAreRejectedNotCrashed) {
  ResourceStore copy("/apisix");
  const size_t depth = 200000;
  std::string deep = R"({"uri":"/deep","upstream_id":"u1","labels":)" + std::string(depth, '[') + "1" +
                     std::string(depth, ']') + "}";
  copy.reset(header(5), {kv("/apisix/upstreams/u1", kUpstream, 2), kv("/apisix/routes/deep", deep, 3),
                         kv("/apisix/routes/dup", R"({"uri":"/a","uri":"/b","upstream_id":"u1"})", 4),
                         kv("/apisix/routes/r1", kRoute, 5)});
  EXPECT_TRUE(copy.get(Kind::routes, "r1"));
  EXPECT_FALSE(copy.get(Kind::routes, "deep"));
  EXPECT_FALSE(copy.get(Kind::routes, "dup"));
  auto rejected = copy.rejected();
  ASSERT_EQ(rejected.size(), 2u);
  EXPECT_EQ(rejected[0].key, "/apisix/routes/deep");
  EXPECT_NE(rejected[0].reason.find("nested deeper than 64 levels"), std::string::npos) << rejected[0].reason;
  EXPECT_NE(rejected[1].reason.find("uri: duplicate key \"uri\""), std::string::npos) << rejected[1].reason;

  // The same through the watch.
  std::vector<store::WatchEvent> events(1);
  events[0].kv = kv("/apisix/routes/r1", deep, 6);
  copy.apply(header(6), events);
  EXPECT_FALSE(copy.get(Kind::routes, "r1"));
  EXPECT_EQ(copy.rejected().size(), 3u);
}

TEST(ResourceStore, EventsApplyInOrderAndFixRejectedKeys) {
  ResourceStore copy("/apisix");
  copy.reset(header(3), {kv("/apisix/upstreams/u1", kUpstream, 2), kv("/apisix/routes/bad", "{", 3)});
  int64_t notified = 0;
  copy.on_change([&](int64_t rev) { notified = rev; });
  std::vector<store::WatchEvent> events(3);
  events[0].kv = kv("/apisix/routes/r1", kRoute, 4);
  events[1].kv = kv("/apisix/routes/bad", R"({"uri":"/fixed","upstream_id":"u1"})", 5);
  events[2].type = store::WatchEvent::Type::del;
  events[2].kv.key = "/apisix/routes/r1";
  events[2].kv.mod_revision = 6;
  copy.apply(header(6), events);
  EXPECT_EQ(notified, 6);
  EXPECT_EQ(copy.revision(), 6);
  EXPECT_FALSE(copy.get(Kind::routes, "r1"));
  EXPECT_TRUE(copy.get(Kind::routes, "bad"));
  EXPECT_TRUE(copy.rejected().empty());
  EXPECT_EQ(copy.count(Kind::routes), 1u);
}

// Credentials (APISIX 3.x) are keys below their consumer's; the copy knows them by their full id, the one
// data planes get, and publishes one only with its consumer.
TEST(ResourceStore, CredentialsAreKeysBelowTheirConsumerAndArePublishedWithIt) {
  ResourceStore copy("/apisix");
  copy.reset(header(5),
             {kv("/apisix/consumers/jack", R"({"username":"jack"})", 2),
              kv("/apisix/consumers/jack/credentials/c1", R"({"id":"c1","desc":"APISIX's shape"})", 3),
              kv("/apisix/consumers/rose/credentials/c1", R"({"desc":"consumer missing"})", 4),
              kv("/apisix/consumers/jack/credentials/c2", R"({"id":"other"})", 5),
              kv("/apisix/consumers/jack/keys/c3", R"({})", 5)});
  EXPECT_EQ(copy.key_of(Kind::credentials, "jack/credentials/c1"), "/apisix/consumers/jack/credentials/c1");
  EXPECT_EQ(copy.count(Kind::consumers), 1u);
  EXPECT_EQ(copy.count(Kind::credentials), 2u);
  ASSERT_TRUE(copy.get(Kind::credentials, "jack/credentials/c1"));
  EXPECT_EQ(copy.get(Kind::credentials, "jack/credentials/c1")->value,
            R"({"desc":"APISIX's shape","id":"jack/credentials/c1"})");
  auto rejected = copy.rejected();
  ASSERT_EQ(rejected.size(), 2u);
  EXPECT_EQ(rejected[0].key, "/apisix/consumers/jack/credentials/c2");  // names another id
  EXPECT_EQ(rejected[1].key, "/apisix/consumers/jack/keys/c3");         // not a credential key
  size_t total = 0;
  EXPECT_EQ(copy.page(Kind::credentials, 0, 10, total, "jack/credentials/").size(), 1u);
  EXPECT_EQ(total, 1u);
  sync::ResourceSet set = copy.publishable();
  EXPECT_NE(set.find("credentials", "jack/credentials/c1"), nullptr);
  EXPECT_EQ(set.find("credentials", "rose/credentials/c1"), nullptr);  // its consumer does not exist
  EXPECT_TRUE(load_set(set).ok);
}

TEST(ResourceStore, ReferrersNameRoutesAndServices) {
  ResourceStore copy("/apisix");
  copy.reset(header(4), {kv("/apisix/upstreams/u1", kUpstream, 2), kv("/apisix/routes/r1", kRoute, 3),
                         kv("/apisix/services/s1", R"({"upstream_id":"u1"})", 4)});
  auto users = copy.referrers(Kind::upstreams, "u1");
  ASSERT_EQ(users.size(), 2u);
  EXPECT_EQ(users[0], std::make_pair(Kind::routes, std::string("r1")));
  EXPECT_EQ(users[1], std::make_pair(Kind::services, std::string("s1")));
  EXPECT_TRUE(copy.referrers(Kind::upstreams, "u2").empty());
  EXPECT_TRUE(copy.referrers(Kind::routes, "r1").empty());
}

// An ssl named by tls.client_cert_id: who names it (for the delete check), and what is published when it is
// missing or not of type client (left out, so the data planes' loader does not refuse the whole document).
std::string ssl_value(const char* type) {
  static const test_certs::Pem pem = test_certs::make_cert("gateway-client", false);
  nlohmann::json v = {{"cert", pem.cert}, {"key", pem.key}, {"type", type}};
  if (std::string(type) == "server") v["sni"] = "a.example.com";
  return v.dump();
}
const char kTlsUpstream[] =
    R"({"nodes":{"127.0.0.1:8443":1},"scheme":"https","tls":{"client_cert_id":"c1"}})";

TEST(ResourceStore, ClientCertIdReferrersAndPublishing) {
  ResourceStore copy("/apisix");
  const std::string inline_up = std::string(R"({"uri":"/r2","upstream":)") + kTlsUpstream + "}";
  copy.reset(header(6), {kv("/apisix/ssls/c1", ssl_value("client"), 2),
                         kv("/apisix/upstreams/u1", kTlsUpstream, 3), kv("/apisix/routes/r1", kRoute, 4),
                         kv("/apisix/services/s1", std::string(R"({"upstream":)") + kTlsUpstream + "}", 5),
                         kv("/apisix/routes/r2", inline_up, 6)});
  EXPECT_EQ(copy.get(Kind::upstreams, "u1")->client_cert_id, "c1");
  auto users = copy.referrers(Kind::ssls, "c1");
  ASSERT_EQ(users.size(), 3u);
  EXPECT_EQ(users[0], std::make_pair(Kind::upstreams, std::string("u1")));
  EXPECT_EQ(users[1], std::make_pair(Kind::services, std::string("s1")));
  EXPECT_EQ(users[2], std::make_pair(Kind::routes, std::string("r2")));
  EXPECT_TRUE(copy.referrers(Kind::ssls, "c2").empty());
  config::LoadResult all = copy.assemble();
  ASSERT_TRUE(all.ok) << all.describe();
  EXPECT_EQ(all.config.routes.size(), 2u);

  // Made a server ssl (by hand in etcd), then gone: everything naming it is left out, the rest published.
  for (const char* change : {"server", "deleted"}) {
    SCOPED_TRACE(change);
    std::vector<store::WatchEvent> events(1);
    events[0].kv = kv("/apisix/ssls/c1", std::string(change) == "server" ? ssl_value("server") : "", 7);
    if (std::string(change) == "deleted") events[0].type = store::WatchEvent::Type::del;
    copy.apply(header(7), events);
    config::LoadResult r = copy.assemble();
    ASSERT_TRUE(r.ok) << r.describe();
    EXPECT_TRUE(r.config.upstreams.empty());
    EXPECT_TRUE(r.config.services.empty());
    EXPECT_TRUE(r.config.routes.empty());  // r1 through u1, r2 inline
  }
}

TEST(ResourceStore, AssembleBuildsTheDataPlaneConfigAndHashesContent) {
  ResourceStore copy("/apisix");
  copy.reset(header(3), {kv("/apisix/upstreams/u1", kUpstream, 2), kv("/apisix/routes/r1", kRoute, 3)});
  config::LoadResult a = copy.assemble();
  ASSERT_TRUE(a.ok) << a.describe();
  ASSERT_EQ(a.config.routes.size(), 1u);
  EXPECT_EQ(a.config.routes[0].id, "r1");
  EXPECT_EQ(a.config.upstreams.size(), 1u);
  EXPECT_EQ(a.content_hash.size(), 64u);
  EXPECT_EQ(copy.assemble().content_hash, a.content_hash);

  std::vector<store::WatchEvent> events(1);
  events[0].kv = kv("/apisix/routes/r1", R"({"id":"r1","uri":"/b","upstream_id":"u1"})", 4);
  copy.apply(header(4), events);
  EXPECT_NE(copy.assemble().content_hash, a.content_hash);
}

TEST(ResourceStore, IntegerReferencesAreReferences) {
  ResourceStore copy("/apisix");
  copy.reset(header(3), {kv("/apisix/upstreams/9", R"({"nodes":{"127.0.0.1:8080":1}})", 2),
                         kv("/apisix/routes/r1", R"({"uri":"/a","upstream_id":9})", 3)});
  EXPECT_EQ(copy.get(Kind::routes, "r1")->upstream_id, "9");
  ASSERT_EQ(copy.referrers(Kind::upstreams, "9").size(), 1u);
}

TEST(ResourceStore, AssembleLeavesOutRoutesWhoseServiceHasNoUpstream) {
  ResourceStore copy("/apisix");
  copy.reset(header(4),
             {kv("/apisix/upstreams/u1", kUpstream, 2), kv("/apisix/services/s1", R"({"name":"x"})", 3),
              kv("/apisix/routes/r1", R"({"uri":"/a","service_id":"s1"})", 4),
              kv("/apisix/routes/r2", R"({"uri":"/b","upstream_id":"u1"})", 4)});
  config::LoadResult a = copy.assemble();
  ASSERT_TRUE(a.ok) << a.describe();
  ASSERT_EQ(a.config.routes.size(), 1u);
  EXPECT_EQ(a.config.routes[0].id, "r2");
}

TEST(ResourceStore, AssembleLeavesOutResourcesWithDanglingReferences) {
  ResourceStore copy("/apisix");
  // Written straight into etcd (the Admin API refuses it): the route names an upstream that is not there.
  copy.reset(header(3), {kv("/apisix/upstreams/u1", kUpstream, 2), kv("/apisix/routes/r1", kRoute, 2),
                         kv("/apisix/routes/r2", R"({"uri":"/c","upstream_id":"missing"})", 3)});
  config::LoadResult a = copy.assemble();
  ASSERT_TRUE(a.ok) << a.describe();
  ASSERT_EQ(a.config.routes.size(), 1u);
  EXPECT_EQ(a.config.routes[0].id, "r1");
}

class KeyFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/portico-keyXXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::string dir_;
};

TEST_F(KeyFile, GeneratedKeyIsPrivateAndStable) {
  const std::string path = dir_ + "/state/admin.key";
  bool generated = false;
  std::string key = load_or_generate_key(path, true, generated);
  EXPECT_TRUE(generated);
  EXPECT_EQ(key.size(), 64u);
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir_ + "/state").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(load_or_generate_key(path, true, generated), key);
  EXPECT_FALSE(generated);
}

TEST_F(KeyFile, ShortOrMissingKeysAreRefused) {
  const std::string path = dir_ + "/short.key";
  std::ofstream(path) << "abc\n";
  bool generated = false;
  EXPECT_THROW(load_or_generate_key(path, true, generated), std::runtime_error);
  EXPECT_THROW(load_or_generate_key(dir_ + "/missing.key", false, generated), std::runtime_error);
  std::ofstream(dir_ + "/spaced.key") << "0123456789 abcdef0123\n";
  EXPECT_THROW(load_or_generate_key(dir_ + "/spaced.key", false, generated), std::runtime_error);
}

}  // namespace
}  // namespace portico::controlplane

namespace portico::controlplane {
namespace {

// Not a timing assertion: prints what building the publishable set costs, the part of a publish that grows
// with the configuration.
TEST(ResourceStore, PublishableAtScalePrintsItsCost) {
  for (int routes : {10000, 100000}) {
    ResourceStore copy("/apisix");
    std::vector<store::KeyValue> all;
    char buf[256];
    for (int i = 0; i < routes; ++i) {
      std::snprintf(buf, sizeof buf,
                    R"({"id":"r%06d","uri":"/api/v1/r%06d/*","upstream":{"nodes":{"127.0.0.1:9000":1}}})", i,
                    i);
      std::snprintf(buf + 200, 56, "/apisix/routes/r%06d", i);
      all.push_back(kv(buf + 200, buf, 2 + i));
    }
    copy.reset(header(routes + 2), std::move(all));
    auto t0 = std::chrono::steady_clock::now();
    sync::ResourceSet set = copy.publishable();
    auto t1 = std::chrono::steady_clock::now();
    std::string hash = set.content_hash();
    auto t2 = std::chrono::steady_clock::now();
    auto changes = sync::ResourceSet::diff(set, set);
    auto t3 = std::chrono::steady_clock::now();
    auto ms = [](auto a, auto b) { return std::chrono::duration<double, std::milli>(b - a).count(); };
    std::printf("  %d routes: publishable %.1f ms, content_hash %.1f ms, diff %.1f ms\n", routes, ms(t0, t1),
                ms(t1, t2), ms(t2, t3));
    EXPECT_TRUE(changes.empty());
  }
}

}  // namespace
}  // namespace portico::controlplane
