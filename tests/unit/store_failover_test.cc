// EtcdClient through the loss of members of a real three-member etcd cluster.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
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

// The availability test: SIGKILL the leader of three during a stream of writes.
TEST(EtcdCluster3, LeaderKilledDuringWritesThenAllDown) {
  EtcdCluster cluster;
  std::string error;
  ASSERT_TRUE(cluster.start(3, error)) << error;
  EtcdClient client(options_for(cluster.endpoints()));
  int leader = cluster.leader();
  ASSERT_GE(leader, 0);

  constexpr int kWrites = 200;
  std::atomic<int> done{0};
  std::thread killer([&] {
    while (done.load() < 50) std::this_thread::sleep_for(1ms);
    cluster.kill(leader);  // between writes or during one: either must be survived
  });
  int failed = 0, ambiguous = 0;
  double slowest = 0;
  std::vector<int64_t> revisions(kWrites, 0);
  for (int i = 0; i < kWrites; ++i) {
    Txn txn;
    std::string key = "lk/" + std::to_string(i);
    txn.compare.push_back({key, "", Compare::Target::create_revision, Compare::Result::equal, 0, ""});
    txn.success.push_back({Op::Type::put, key, "", "value-" + std::to_string(i), 0, false});
    TxnResult tr;
    Clock::time_point t = Clock::now();
    Status s = client.txn(txn, tr);
    slowest = std::max(slowest, since(t));
    if (!s.ok()) {
      ++failed;
      ADD_FAILURE() << "write " << i << ": " << s.message;
    } else {
      // A failed create-only compare is only acceptable as our own earlier attempt having committed.
      EXPECT_TRUE(tr.succeeded || tr.ambiguous_retry) << i;
      ambiguous += tr.ambiguous_retry ? 1 : 0;
      revisions[i] = tr.header.revision;
    }
    done.store(i + 1);
    std::this_thread::sleep_for(5ms);
  }
  killer.join();
  EXPECT_EQ(failed, 0);
  std::printf(
      "[ measure  ] leader %d killed during %d writes: %d failed, %d retried after an ambiguous "
      "attempt, slowest write %.3fs\n",
      leader, kWrites, failed, ambiguous, slowest);
  EXPECT_LT(slowest, client.options().retry_deadline);

  RangeRequest r;
  r.key = "lk/";
  r.range_end = prefix_end("lk/");
  RangeResult all;
  ASSERT_TRUE(client.range(r, all).ok());
  EXPECT_EQ(all.count, kWrites);
  for (const KeyValue& kv : all.kvs) {
    int i = std::stoi(kv.key.substr(3));
    EXPECT_EQ(kv.value, "value-" + std::to_string(i));
  }

  // Every member down: unavailable once retry_deadline has passed, not before, not much after.
  for (int i = 0; i < 3; ++i) cluster.kill(i);
  EtcdOptions o = options_for(cluster.endpoints());
  o.retry_deadline = 3.0;
  EtcdClient down(o);
  RangeResult out;
  Clock::time_point t = Clock::now();
  Status s = down.range(r, out);
  double read_seconds = since(t);
  EXPECT_EQ(s.code, Code::unavailable) << s.message;
  EXPECT_GE(read_seconds, o.retry_deadline - 0.1);
  EXPECT_LE(read_seconds, o.retry_deadline + 1.0);
  t = Clock::now();
  s = down.put("lk/x", "y");
  double write_seconds = since(t);
  EXPECT_EQ(s.code, Code::unavailable);
  EXPECT_FALSE(s.maybe_applied) << "refused connections never carried the write";
  EXPECT_LE(write_seconds, o.retry_deadline + 1.0);
  std::printf(
      "[ measure  ] all members down: unavailable after %.3fs (read), %.3fs (write); retry_deadline %.1fs\n",
      read_seconds, write_seconds, o.retry_deadline);
}

}  // namespace
}  // namespace portico::store
