// EtcdClient and EtcdWatch against a real single-member etcd (see src/store/testing/etcd_harness.h).
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <thread>

#include "store/etcd_client.h"
#include "store/testing/etcd_harness.h"

namespace portico::store {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::EtcdCluster;
using testing::options_for;
using testing::since;

// One single-member cluster shared by the tests of this suite; each test uses its own key prefix.
class EtcdSingle : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    cluster_ = new EtcdCluster;
    if (!cluster_->start(1, *error_)) cluster_ready_ = false;
  }
  static void TearDownTestSuite() {
    delete cluster_;
    cluster_ = nullptr;
  }
  void SetUp() override {
    ASSERT_TRUE(cluster_ready_) << *error_;
    client_ = std::make_unique<EtcdClient>(options_for(cluster_->endpoints()));
  }

  static inline EtcdCluster* cluster_ = nullptr;
  static inline bool cluster_ready_ = true;
  static inline std::string* error_ = new std::string;
  std::unique_ptr<EtcdClient> client_;
};

TEST_F(EtcdSingle, PutRangeDeleteWithBinaryKeys) {
  std::string key("pr/\0\xff\x01", 6), value("v\0\xfe", 3);
  ResponseHeader put_header;
  ASSERT_TRUE(client_->put(key, value, &put_header).ok());
  EXPECT_NE(put_header.cluster_id, 0u);
  EXPECT_GT(put_header.revision, 0);

  RangeRequest r;
  r.key = key;
  RangeResult out;
  ASSERT_TRUE(client_->range(r, out).ok());
  ASSERT_EQ(out.kvs.size(), 1u);
  EXPECT_EQ(out.kvs[0].key, key);
  EXPECT_EQ(out.kvs[0].value, value);
  EXPECT_EQ(out.kvs[0].mod_revision, put_header.revision);
  EXPECT_EQ(out.kvs[0].create_revision, put_header.revision);
  EXPECT_EQ(out.kvs[0].version, 1);
  EXPECT_EQ(out.count, 1);
  EXPECT_EQ(out.header.cluster_id, put_header.cluster_id);

  ResponseHeader del_header;
  ASSERT_TRUE(client_->delete_key(key, &del_header).ok());
  EXPECT_EQ(del_header.revision, put_header.revision + 1);
  ASSERT_TRUE(client_->range(r, out).ok());
  EXPECT_TRUE(out.kvs.empty());
  EXPECT_EQ(out.count, 0);

  ResponseHeader now;
  ASSERT_TRUE(client_->current("pr/", now).ok());
  EXPECT_EQ(now.revision, del_header.revision);
}

