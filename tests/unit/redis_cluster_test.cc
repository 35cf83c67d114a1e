// The client against a 3-master Redis Cluster (one replica each) created by the test: keys in every slot,
// ASK and MOVED during a slot migration, and a master failover.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <filesystem>
#include <memory>
#include <sstream>

#include "redis/resp.h"
#include "redis_test_util.h"

namespace portico::redis {
namespace {

using namespace testing;

struct NodeInfo {
  std::string id;
  uint16_t port = 0;
  bool master = false;
  std::string master_id;
};

class RedisCluster : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    dir_ = std::filesystem::temp_directory_path() / ("portico-redis-cluster-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    std::string create = "--cluster create";
    for (int i = 0; i < 6; ++i) {
      uint16_t port = free_cluster_port();
      uint16_t bus = free_cluster_port();
      servers_.push_back(std::make_unique<RedisServer>(
          std::vector<std::string>{"--cluster-enabled", "yes", "--cluster-port", std::to_string(bus),
                                   "--cluster-config-file",
                                   (dir_ / ("nodes-" + std::to_string(port) + ".conf")).string(),
                                   "--cluster-node-timeout", "2000", "--dir", dir_.string()},
          port));
      create += " 127.0.0.1:" + std::to_string(port);
    }
    create += " --cluster-replicas 1 --cluster-yes";
    std::string out = cli(servers_[0]->port(), create);
    ASSERT_NE(out.find("All 16384 slots covered"), std::string::npos) << out;
    for (auto& s : servers_) {
      ASSERT_TRUE(eventually(
          [&] {
            if (cli(s->port(), "CLUSTER INFO").find("cluster_state:ok") == std::string::npos) return false;
            // Every node knows the roles (the replicas' roles spread by gossip after the create).
            std::string view = cli(s->port(), "CLUSTER NODES");
            size_t replicas = 0;
            for (size_t at = view.find("slave"); at != std::string::npos; at = view.find("slave", at + 1))
              ++replicas;
            return replicas == 3;
          },
          30));
    }
  }
  static void TearDownTestSuite() {
    servers_.clear();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }

  // A node still running, to ask for the cluster's view.
  static uint16_t admin_port() {
    for (auto& s : servers_) {
      if (s->running()) return s->port();
    }
    return 0;
  }
  static std::vector<NodeInfo> nodes() {
    std::vector<NodeInfo> out;
    std::istringstream in(cli(admin_port(), "CLUSTER NODES"));
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      NodeInfo n;
      std::string addr, flags;
      f >> n.id >> addr >> flags >> n.master_id;
      n.port = static_cast<uint16_t>(
          std::stoi(addr.substr(addr.find(':') + 1, addr.find('@') - addr.find(':') - 1)));
      n.master = flags.find("master") != std::string::npos;
      out.push_back(n);
    }
    return out;
  }
  // The master serving `slot`, from the node's own view.
  static NodeInfo owner(int slot) {
    std::istringstream in(cli(admin_port(), "CLUSTER NODES"));
    std::string line;
    while (std::getline(in, line)) {
      if (line.find("master") == std::string::npos || line.find("fail") != std::string::npos) continue;
      std::istringstream f(line);
      std::string tok;
      std::vector<std::string> toks;
      while (f >> tok) toks.push_back(tok);
      for (size_t i = 8; i < toks.size(); ++i) {
        size_t dash = toks[i].find('-');
        if (toks[i][0] == '[') continue;
        int lo = std::stoi(toks[i].substr(0, dash));
        int hi = dash == std::string::npos ? lo : std::stoi(toks[i].substr(dash + 1));
        if (slot >= lo && slot <= hi) {
          for (const NodeInfo& n : nodes()) {
            if (n.id == toks[0]) return n;
          }
        }
      }
    }
    return {};
  }

