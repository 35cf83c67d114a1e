// Compactor against a real etcd process (see src/store/testing/etcd_harness.h).
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "store/compactor.h"
#include "store/testing/etcd_harness.h"

namespace portico::store {
namespace {

using namespace std::chrono_literals;
using testing::EtcdCluster;

// Whether a range at `revision` is refused as compacted.
bool compacted_at(EtcdClient& client, int64_t revision) {
  RangeRequest r;
  r.key = "cx/";
  r.range_end = prefix_end(r.key);
  r.revision = revision;
  RangeResult out;
  Status s = client.range(r, out);
  EXPECT_TRUE(s.ok() || s.code == Code::compacted) << s.message;
  return s.code == Code::compacted;
}

bool wait_compacted(const Compactor& c, int64_t revision, double seconds) {
  for (auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
       std::chrono::steady_clock::now() < deadline; std::this_thread::sleep_for(20ms)) {
    if (c.compacted() == revision) return true;
  }
  return false;
}

TEST(Compactor, CompactsBehindTheHorizonKeepingRetentionAndOneInterval) {
  EtcdCluster cluster;
  std::string error;
  ASSERT_TRUE(cluster.start(1, error)) << error;
  EtcdClient client(testing::options_for(cluster.endpoints()));
  ResponseHeader h;
  for (int i = 0; i < 30; ++i) ASSERT_TRUE(client.put("cx/" + std::to_string(i % 3), "v", &h).ok());
  const int64_t top = h.revision;

  std::atomic<int64_t> horizon{top};
  Compactor compactor(
      client, [&] { return horizon.load(); }, CompactorOptions{0.2, 10});
  compactor.start();
  // The horizon has been at `top` for an interval: compacted `retention` behind it.
  ASSERT_TRUE(wait_compacted(compactor, top - 10, 5)) << compactor.compacted();
  EXPECT_TRUE(compacted_at(client, top - 11));
  EXPECT_FALSE(compacted_at(client, top - 10));

  // The horizon jumps ahead: the next compaction goes no further than where the horizon was an interval
  // ago (a lagging watcher keeps one interval of history), whatever the retention says.
  horizon = top + 1000;
  ASSERT_TRUE(wait_compacted(compactor, top, 5)) << compactor.compacted();
  EXPECT_FALSE(compacted_at(client, top));
  // Then top + 990 is a future revision etcd refuses: nothing is compacted past what exists.
  std::this_thread::sleep_for(500ms);
  EXPECT_EQ(compactor.compacted(), top);
  compactor.stop();
  compactor.stop();
}

TEST(Compactor, DisabledByAZeroInterval) {
  EtcdClient client(testing::options_for({"http://127.0.0.1:" + std::to_string(testing::unused_port())}));
  Compactor compactor(
      client, [] { return int64_t{1000000}; }, CompactorOptions{0, 1});
  compactor.start();
  std::this_thread::sleep_for(100ms);
  EXPECT_EQ(compactor.compacted(), 0);
}

}  // namespace
}  // namespace portico::store