TEST_F(EtcdSingle, TxnCompareSuccessAndFailure) {
  // Create-only: succeeds once, then the failure branch reads what is there.
  Txn create;
  create.compare.push_back({"tx/a", "", Compare::Target::create_revision, Compare::Result::equal, 0, ""});
  create.success.push_back({Op::Type::put, "tx/a", "", "one", 0, false});
  create.failure.push_back({Op::Type::range, "tx/a", "", "", 0, false});
  TxnResult first;
  ASSERT_TRUE(client_->txn(create, first).ok());
  EXPECT_TRUE(first.succeeded);
  EXPECT_FALSE(first.ambiguous_retry);
  ASSERT_EQ(first.responses.size(), 1u);
  TxnResult second;
  ASSERT_TRUE(client_->txn(create, second).ok());
  EXPECT_FALSE(second.succeeded);
  ASSERT_EQ(second.responses.size(), 1u);
  ASSERT_EQ(second.responses[0].kvs.size(), 1u);
  EXPECT_EQ(second.responses[0].kvs[0].value, "one");
  int64_t mod = second.responses[0].kvs[0].mod_revision;
  EXPECT_EQ(mod, first.header.revision);

  // Compare-and-swap on mod_revision, returning the previous value.
  Txn cas;
  cas.compare.push_back({"tx/a", "", Compare::Target::mod_revision, Compare::Result::equal, mod, ""});
  cas.success.push_back({Op::Type::put, "tx/a", "", "two", 0, true});
  TxnResult swapped;
  ASSERT_TRUE(client_->txn(cas, swapped).ok());
  EXPECT_TRUE(swapped.succeeded);
  ASSERT_EQ(swapped.responses[0].kvs.size(), 1u);
  EXPECT_EQ(swapped.responses[0].kvs[0].value, "one");
  TxnResult stale;
  ASSERT_TRUE(client_->txn(cas, stale).ok());
  EXPECT_FALSE(stale.succeeded);
  EXPECT_TRUE(stale.responses.empty());

  // Value and version compares; a compare over a range; delete with prev_kv.
  Txn by_value;
  by_value.compare.push_back({"tx/a", "", Compare::Target::value, Compare::Result::equal, 0, "two"});
  by_value.compare.push_back({"tx/a", "", Compare::Target::version, Compare::Result::greater, 1, ""});
  by_value.compare.push_back({"tx/", prefix_end("tx/"), Compare::Target::create_revision,
                              Compare::Result::less, swapped.header.revision + 1, ""});
  by_value.success.push_back({Op::Type::put, "tx/b", "", "bee", 0, false});
  by_value.success.push_back({Op::Type::delete_range, "tx/a", "", "", 0, true});
  by_value.success.push_back({Op::Type::range, "tx/", prefix_end("tx/"), "", 0, false});
  TxnResult done;
  ASSERT_TRUE(client_->txn(by_value, done).ok());
  ASSERT_TRUE(done.succeeded);
  ASSERT_EQ(done.responses.size(), 3u);
  EXPECT_EQ(done.responses[1].deleted, 1);
  ASSERT_EQ(done.responses[1].kvs.size(), 1u);
  EXPECT_EQ(done.responses[1].kvs[0].value, "two");
  ASSERT_EQ(done.responses[2].kvs.size(), 1u);
  EXPECT_EQ(done.responses[2].kvs[0].key, "tx/b");

  Txn not_equal;
  not_equal.compare.push_back({"tx/b", "", Compare::Target::value, Compare::Result::not_equal, 0, "bee"});
  TxnResult ne;
  ASSERT_TRUE(client_->txn(not_equal, ne).ok());
  EXPECT_FALSE(ne.succeeded);
}

TEST_F(EtcdSingle, PrefixRangeWithPagination) {
  for (int i = 0; i < 25; ++i) {
    char key[32];
    std::snprintf(key, sizeof key, "pg/%02d", i);
    ASSERT_TRUE(client_->put(key, std::to_string(i)).ok());
  }
  ASSERT_TRUE(client_->put("pg0", "outside").ok());  // prefix_end("pg/") is "pg0": excluded

  RangeRequest r;
  r.key = "pg/";
  r.range_end = prefix_end("pg/");
  r.limit = 10;
  std::vector<std::string> seen;
  int pages = 0;
  while (true) {
    RangeResult page;
    ASSERT_TRUE(client_->range(r, page).ok());
    ++pages;
    if (r.revision == 0) r.revision = page.header.revision;
    EXPECT_EQ(page.count, 25 - static_cast<int64_t>(seen.size()));
    for (const KeyValue& kv : page.kvs) seen.push_back(kv.key);
    if (!page.more) break;
    r.key = seen.back() + '\0';
  }
  EXPECT_EQ(pages, 3);
  ASSERT_EQ(seen.size(), 25u);
  EXPECT_TRUE(std::is_sorted(seen.begin(), seen.end()));
  EXPECT_EQ(seen.front(), "pg/00");
  EXPECT_EQ(seen.back(), "pg/24");

  // The newest key by mod_revision, keys only; and a count without keys.
  RangeRequest newest;
  newest.key = "pg/";
  newest.range_end = prefix_end("pg/");
  newest.limit = 1;
  newest.keys_only = true;
  newest.sort_order = RangeRequest::SortOrder::descend;
  newest.sort_target = RangeRequest::SortTarget::mod_revision;
  RangeResult top;
  ASSERT_TRUE(client_->range(newest, top).ok());
  ASSERT_EQ(top.kvs.size(), 1u);
  EXPECT_EQ(top.kvs[0].key, "pg/24");
  EXPECT_TRUE(top.kvs[0].value.empty());
  EXPECT_TRUE(top.more);
  EXPECT_EQ(top.count, 25);
  RangeRequest count = newest;
  count.count_only = true;
  count.serializable = true;
  RangeResult counted;
  ASSERT_TRUE(client_->range(count, counted).ok());
  EXPECT_TRUE(counted.kvs.empty());
  EXPECT_EQ(counted.count, 25);

  EXPECT_EQ(prefix_end("a\xff"), "b");
  EXPECT_EQ(prefix_end(std::string("\xff\xff")), std::string(1, '\0'));
}

