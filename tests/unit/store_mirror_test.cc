// Mirror against real etcd processes (see src/store/testing/etcd_harness.h).
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

#include "store/mirror.h"
#include "store/testing/etcd_harness.h"

namespace portico::store {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;
using testing::EtcdCluster;
using testing::since;
using testing::TcpProxy;

EtcdOptions quick_options(std::vector<std::string> endpoints) {
  EtcdOptions o;
  o.endpoints = std::move(endpoints);
  o.request_timeout = 1.0;
  o.retry_deadline = 2.0;
  o.endpoint_cooldown = 1.0;
  return o;
}

MirrorOptions quick_mirror() {
  MirrorOptions m;
  m.verify_interval = 0.3;
  m.retry_backoff = 0.1;
  m.page_size = 5;
  return m;
}

// What a control plane would build from the callbacks: the copy, and a record of what happened.
class Model {
 public:
  MirrorCallbacks callbacks() {
    MirrorCallbacks cb;
    cb.on_reset = [this](const ResponseHeader& h, std::vector<KeyValue> all) {
      std::lock_guard lock(mu_);
      data_.clear();
      for (size_t i = 0; i < all.size(); ++i) {
        if (i > 0) {
          EXPECT_LT(all[i - 1].key, all[i].key) << "on_reset delivers keys in order";
        }
        data_[all[i].key] = all[i].value;
      }
      EXPECT_GE(h.revision, revision_);
      revision_ = h.revision;
      ++resets_;
      changed_.notify_all();
    };
    cb.on_events = [this](const ResponseHeader& h, std::vector<WatchEvent>& events) {
      std::lock_guard lock(mu_);
      for (const WatchEvent& e : events) {
        EXPECT_GT(e.kv.mod_revision, revision_) << "an event applied twice or out of order";
        EXPECT_LE(e.kv.mod_revision, h.revision);
        if (e.type == WatchEvent::Type::put) {
          data_[e.kv.key] = e.kv.value;
        } else {
          data_.erase(e.kv.key);
        }
      }
      EXPECT_GT(h.revision, revision_);
      revision_ = h.revision;
      changed_.notify_all();
    };
    cb.on_connection = [this](bool connected, const std::string& why) {
      std::lock_guard lock(mu_);
      EXPECT_TRUE(connections_.empty() || connections_.back() != connected) << "reported twice: " << why;
      EXPECT_EQ(connected, why.empty());
      connections_.push_back(connected);
      changed_.notify_all();
    };
    return cb;
  }

  // Waits until the connection state has been reported `count` times in all.
  bool wait_connection_reports(size_t count, double seconds) {
    std::unique_lock lock(mu_);
    return changed_.wait_for(lock, std::chrono::duration<double>(seconds),
                             [&] { return connections_.size() >= count; });
  }
  std::vector<bool> connections() {
    std::lock_guard lock(mu_);
    return connections_;
  }
  int resets() {
    std::lock_guard lock(mu_);
    return resets_;
  }
  std::map<std::string, std::string> data() {
    std::lock_guard lock(mu_);
    return data_;
  }

