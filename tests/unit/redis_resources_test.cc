// The client's resources against a real redis-server: no client after Registry::shutdown() (a loop torn
// down with suspended sessions releases leases from inside ~io_context), the fire-and-forget pool's cap, and
// the reply ring shrinking once a connection idles.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <memory>

#include "redis_test_util.h"

namespace portico::redis {
namespace {

using namespace testing;

TEST(RedisResources, NoClientAfterShutdownAndReleasesDuringTeardownAreSkipped) {
  RedisServer server;
  auto context = std::make_unique<boost::asio::io_context>(1);
  Registry registry;
  registry.attach_worker(0, *context);
  auto target = registry.target(local(server.port()));
  ASSERT_NE(target->client(0), nullptr);
  RecordingCall c;
  std::string_view ping[] = {"PING"};
  target->client(0)->command(ping, &c);
  ASSERT_TRUE(run_until(*context, [&] { return c.completions > 0; }));

  // A suspended session's frame, still queued when the worker aborted: destroyed inside ~io_context, after
  // the registry shut down, it releases its lease through the target (as RedisConn::release does).
  struct Frame {
    std::shared_ptr<Target> target;
    int* skipped;
    ~Frame() {
      std::string_view decr[] = {"DECR", "conn"};
      if (Client* client = target->client(0)) {
        client->command(decr, nullptr);
      } else {
        ++*skipped;
      }
    }
  };
  int skipped = 0;
  std::shared_ptr<Frame> frame(new Frame{target, &skipped});
  boost::asio::post(*context, [frame] {});
  frame.reset();

  registry.shutdown();
  EXPECT_EQ(target->client(0), nullptr);
  context.reset();  // runs ~Frame: no client is created on the dying loop
  EXPECT_EQ(skipped, 1);
  target.reset();  // nothing left to post into the destroyed context
}

TEST(RedisResources, FireAndForgetPoolIsCapped) {
  RedisServer server;
  boost::asio::io_context context{1};
  Registry registry;
  registry.attach_worker(0, context);
  auto target = registry.target(local(server.port()));
  Client& client = *target->client(0);
  constexpr int kCalls = 5000;  // all pending at once, as during a stall
  constexpr size_t kCap = 4096;
  for (int round = 1; round <= 2; ++round) {
    std::string_view incr[] = {"INCR", "n"};
    for (int i = 0; i < kCalls; ++i) client.command(incr, nullptr);
    RecordingCall get;
    std::string_view argv[] = {"GET", "n"};
    client.command(argv, &get);  // replies come in order: the fire-and-forget ones completed before it
    ASSERT_TRUE(run_until(
        context, [&] { return get.completions > 0; }, 10));
    EXPECT_EQ(get.str, std::to_string(round * kCalls));
    EXPECT_EQ(client.stats().owned_pooled, kCap);
    EXPECT_EQ(client.stats().owned_overflow, static_cast<uint64_t>(round * (kCalls - kCap)));
  }
}

TEST(RedisResources, ReplyRingShrinksWhenTheConnectionIdles) {
  RedisServer server;
  boost::asio::io_context context{1};
  Registry registry;
  registry.attach_worker(0, context);
  auto target = registry.target(local(server.port()));
  Client& client = *target->client(0);
  const size_t initial = client.stats().ring_slots;
  EXPECT_GT(initial, 0u);
  constexpr int kCalls = 5000;
  std::vector<RecordingCall> calls(kCalls);
  int done = 0;
  for (auto& c : calls) {
    c.on_complete = [&done](RecordingCall&) { ++done; };
    std::string_view argv[] = {"INCR", "r"};
    client.command(argv, &c);
  }
  EXPECT_GE(client.stats().ring_slots, static_cast<size_t>(kCalls));
  ASSERT_TRUE(run_until(
      context, [&] { return done == kCalls; }, 10));
  EXPECT_EQ(calls.back().integer, kCalls);
  EXPECT_EQ(client.stats().ring_slots, initial);
  // Still works after shrinking.
  RecordingCall again;
  std::string_view argv[] = {"INCR", "r"};
  client.command(argv, &again);
  ASSERT_TRUE(run_until(context, [&] { return again.completions > 0; }));
  EXPECT_EQ(again.integer, kCalls + 1);
}

}  // namespace
}  // namespace portico::redis