TEST_F(EtcdSingle, InvalidRequestsFailFastWithoutRetrying) {
  Clock::time_point t = Clock::now();
  RangeRequest empty_key;
  RangeResult out;
  Status s = client_->range(empty_key, out);
  EXPECT_EQ(s.code, Code::invalid) << s.message;
  RangeRequest future;
  future.key = "x";
  future.revision = 1'000'000'000;
  s = client_->range(future, out);
  EXPECT_EQ(s.code, Code::invalid) << s.message;
  EXPECT_LT(since(t), 0.5);
}

TEST_F(EtcdSingle, CompactionMakesOldRevisionsCompacted) {
  ResponseHeader h1, h2;
  ASSERT_TRUE(client_->put("cp/k", "v1", &h1).ok());
  ASSERT_TRUE(client_->put("cp/k", "v2", &h2).ok());
  ASSERT_TRUE(client_->compact(h2.revision).ok());
  ASSERT_TRUE(client_->compact(h1.revision).ok()) << "compacting an already compacted revision is done";

  RangeRequest old;
  old.key = "cp/k";
  old.revision = h1.revision;
  RangeResult out;
  Status s = client_->range(old, out);
  EXPECT_EQ(s.code, Code::compacted) << s.message;
  old.revision = h2.revision;
  ASSERT_TRUE(client_->range(old, out).ok());
  ASSERT_EQ(out.kvs.size(), 1u);
  EXPECT_EQ(out.kvs[0].value, "v2");
}

// Collects what a watch delivers, on the watch's thread.
struct Collected {
  std::mutex mu;
  std::vector<WatchEvent> events;
  ResponseHeader created;
  bool was_created = false;
  int64_t newest = 0;

  EtcdWatch::Callbacks callbacks() {
    EtcdWatch::Callbacks cb;
    cb.on_created = [this](const ResponseHeader& h) {
      std::lock_guard lock(mu);
      created = h;
      was_created = true;
    };
    cb.on_events = [this](const ResponseHeader& h, std::vector<WatchEvent>& evs) {
      std::lock_guard lock(mu);
      for (WatchEvent& e : evs) {
        EXPECT_LE(e.kv.mod_revision, h.revision);
        events.push_back(std::move(e));
      }
      newest = std::max(newest, h.revision);
    };
    return cb;
  }
  size_t size() {
    std::lock_guard lock(mu);
    return events.size();
  }
};