 private:
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<std::string, std::string> data_;
  int64_t revision_ = 0;
  int resets_ = 0;
  std::vector<bool> connections_;
};

std::map<std::string, std::string> read_prefix(EtcdClient& client, const std::string& prefix) {
  RangeRequest r;
  r.key = prefix;
  r.range_end = prefix_end(prefix);
  RangeResult out;
  Status s = client.range(r, out);
  EXPECT_TRUE(s.ok()) << s.message;
  std::map<std::string, std::string> m;
  for (const KeyValue& kv : out.kvs) m[kv.key] = kv.value;
  return m;
}

int64_t put(EtcdClient& client, const std::string& key, const std::string& value) {
  ResponseHeader h;
  Status s = client.put(key, value, &h);
  EXPECT_TRUE(s.ok()) << s.message;
  return h.revision;
}

TEST(Mirror, ResetThenEventsAndWaitFor) {
  EtcdCluster cluster;
  std::string error;
  ASSERT_TRUE(cluster.start(1, error)) << error;
  EtcdClient client(quick_options(cluster.endpoints()));
  for (int i = 0; i < 23; ++i) {
    put(client, std::string("mr/").append(std::to_string(100 + i)),
        std::string("v").append(std::to_string(i)));
  }
  put(client, "ms/outside", "x");

  Model model;
  Mirror mirror(client, "mr/", model.callbacks(), quick_mirror());
  EXPECT_EQ(mirror.revision(), 0);
  mirror.start();
  ASSERT_TRUE(model.wait_connection_reports(1, 5));
  EXPECT_EQ(model.connections(), std::vector<bool>{true});
  EXPECT_EQ(model.resets(), 1);
  EXPECT_EQ(model.data(), read_prefix(client, "mr/")) << "a full read over 5 pages";
  EXPECT_NE(mirror.cluster_id(), 0u);

  put(client, "mr/new", "n");
  ASSERT_TRUE(client.delete_key("mr/100").ok());
  Txn txn;
  txn.success.push_back({Op::Type::put, "mr/101", "", "changed", 0, false});
  txn.success.push_back({Op::Type::delete_range, "mr/110", prefix_end("mr/110"), "", 0, false});
  TxnResult tr;
  ASSERT_TRUE(client.txn(txn, tr).ok());
  EXPECT_TRUE(mirror.wait_for(tr.header.revision, 5));
  EXPECT_EQ(mirror.revision(), tr.header.revision);
  EXPECT_EQ(model.data(), read_prefix(client, "mr/"));

  Clock::time_point t = Clock::now();
  EXPECT_FALSE(mirror.wait_for(tr.header.revision + 1000, 0.2));
  EXPECT_GE(since(t), 0.19);
  std::this_thread::sleep_for(1s);  // a few verifications of a copy that is right change nothing
  EXPECT_EQ(model.resets(), 1);
  EXPECT_EQ(model.connections(), std::vector<bool>{true});
  mirror.stop();
  mirror.stop();
}

TEST(Mirror, CatchesUpAfterWatchedMemberIsKilled) {
  EtcdCluster cluster;
  std::string error;
  ASSERT_TRUE(cluster.start(3, error)) << error;
  EtcdClient mirror_client(quick_options(cluster.endpoints()));  // m0 first: its watch is on m0
  EtcdOptions wo = quick_options({cluster.endpoint(1), cluster.endpoint(2)});
  wo.retry_deadline = 8;
  EtcdClient writer(wo);

  Model model;
  Mirror mirror(mirror_client, "mk/", model.callbacks(), quick_mirror());
  mirror.start();
  ASSERT_TRUE(model.wait_connection_reports(1, 5));
  int64_t rev = 0;
  for (int i = 0; i < 20; ++i) rev = put(writer, "mk/" + std::to_string(i), "a");
  ASSERT_TRUE(mirror.wait_for(rev, 5));

  cluster.kill(0);
  Clock::time_point killed = Clock::now();
  for (int i = 10; i < 40; ++i) rev = put(writer, "mk/" + std::to_string(i), "b");
  ASSERT_TRUE(mirror.wait_for(rev, 10));
  std::printf("[ measure  ] mirror caught up %.3fs after its member was killed (writes included)\n",
              since(killed));
  EXPECT_EQ(model.data(), read_prefix(writer, "mk/"));
  EXPECT_EQ(model.resets(), 1) << "a lost watch resumes by revision, no full read";
  std::printf("[ measure  ] connection reports during the kill: %zu\n", model.connections().size());
}

// The mirror's only path to etcd is cut while etcd moves on and compacts the revision it needs: it must
// report the loss, then come back with a full read instead of a gap.
TEST(Mirror, ReportsLossThenReReadsAfterCompaction) {
  EtcdCluster cluster;
  std::string error;
  ASSERT_TRUE(cluster.start(1, error)) << error;
  EtcdClient direct(quick_options(cluster.endpoints()));
  uint16_t port =
      static_cast<uint16_t>(std::stoi(cluster.endpoint(0).substr(cluster.endpoint(0).rfind(':') + 1)));
  TcpProxy proxy(port);
  EtcdClient via_proxy(quick_options({proxy.url()}));
  put(direct, "mc/keep", "1");
  put(direct, "mc/gone", "1");

  Model model;
  Mirror mirror(via_proxy, "mc/", model.callbacks(), quick_mirror());
  mirror.start();
  ASSERT_TRUE(model.wait_connection_reports(1, 5));
  ASSERT_TRUE(mirror.connected());

  Clock::time_point cut = Clock::now();
  proxy.cut();
  ASSERT_TRUE(model.wait_connection_reports(2, 5));
  double detect = since(cut);
  EXPECT_FALSE(mirror.connected());
  EXPECT_FALSE(mirror.last_error().empty());
  std::printf("[ measure  ] mirror reported the loss after %.3fs\n", detect);

  ASSERT_TRUE(direct.delete_key("mc/gone").ok());
  put(direct, "mc/new", "2");
  int64_t rev = put(direct, "mc/keep", "3");
  ASSERT_TRUE(direct.compact(rev).ok());
  EXPECT_FALSE(mirror.wait_for(rev, 0.3));

  proxy.restore();
  ASSERT_TRUE(mirror.wait_for(rev, 10));
  ASSERT_TRUE(model.wait_connection_reports(3, 5));
  EXPECT_EQ(model.connections(), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(model.resets(), 2) << "the compacted gap is filled by a full read";
  EXPECT_EQ(model.data(), read_prefix(direct, "mc/"));
}

// Writes outside the prefix (fleet records) move etcd's revision, not the copy's. Verification moves the
// horizon past them, and a re-watch starts from there: etcd compacted up to the horizon costs no full read.
TEST(Mirror, HorizonPassesOtherKeysSoCompactionBehindItNeedsNoFullRead) {
  EtcdCluster cluster;
  std::string error;
  ASSERT_TRUE(cluster.start(1, error)) << error;
  EtcdClient direct(quick_options(cluster.endpoints()));
  uint16_t port =
      static_cast<uint16_t>(std::stoi(cluster.endpoint(0).substr(cluster.endpoint(0).rfind(':') + 1)));
  TcpProxy proxy(port);
  EtcdClient via_proxy(quick_options({proxy.url()}));
  const int64_t mine = put(direct, "mh/a", "1");

  Model model;
  Mirror mirror(via_proxy, "mh/", model.callbacks(), quick_mirror());
  mirror.start();
  ASSERT_TRUE(model.wait_connection_reports(1, 5));
  int64_t other = 0;
  for (int i = 0; i < 20; ++i) other = put(direct, "other/" + std::to_string(i % 4), "x");
  Clock::time_point t = Clock::now();
  while (mirror.horizon() < other && since(t) < 5) std::this_thread::sleep_for(20ms);
  ASSERT_EQ(mirror.horizon(), other) << "verification moves the horizon past writes outside the prefix";
  EXPECT_EQ(mirror.revision(), mine) << "the copy's revision is its own";

  ASSERT_TRUE(direct.compact(mirror.horizon()).ok());
  proxy.cut();  // the watch is lost; the re-watch must not start from the compacted mine + 1
  ASSERT_TRUE(model.wait_connection_reports(2, 5));
  proxy.restore();
  const int64_t rev = put(direct, "mh/b", "2");
  ASSERT_TRUE(mirror.wait_for(rev, 10));
  EXPECT_EQ(model.resets(), 1) << "resumed from the horizon, no full read";
  EXPECT_EQ(model.data(), read_prefix(direct, "mh/"));
}

// etcd itself dies and comes back on the same data: a real "all members down".
TEST(Mirror, ReportsAllMembersDownAndBack) {
  EtcdCluster cluster;
  std::string error;
  ASSERT_TRUE(cluster.start(1, error)) << error;
  EtcdClient client(quick_options(cluster.endpoints()));
  put(client, "md/a", "1");
  Model model;
  Mirror mirror(client, "md/", model.callbacks(), quick_mirror());
  mirror.start();
  ASSERT_TRUE(model.wait_connection_reports(1, 5));

  Clock::time_point t = Clock::now();
  cluster.kill(0);
  ASSERT_TRUE(model.wait_connection_reports(2, 5));
  std::printf("[ measure  ] mirror reported all members down after %.3fs\n", since(t));
  EXPECT_FALSE(mirror.connected());

  ASSERT_TRUE(cluster.restart(0, error)) << error;
  t = Clock::now();
  int64_t rev = put(client, "md/b", "2");
  ASSERT_TRUE(mirror.wait_for(rev, 10));
  ASSERT_TRUE(model.wait_connection_reports(3, 5));
  std::printf("[ measure  ] mirror back %.3fs after etcd answered again\n", since(t));
  EXPECT_EQ(model.connections(), (std::vector<bool>{true, false, true}));
  EXPECT_EQ(model.resets(), 1) << "same cluster, nothing compacted: resume by revision";
  EXPECT_EQ(model.data(), read_prefix(client, "md/"));
}

// The watched member hangs (stream open, nothing delivered): only verification can notice.
TEST(Mirror, VerificationRepairsAStalledWatch) {
  EtcdCluster cluster;
  std::string error;
  ASSERT_TRUE(cluster.start(1, error)) << error;
  uint16_t port =
      static_cast<uint16_t>(std::stoi(cluster.endpoint(0).substr(cluster.endpoint(0).rfind(':') + 1)));
  TcpProxy proxy(port);
  EtcdClient direct(quick_options(cluster.endpoints()));
  EtcdClient client(quick_options({proxy.url(), cluster.endpoint(0)}));  // the proxy first
  put(direct, "mv/a", "1");
  Model model;
  Mirror mirror(client, "mv/", model.callbacks(), quick_mirror());
  mirror.start();
  ASSERT_TRUE(model.wait_connection_reports(1, 5));

  proxy.freeze();
  Clock::time_point t = Clock::now();
  int64_t rev = put(direct, "mv/b", "2");
  ASSERT_TRUE(mirror.wait_for(rev, 10));
  std::printf(
      "[ measure  ] stalled watch repaired after %.3fs (verify_interval %.1fs, request_timeout %.1fs)\n",
      since(t), quick_mirror().verify_interval, client.options().request_timeout);
  EXPECT_EQ(model.data(), read_prefix(direct, "mv/"));
  EXPECT_EQ(model.resets(), 1) << "a re-watch is enough";
  EXPECT_EQ(model.connections(), std::vector<bool>{true})
      << "the other endpoint kept the quorum check passing";
  proxy.restore();
}

// stop() must not wait out a client call that keeps retrying against members that are all down.
TEST(Mirror, StopIsPromptWhileEtcdIsDown) {
  EtcdOptions o;
  o.endpoints = {"http://127.0.0.1:" + std::to_string(testing::unused_port())};
  o.retry_deadline = 30;
  EtcdClient client(o);
  Model model;
  Mirror mirror(client, "mx/", model.callbacks(), quick_mirror());
  mirror.start();
  std::this_thread::sleep_for(300ms);
  Clock::time_point t = Clock::now();
  mirror.stop();
  EXPECT_LT(since(t), 1.0);
  EXPECT_EQ(mirror.revision(), 0);
  EXPECT_FALSE(mirror.connected());
}

}  // namespace
}  // namespace portico::store
