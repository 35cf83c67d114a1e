// The client against a real redis-server: pipelining, scripts, AUTH, SELECT, timeouts, the circuit breaker
// and recovery after a restart.
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <memory>

#include "redis_test_util.h"

namespace portico::redis {
namespace {

using namespace testing;
using Ms = std::chrono::milliseconds;

struct Harness {
  boost::asio::io_context context{1};
  Registry registry;
  std::shared_ptr<Target> target;
  explicit Harness(const Options& o) {
    registry.attach_worker(0, context);
    target = registry.target(o);
  }
  Client& client() { return *target->client(0); }
  // Issues argv and runs the loop until it completes.
  RecordingCall call(std::initializer_list<std::string_view> argv, double seconds = 5) {
    RecordingCall c;
    std::vector<std::string_view> v(argv);
    client().command(v, &c);
    run_until(
        context, [&] { return c.completions > 0; }, seconds);
    return c;
  }
};

TEST(RedisServer, PipelinedCallsFromManyCallersCompleteInOrder) {
  RedisServer server;
  Harness h(local(server.port()));
  constexpr int kCalls = 2000;
  std::vector<RecordingCall> calls(kCalls);
  std::vector<int> order;
  for (int i = 0; i < kCalls; ++i) {
    calls[i].on_complete = [&order, i](RecordingCall&) { order.push_back(i); };
    std::string_view argv[] = {"INCR", "counter"};
    h.client().command(argv, &calls[i]);
  }
  EXPECT_TRUE(order.empty());  // nothing completes inside command()
  ASSERT_TRUE(run_until(h.context, [&] { return order.size() == kCalls; }));
  for (int i = 0; i < kCalls; ++i) {
    ASSERT_EQ(order[i], i);
    ASSERT_EQ(calls[i].result, Result::ok);
    ASSERT_EQ(calls[i].integer, i + 1);
  }
  EXPECT_EQ(h.client().stats().connects, 1u);
  // Same Options, same target and client.
  EXPECT_EQ(h.registry.target(local(server.port())), h.target);
}

TEST(RedisServer, EvalShaFallsBackToEvalAfterScriptFlush) {
  RedisServer server;
  Harness h(local(server.port()));
  Script script("return redis.call('INCRBY', KEYS[1], ARGV[1])");
  auto eval = [&](std::string_view by) {
    RecordingCall c;
    std::string_view keys[] = {"k"};
    std::string_view args[] = {by};
    h.client().eval(script, keys, args, &c);
    run_until(h.context, [&] { return c.completions > 0; });
    return c;
  };
  RecordingCall a = eval("5");
  EXPECT_EQ(a.result, Result::ok);
  EXPECT_EQ(a.integer, 5);
  EXPECT_EQ(h.client().stats().script_loads, 1u);
  EXPECT_EQ(eval("2").integer, 7);
  EXPECT_EQ(h.client().stats().script_loads, 1u);  // EVALSHA found it
  EXPECT_EQ(h.call({"SCRIPT", "FLUSH"}).result, Result::ok);
  RecordingCall b = eval("1");
  EXPECT_EQ(b.result, Result::ok);
  EXPECT_EQ(b.integer, 8);
  EXPECT_EQ(h.client().stats().script_loads, 2u);
  // A script error is an error reply, not retried.
  Script bad("return redis.call('NOPE')");
  RecordingCall c;
  std::string_view keys[] = {"k"};
  h.client().eval(bad, keys, {}, &c);
  run_until(h.context, [&] { return c.completions > 0; });
  EXPECT_EQ(c.result, Result::error);
}

TEST(RedisServer, AuthWithRequirepassAndAclUser) {
  RedisServer server({"--requirepass", "pw1"});
  Options o = local(server.port());
  o.password = "pw1";
  {
    Harness h(o);
    EXPECT_EQ(h.call({"SET", "a", "1"}).result, Result::ok);
    EXPECT_EQ(h.call({"ACL", "SETUSER", "alice", "on", ">pw2", "~*", "+@all"}).result, Result::ok);
  }
  Options alice = local(server.port());
  alice.username = "alice";
  alice.password = "pw2";
  {
    Harness h(alice);
    RecordingCall c = h.call({"GET", "a"});
    EXPECT_EQ(c.result, Result::ok);
    EXPECT_EQ(c.str, "1");
  }
  Options wrong = local(server.port());
  wrong.password = "nope";
  Harness h(wrong);
  EXPECT_EQ(h.call({"GET", "a"}).result, Result::unavailable);
  EXPECT_FALSE(h.client().available());
}

TEST(RedisServer, SelectsTheDatabase) {
  RedisServer server;
  Options db3 = local(server.port());
  db3.database = 3;
  Harness h3(db3);
  EXPECT_EQ(h3.call({"SET", "only-in-3", "x"}).result, Result::ok);
  Harness h0(local(server.port()));
  EXPECT_EQ(h0.call({"GET", "only-in-3"}).type, ReplyType::nil);
  EXPECT_EQ(h3.call({"GET", "only-in-3"}).str, "x");
}

TEST(RedisServer, FireAndForgetAndCancel) {
  RedisServer server;
  Harness h(local(server.port()));
  std::string_view set[] = {"SET", "ff", "1"};
  h.client().command(set, nullptr);
  RecordingCall cancelled;
  std::string_view incr[] = {"INCR", "ff"};
  h.client().command(incr, &cancelled);
  h.client().cancel(&cancelled);
  EXPECT_FALSE(cancelled.pending());
  RecordingCall get = h.call({"GET", "ff"});
  EXPECT_EQ(get.str, "2");  // the cancelled INCR was sent; only its completion is dropped
  EXPECT_EQ(cancelled.completions, 0);
}

TEST(RedisServer, DestroyingTheClientCompletesPendingCallsWithShutdown) {
  RedisServer server;
  RecordingCall c;
  {
    Harness h(local(server.port()));
    std::string_view argv[] = {"PING"};
    h.client().command(argv, &c);
    h.registry.shutdown();
  }
  EXPECT_EQ(c.completions, 1);
  EXPECT_EQ(c.result, Result::shutdown);
}

TEST(RedisServer, TimeoutOpensTheBreakerAndTheClientRecoversAfterSigcont) {
  RedisServer server;
  Harness h(local(server.port(), 0.2));
  EXPECT_EQ(h.call({"PING"}).result, Result::ok);
  server.signal(SIGSTOP);
  auto start = std::chrono::steady_clock::now();
  RecordingCall slow = h.call({"PING"});
  auto took = std::chrono::steady_clock::now() - start;
  EXPECT_EQ(slow.result, Result::timeout);
  EXPECT_GE(took, Ms(200));
  EXPECT_LT(took, Ms(300));
  EXPECT_FALSE(h.client().available());
  // Open: completes at once, and not inside command().
  RecordingCall fast;
  std::string_view ping[] = {"PING"};
  start = std::chrono::steady_clock::now();
  h.client().command(ping, &fast);
  EXPECT_EQ(fast.completions, 0);
  run_until(h.context, [&] { return fast.completions > 0; });
  EXPECT_EQ(fast.result, Result::unavailable);
  EXPECT_LT(std::chrono::steady_clock::now() - start, Ms(40));
  server.signal(SIGCONT);
  bool recovered = run_until(
      h.context,
      [&] {
        static RecordingCall probe;
        if (probe.pending()) return false;
        if (probe.completions > 0 && probe.result == Result::ok) return true;
        h.client().command(ping, &probe);
        return false;
      },
      5);
  EXPECT_TRUE(recovered);
  EXPECT_TRUE(h.client().available());
}

TEST(RedisServer, RecoversAfterTheServerIsKilledAndRestarted) {
  RedisServer server;
  Harness h(local(server.port(), 0.5));
  EXPECT_EQ(h.call({"SET", "x", "1"}).result, Result::ok);
  server.stop();
  RecordingCall lost = h.call({"GET", "x"});
  EXPECT_EQ(lost.result, Result::unavailable);
  server.start();
  RecordingCall probe;
  std::string_view ping[] = {"PING"};
  bool recovered = run_until(
      h.context,
      [&] {
        if (probe.pending()) return false;
        if (probe.completions > 0 && probe.result == Result::ok) return true;
        h.client().command(ping, &probe);
        return false;
      },
      5);
  EXPECT_TRUE(recovered);
  EXPECT_EQ(h.client().stats().connects, 2u);
}

}  // namespace
}  // namespace portico::redis