TEST_F(EtcdSingle, WatchDeliversPutsAndDeletesInOrder) {
  ResponseHeader start;
  ASSERT_TRUE(client_->current("wt/", start).ok());
  Collected got;
  EtcdWatch watch(*client_, got.callbacks());
  Status result;
  std::thread runner([&] { result = watch.run("wt/", prefix_end("wt/"), start.revision + 1, 30); });

  ResponseHeader h;
  ASSERT_TRUE(client_->put("wt/a", "1").ok());
  ASSERT_TRUE(client_->put("other", "ignored").ok());
  ASSERT_TRUE(client_->put("wt/b", "2").ok());
  Txn txn;
  txn.success.push_back({Op::Type::put, "wt/c", "", "3", 0, false});
  txn.success.push_back({Op::Type::delete_range, "wt/a", "", "", 0, false});
  TxnResult tr;
  ASSERT_TRUE(client_->txn(txn, tr).ok());
  ASSERT_TRUE(client_->delete_key("wt/b", &h).ok());

  for (Clock::time_point t = Clock::now(); got.size() < 5 && since(t) < 5;) std::this_thread::sleep_for(10ms);
  Clock::time_point stop_at = Clock::now();
  watch.stop();
  runner.join();
  double stop_seconds = since(stop_at);
  EXPECT_LT(stop_seconds, 0.5) << "stop() must interrupt an idle stream promptly";
  EXPECT_TRUE(result.ok()) << result.message;

  std::lock_guard lock(got.mu);
  EXPECT_TRUE(got.was_created);
  EXPECT_EQ(got.created.cluster_id, h.cluster_id);
  ASSERT_EQ(got.events.size(), 5u);
  struct Want {
    WatchEvent::Type type;
    const char* key;
    const char* value;
  };
  const Want want[] = {{WatchEvent::Type::put, "wt/a", "1"},
                       {WatchEvent::Type::put, "wt/b", "2"},
                       {WatchEvent::Type::put, "wt/c", "3"},
                       {WatchEvent::Type::del, "wt/a", ""},
                       {WatchEvent::Type::del, "wt/b", ""}};
  for (size_t i = 0; i < 5; ++i) {
    EXPECT_EQ(got.events[i].type, want[i].type) << i;
    EXPECT_EQ(got.events[i].kv.key, want[i].key) << i;
    EXPECT_EQ(got.events[i].kv.value, want[i].value) << i;
    if (i > 0) {
      EXPECT_GE(got.events[i].kv.mod_revision, got.events[i - 1].kv.mod_revision);
    }
  }
  EXPECT_EQ(got.events[2].kv.mod_revision, tr.header.revision);
  EXPECT_EQ(got.events[3].kv.mod_revision, tr.header.revision);
  EXPECT_EQ(got.events[4].kv.mod_revision, h.revision);

  // A stopped watch stays stopped.
  Clock::time_point again = Clock::now();
  EXPECT_TRUE(watch.run("wt/", prefix_end("wt/"), 1, 30).ok());
  EXPECT_LT(since(again), 0.1);
}

TEST_F(EtcdSingle, WatchFromCompactedRevisionIsCompacted) {
  ResponseHeader h1, h2;
  ASSERT_TRUE(client_->put("wc/k", "1", &h1).ok());
  ASSERT_TRUE(client_->put("wc/k", "2", &h2).ok());
  ASSERT_TRUE(client_->compact(h2.revision).ok());
  Collected got;
  EtcdWatch watch(*client_, got.callbacks());
  Clock::time_point t = Clock::now();
  Status s = watch.run("wc/", prefix_end("wc/"), h1.revision, 30);
  EXPECT_EQ(s.code, Code::compacted) << s.message;
  EXPECT_GE(s.compact_revision, h2.revision);
  EXPECT_LT(since(t), 1.0);
}

TEST_F(EtcdSingle, Leases) {
  int64_t lease = 0;
  ASSERT_TRUE(client_->lease_grant(30, lease).ok());
  EXPECT_NE(lease, 0);
  Txn txn;
  txn.success.push_back({Op::Type::put, "ls/held", "", "x", lease, false});
  TxnResult tr;
  ASSERT_TRUE(client_->txn(txn, tr).ok());
  int64_t ttl = 0;
  ASSERT_TRUE(client_->lease_keepalive(lease, ttl).ok());
  EXPECT_GT(ttl, 0);
  RangeRequest r;
  r.key = "ls/held";
  RangeResult out;
  ASSERT_TRUE(client_->range(r, out).ok());
  ASSERT_EQ(out.kvs.size(), 1u);
  EXPECT_EQ(out.kvs[0].lease, lease);

  ASSERT_TRUE(client_->lease_revoke(lease).ok());
  ASSERT_TRUE(client_->lease_keepalive(lease, ttl).ok());
  EXPECT_LE(ttl, 0);
  ASSERT_TRUE(client_->range(r, out).ok());
  EXPECT_TRUE(out.kvs.empty()) << "revoking the lease deletes its keys";
  EXPECT_TRUE(client_->lease_revoke(lease).ok()) << "a lease already gone counts as revoked";
}