  void SetUp() override {
    Options o;
    o.cluster = true;
    o.nodes = {{"127.0.0.1", servers_[1]->port()}};
    o.timeout_seconds = 1.0;
    registry_.attach_worker(0, context_);
    target_ = registry_.target(o);
  }
  Client& client() { return *target_->client(0); }
  RecordingCall call(std::initializer_list<std::string_view> argv, double seconds = 5) {
    RecordingCall c;
    std::vector<std::string_view> v(argv);
    client().command(v, &c);
    run_until(
        context_, [&] { return c.completions > 0; }, seconds);
    return c;
  }

  static inline std::filesystem::path dir_;
  static inline std::vector<std::unique_ptr<RedisServer>> servers_;
  boost::asio::io_context context_{1};
  Registry registry_;
  std::shared_ptr<Target> target_;
};

TEST_F(RedisCluster, KeysInEverySlotGoToTheirNode) {
  // One key per slot, pipelined as the worker would send them.
  std::vector<std::string> keys(16384);
  size_t found = 0;
  for (int i = 0; found < keys.size(); ++i) {
    std::string k = "key:" + std::to_string(i);
    std::string& slot = keys[static_cast<size_t>(key_slot(k))];
    if (slot.empty()) {
      slot = std::move(k);
      ++found;
    }
  }
  const int kKeys = static_cast<int>(keys.size());
  std::vector<RecordingCall> calls(keys.size());
  for (int i = 0; i < kKeys; ++i) {
    std::string_view argv[] = {"SET", keys[i], keys[i]};
    client().command(argv, &calls[i]);
  }
  int done = 0;
  for (auto& c : calls) c.on_complete = [&done](RecordingCall&) { ++done; };
  ASSERT_TRUE(run_until(
      context_, [&] { return done == kKeys; }, 20));
  for (auto& c : calls) ASSERT_EQ(c.result, Result::ok) << c.str;
  EXPECT_EQ(client().stats().redirects, 0u);
  EXPECT_EQ(client().stats().map_refreshes, 1u);
  RecordingCall get = call({"GET", keys[12345]});
  EXPECT_EQ(get.str, keys[12345]);
  // Multi-key script on one slot through hash tags.
  Script script("redis.call('SET', KEYS[1], ARGV[1]); return redis.call('INCR', KEYS[2])");
  std::string_view keys2[] = {"{user7}.a", "{user7}.b"};
  std::string_view args[] = {"v"};
  RecordingCall ev;
  client().eval(script, keys2, args, &ev);
  run_until(context_, [&] { return ev.completions > 0; });
  EXPECT_EQ(ev.result, Result::ok);
  EXPECT_EQ(ev.integer, 1);
}

TEST_F(RedisCluster, AskAndMovedDuringASlotMigration) {
  const int slot = key_slot("foo");
  EXPECT_EQ(call({"SET", "foo", "bar"}).result, Result::ok);
  NodeInfo from = owner(slot);
  NodeInfo to;
  for (const NodeInfo& n : nodes()) {
    if (n.master && n.id != from.id) to = n;
  }
  ASSERT_FALSE(from.id.empty());
  ASSERT_FALSE(to.id.empty());
  const std::string s = std::to_string(slot);
  ASSERT_EQ(cli(to.port, "CLUSTER SETSLOT " + s + " IMPORTING " + from.id), "OK");
  ASSERT_EQ(cli(from.port, "CLUSTER SETSLOT " + s + " MIGRATING " + to.id), "OK");
  ASSERT_EQ(cli(from.port, "MIGRATE 127.0.0.1 " + std::to_string(to.port) + " \"\" 0 5000 KEYS foo"), "OK");
  const uint64_t before = client().stats().redirects;
  RecordingCall asked = call({"GET", "foo"});
  EXPECT_EQ(asked.result, Result::ok);
  EXPECT_EQ(asked.str, "bar");
  EXPECT_EQ(client().stats().redirects, before + 1);  // ASK, then ASKING + GET on the importing node
  for (const NodeInfo& n : nodes()) {
    if (n.master) cli(n.port, "CLUSTER SETSLOT " + s + " NODE " + to.id);
  }
  RecordingCall moved = call({"GET", "foo"});
  EXPECT_EQ(moved.result, Result::ok);
  EXPECT_EQ(moved.str, "bar");
  EXPECT_EQ(client().stats().redirects, before + 2);  // MOVED
  // The slot was updated: no more redirects.
  EXPECT_EQ(call({"GET", "foo"}).str, "bar");
  EXPECT_EQ(client().stats().redirects, before + 2);
}