namespace portico::redis {
namespace {

using namespace testing;

TEST(RedisServer, AReleasedTargetDestroysItsClientOnTheWorker) {
  RedisServer server;
  boost::asio::io_context context{1};
  Registry registry;
  registry.attach_worker(0, context);
  auto target = registry.target(local(server.port()));
  RecordingCall c;
  std::string_view ping[] = {"PING"};
  target->client(0)->command(ping, &c);
  ASSERT_TRUE(run_until(context, [&] { return c.completions > 0; }));
  std::weak_ptr<Target> weak = target;
  target.reset();  // the last holder: the client's destruction is posted to its worker
  EXPECT_TRUE(weak.expired());
  context.restart();
  EXPECT_GT(context.poll(), 0u);  // ran the posted destruction (and the aborted handlers after it)
  // The next holder gets a new target with a new client.
  auto again = registry.target(local(server.port()));
  EXPECT_EQ(again->client(0)->stats().connects, 0u);
  RecordingCall d;
  again->client(0)->command(ping, &d);
  ASSERT_TRUE(run_until(context, [&] { return d.completions > 0; }));
  EXPECT_EQ(d.result, Result::ok);
}

}  // namespace
}  // namespace portico::redis

namespace portico::redis {
namespace {

using namespace testing;

TEST(RedisServer, Tls) {
  auto dir = std::filesystem::temp_directory_path() / ("portico-redis-tls-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const std::string cert = (dir / "cert.pem").string(), key = (dir / "key.pem").string();
  const std::string gen =
      "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=localhost -addext "
      "subjectAltName=DNS:localhost -keyout " +
      key + " -out " + cert + " >/dev/null 2>&1";
  ASSERT_EQ(std::system(gen.c_str()), 0);
  const uint16_t tls_port = free_port();
  {
    RedisServer server({"--tls-port", std::to_string(tls_port), "--tls-cert-file", cert, "--tls-key-file",
                        key, "--tls-ca-cert-file", cert, "--tls-auth-clients", "no"});
    Options o = local(tls_port);
    o.tls = true;
    o.server_name = "localhost";
    {
      Harness h(o);
      EXPECT_EQ(h.call({"SET", "t", "1"}).result, Result::ok);
      EXPECT_EQ(h.call({"GET", "t"}).str, "1");
    }
    // Verification against the system CAs refuses a self-signed certificate.
    Options verify = o;
    verify.tls_verify = true;
    Harness h(verify);
    EXPECT_EQ(h.call({"GET", "t"}).result, Result::unavailable);
    // Plain text to the TLS port is not a Redis conversation either.
    Harness plain(local(tls_port, 0.3));
    EXPECT_NE(plain.call({"GET", "t"}).result, Result::ok);
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
}

}  // namespace
}  // namespace portico::redis