TEST_F(EtcdSingle, MemberStatus) {
  MemberStatus st;
  ASSERT_TRUE(client_->member_status(cluster_->endpoint(0), st).ok());
  EXPECT_FALSE(st.version.empty());
  EXPECT_EQ(st.leader, st.header.member_id);
  EXPECT_GT(st.raft_term, 0);
  EXPECT_EQ(cluster_->leader(), 0);
}

// A member whose machine is gone (connect hangs) costs one connect timeout, then is tried last for the
// cool-down; a member whose process died (refused) costs nothing noticeable.
TEST_F(EtcdSingle, DeadFirstEndpointCostsOneConnectTimeoutPerCooldown) {
  testing::Blackhole hole;
  EtcdOptions o = options_for({hole.url(), cluster_->endpoint(0)});
  o.connect_timeout = 0.3;
  o.endpoint_cooldown = 1.0;
  EtcdClient client(o);
  ResponseHeader h;
  Clock::time_point t = Clock::now();
  ASSERT_TRUE(client.current("dead", h).ok());
  double first = since(t);
  EXPECT_GE(first, 0.25);
  EXPECT_LT(first, 0.3 + 0.25);
  EXPECT_EQ(client.current_endpoint(), cluster_->endpoint(0));
  double slowest = 0;
  for (int i = 0; i < 20; ++i) {
    t = Clock::now();
    ASSERT_TRUE(client.current("dead", h).ok());
    slowest = std::max(slowest, since(t));
  }
  EXPECT_LT(slowest, 0.2) << "well under one connect timeout: the blackhole is not tried again";
  std::this_thread::sleep_for(1100ms);  // the cool-down is over; the live member still answers first
  t = Clock::now();
  ASSERT_TRUE(client.current("dead", h).ok());
  EXPECT_LT(since(t), 0.1);
  std::printf("[ measure  ] blackholed first endpoint: first call %.3fs, next 20 calls at most %.3fs each\n",
              first, slowest);

  EtcdClient refused(
      options_for({"http://127.0.0.1:" + std::to_string(testing::unused_port()), cluster_->endpoint(0)}));
  t = Clock::now();
  ASSERT_TRUE(refused.current("dead", h).ok());
  EXPECT_LT(since(t), 0.1);
}

// A write that never left (connect timeout) is plainly unavailable; one that reached a member that never
// answered may have committed.
TEST_F(EtcdSingle, WriteAmbiguityIsReported) {
  testing::Blackhole hole;
  EtcdOptions o = options_for({hole.url()});
  o.retry_deadline = 0.8;
  EtcdClient unreachable(o);
  Status s = unreachable.put("am/k", "v");
  EXPECT_EQ(s.code, Code::unavailable);
  EXPECT_FALSE(s.maybe_applied) << s.message;

  std::string url = cluster_->endpoint(0);
  testing::TcpProxy proxy(static_cast<uint16_t>(std::stoi(url.substr(url.rfind(':') + 1))));
  proxy.freeze();
  o = options_for({proxy.url()});
  o.request_timeout = 0.4;
  o.retry_deadline = 1.0;
  EtcdClient hung(o);
  Clock::time_point t = Clock::now();
  s = hung.put("am/k", "v");
  EXPECT_LT(since(t), o.retry_deadline + 0.5);
  EXPECT_EQ(s.code, Code::unavailable);
  EXPECT_TRUE(s.maybe_applied) << s.message;
  RangeRequest r;
  r.key = "am/k";
  RangeResult out;
  s = hung.range(r, out);
  EXPECT_EQ(s.code, Code::unavailable);
  EXPECT_FALSE(s.maybe_applied) << "reads are never ambiguous";
}

}  // namespace
}  // namespace portico::store