TEST_F(RedisCluster, MasterFailover) {
  EXPECT_EQ(call({"SET", "fk", "1"}).result, Result::ok);
  NodeInfo master = owner(key_slot("fk"));
  NodeInfo replica;
  for (const NodeInfo& n : nodes()) {
    if (!n.master && n.master_id == master.id) replica = n;
  }
  ASSERT_FALSE(replica.id.empty());
  ASSERT_TRUE(eventually([&] {
    return cli(replica.port, "INFO replication").find("master_link_status:up") != std::string::npos;
  }));
  ASSERT_EQ(cli(replica.port, "CLUSTER FAILOVER"), "OK");
  ASSERT_TRUE(eventually([&] { return cli(replica.port, "ROLE").rfind("master", 0) == 0; }));
  // Calls succeed again within a bounded time, without restarting anything.
  auto start = std::chrono::steady_clock::now();
  RecordingCall probe;
  bool ok = run_until(
      context_,
      [&] {
        if (probe.pending()) return false;
        if (probe.completions > 0 && probe.result == Result::ok && probe.integer >= 2) return true;
        std::string_view argv[] = {"INCR", "fk"};
        client().command(argv, &probe);
        return false;
      },
      10);
  EXPECT_TRUE(ok);
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, std::chrono::seconds(5));
  std::printf("calls succeed again %.0f ms after the promotion\n",
              std::chrono::duration<double, std::milli>(took).count());
}

TEST_F(RedisCluster, AWrittenCallIsNeverSentAgainWhenItsConnectionIsLost) {
  // The node drops a client whose reply overflows a tiny output buffer limit: the script ran (INCR), its
  // reply is lost with the connection. Sending it again would count twice.
  const int slot = key_slot("{w}n");
  NodeInfo node = owner(slot);
  EXPECT_EQ(call({"DEL", "{w}n"}).result, Result::ok);
  ASSERT_EQ(cli(node.port, "CONFIG SET client-output-buffer-limit \"normal 1024 1024 0\""), "OK");
  Script script("redis.call('INCR', KEYS[1]); return string.rep('x', 200000)");
  std::string_view keys[] = {"{w}n"};
  RecordingCall c;
  client().eval(script, keys, {}, &c);
  run_until(context_, [&] { return c.completions > 0; });
  cli(node.port, "CONFIG SET client-output-buffer-limit \"normal 0 0 0\"");
  EXPECT_EQ(c.result, Result::unavailable);
  EXPECT_EQ(cli(node.port, "GET {w}n"), "1");  // ran once
}

TEST_F(RedisCluster, ANodeWhoseBreakerIsOpenFailsItsSlotsAtOnce) {
  Options o;
  o.cluster = true;
  o.nodes = {{"127.0.0.1", servers_[1]->port()}};
  o.timeout_seconds = 0.3;
  std::shared_ptr<Target> target = registry_.target(o);
  Client& c = *target->client(0);
  auto issue = [&](std::string_view key, RecordingCall& rc) {
    std::string_view argv[] = {"INCR", key};
    c.command(argv, &rc);
  };
  const std::string down_key = "bk";
  NodeInfo master = owner(key_slot(down_key));
  std::string up_key;
  for (int i = 0; up_key.empty(); ++i) {
    std::string k = "bk" + std::to_string(i);
    if (owner(key_slot(k)).port != master.port) up_key = k;
  }
  RedisServer* stopped = nullptr;
  for (auto& s : servers_) {
    if (s->port() == master.port) stopped = s.get();
  }
  ASSERT_NE(stopped, nullptr);
  RecordingCall warm_down, warm_up;
  issue(down_key, warm_down);
  issue(up_key, warm_up);
  ASSERT_TRUE(run_until(context_, [&] { return warm_down.completions > 0 && warm_up.completions > 0; }));
  ASSERT_EQ(warm_down.result, Result::ok);
  ASSERT_EQ(warm_up.result, Result::ok);

  // Stopped for well under cluster-node-timeout (2 s): no failover, the map keeps naming this master.
  stopped->signal(SIGSTOP);
  RecordingCall first;
  issue(down_key, first);
  run_until(context_, [&] { return first.completions > 0; });
  EXPECT_EQ(first.result, Result::timeout);  // opens the node's breaker (50 ms)

  constexpr int kCalls = 10;
  std::vector<RecordingCall> down(kCalls), up(kCalls);
  auto start = std::chrono::steady_clock::now();
  for (int i = 0; i < kCalls; ++i) {
    issue(down_key, down[i]);
    issue(up_key, up[i]);
  }
  auto all = [&](std::vector<RecordingCall>& v) {
    for (auto& rc : v) {
      if (rc.completions == 0) return false;
    }
    return true;
  };
  run_until(context_, [&] { return all(down); });
  auto took = std::chrono::steady_clock::now() - start;
  run_until(context_, [&] { return all(up); });
  stopped->signal(SIGCONT);
  for (auto& rc : down) EXPECT_EQ(rc.result, Result::unavailable);
  for (auto& rc : up) EXPECT_EQ(rc.result, Result::ok);
  EXPECT_LT(took, std::chrono::milliseconds(40));  // not the retry budget (~0.7 s) nor the timeout
  std::printf("calls on the stopped master failed in %.1f ms\n",
              std::chrono::duration<double, std::milli>(took).count());

  // Back once the master answers again.
  RecordingCall probe;
  bool ok = run_until(
      context_,
      [&] {
        if (probe.pending()) return false;
        if (probe.completions > 0 && probe.result == Result::ok) return true;
        issue(down_key, probe);
        return false;
      },
      5);
  EXPECT_TRUE(ok);
}

}  // namespace
}  // namespace portico::redis

namespace portico::redis {
namespace {

TEST_F(RedisCluster, MasterKilled) {
  EXPECT_EQ(call({"SET", "kk", "1"}).result, Result::ok);
  NodeInfo master = owner(key_slot("kk"));
  NodeInfo replica;
  for (const NodeInfo& n : nodes()) {
    if (!n.master && n.master_id == master.id) replica = n;
  }
  ASSERT_FALSE(replica.id.empty());
  ASSERT_TRUE(eventually([&] {
    return cli(replica.port, "INFO replication").find("master_link_status:up") != std::string::npos;
  }));
  for (auto& s : servers_) {
    if (s->port() == master.port) s->stop();
  }
  // The replica is promoted after cluster-node-timeout (2 s); meanwhile calls fail fast or time out, and
  // then succeed again without any restart.
  auto start = std::chrono::steady_clock::now();
  RecordingCall probe;
  int failed = 0;
  bool ok = run_until(
      context_,
      [&] {
        if (probe.pending()) return false;
        if (probe.completions > 0 && probe.result == Result::ok && probe.integer >= 2) return true;
        if (probe.completions > 0) ++failed;
        std::string_view argv[] = {"INCR", "kk"};
        client().command(argv, &probe);
        return false;
      },
      15);
  EXPECT_TRUE(ok) << "last result " << result_name(probe.result) << " " << probe.str;
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_LT(took, std::chrono::seconds(10));
  std::printf("calls succeed again %.0f ms after the kill (%d failed meanwhile)\n",
              std::chrono::duration<double, std::milli>(took).count(), failed);
  // The admin node learns of the promotion by gossip, possibly after the client already followed a MOVED.
  EXPECT_TRUE(eventually([&] { return owner(key_slot("kk")).port == replica.port; }))
      << "the replica (port " << replica.port << ") never took the slot over";
}

}  // namespace
}  // namespace portico::redis
