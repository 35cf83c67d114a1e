// The asynchronous access step (context.h Completion, pipeline.h resume_request): a suspended request goes
// on with the next plugin once completed, a reply from the completion ends the phases, the consumer merge
// happens where it would without the wait, and a stale completion does nothing.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "plugins/consumers.h"
#include "plugins/pipeline.h"

namespace portico::plugins {
namespace {

// What a suspending plugin's I/O would keep: the completion to fire and what the reply said.
struct FakeCall final : PluginState {
  Completion done;
  bool deny = false;
  bool cancelled = false;
  void cancel() override { cancelled = true; }
};

// Records its calls; in access() it suspends (a plugin waiting for Redis); resume() replies 429 when the
// fake call says deny.
class Suspender final : public Plugin {
 public:
  Suspender(std::string name, int priority, std::vector<std::string>& calls)
      : Plugin(name, priority, kAccess), calls_(calls) {}
  void access(RequestContext& ctx) const override {
    calls_.push_back(std::string(name()) + ".access");
    ctx.state<FakeCall>().done = ctx.suspend();
  }
  void resume(RequestContext& ctx) const override {
    calls_.push_back(std::string(name()) + ".resume");
    if (ctx.state<FakeCall>().deny) ctx.respond(429, "");
  }

 private:
  std::vector<std::string>& calls_;
};

class Recorder final : public Plugin {
 public:
  Recorder(std::string name, int priority, uint8_t phases, std::vector<std::string>& calls,
           const ConsumerRuntime* sets_consumer = nullptr)
      : Plugin(name, priority, phases), calls_(calls), consumer_(sets_consumer) {}
  void rewrite(RequestContext& ctx) const override {
    calls_.push_back(std::string(name()) + ".rewrite");
    if (consumer_ != nullptr) ctx.consumer = consumer_;
  }
  void access(RequestContext&) const override { calls_.push_back(std::string(name()) + ".access"); }

 private:
  std::vector<std::string>& calls_;
  const ConsumerRuntime* consumer_;
};

std::shared_ptr<Chain> chain_of(std::vector<std::shared_ptr<const Plugin>> plugins) {
  auto chain = std::make_shared<Chain>();
  for (auto& p : plugins) chain->phases |= p->phases();
  chain->plugins = std::move(plugins);
  std::stable_sort(chain->plugins.begin(), chain->plugins.end(),
                   [](const auto& a, const auto& b) { return a->priority() > b->priority(); });
  return chain;
}

struct CountingWaiter final : Waiter {
  int woken = 0;
  void wake() override { ++woken; }
};

TEST(AsyncStep, APluginAfterTheSuspendingOneRunsOnlyAfterTheCompletion) {
  std::vector<std::string> calls;
  auto route = chain_of({std::make_shared<Recorder>("before", 2000, kAccess, calls),
                         std::make_shared<Suspender>("wait", 1002, calls),
                         std::make_shared<Recorder>("after", 10, kAccess, calls)});
  RequestContext ctx;
  CountingWaiter waiter;
  ctx.waiter = &waiter;
  Pipeline pipeline(nullptr, route.get());
  EXPECT_FALSE(pipeline.run_request(ctx));
  EXPECT_TRUE(ctx.waiting());
  EXPECT_EQ(calls, (std::vector<std::string>{"before.access", "wait.access"}));

  ctx.state<FakeCall>().done.complete();
  EXPECT_EQ(waiter.woken, 1);
  EXPECT_FALSE(ctx.waiting());
  ctx.state<FakeCall>().done.complete();  // exactly once
  EXPECT_EQ(waiter.woken, 1);

  EXPECT_TRUE(pipeline.resume_request(ctx));
  EXPECT_FALSE(ctx.replied());
  EXPECT_EQ(calls, (std::vector<std::string>{"before.access", "wait.access", "wait.resume", "after.access"}));
}

TEST(AsyncStep, AReplyFromTheCompletionEndsThePhases) {
  std::vector<std::string> calls;
  auto route = chain_of({std::make_shared<Suspender>("wait", 1002, calls),
                         std::make_shared<Recorder>("after", 10, kAccess, calls)});
  RequestContext ctx;
  Pipeline pipeline(nullptr, route.get());
  ASSERT_FALSE(pipeline.run_request(ctx));
  ctx.state<FakeCall>().deny = true;
  ctx.state<FakeCall>().done.complete();
  EXPECT_TRUE(pipeline.resume_request(ctx));
  EXPECT_TRUE(ctx.replied());
  EXPECT_EQ(ctx.reply.status, 429);
  EXPECT_EQ(calls, (std::vector<std::string>{"wait.access", "wait.resume"}));
}

TEST(AsyncStep, TheConsumerMergeHappensAfterAGlobalRuleWaitedAndBeforeTheMergedAccess) {
  std::vector<std::string> calls;
  ConsumerRuntime consumer;
  consumer.chain = chain_of({std::make_shared<Recorder>("shared", 1000, kRewrite | kAccess, calls),
                             std::make_shared<Suspender>("cwait", 900, calls)});
  GlobalRules globals;
  globals.chains.push_back(chain_of({std::make_shared<Suspender>("gwait", 1, calls)}));
  globals.phases = kAccess;
  auto route = chain_of({std::make_shared<Recorder>("auth", 2500, kRewrite, calls, &consumer),
                         std::make_shared<Recorder>("shared", 1000, kAccess, calls),
                         std::make_shared<Recorder>("late", 10, kAccess, calls)});
  RequestContext ctx;
  Pipeline pipeline(&globals, route.get());
  ASSERT_FALSE(pipeline.run_request(ctx));
  EXPECT_EQ(calls, (std::vector<std::string>{"gwait.access"}));  // nothing of the route yet
  EXPECT_EQ(ctx.consumer, nullptr);
  ctx.state<FakeCall>().done.complete();
  // The route's rewrite (auth sets the consumer), the consumer's rewrite, then the merged access, where
  // the consumer's own plugin waits in turn.
  ASSERT_FALSE(pipeline.resume_request(ctx));
  EXPECT_EQ(ctx.consumer, &consumer);
  ctx.state<FakeCall>().done.complete();
  ASSERT_TRUE(pipeline.resume_request(ctx));
  EXPECT_EQ(calls,
            (std::vector<std::string>{"gwait.access", "gwait.resume", "auth.rewrite", "shared.rewrite",
                                      "shared.access", "cwait.access", "cwait.resume", "late.access"}));
}

TEST(AsyncStep, AStaleCompletionIsIgnoredAndCancellingStopsTheIo) {
  std::vector<std::string> calls;
  auto route = chain_of({std::make_shared<Suspender>("wait", 1002, calls)});
  RequestContext ctx;
  CountingWaiter waiter;
  ctx.waiter = &waiter;
  Pipeline pipeline(nullptr, route.get());
  ASSERT_FALSE(pipeline.run_request(ctx));
  const Completion old = ctx.state<FakeCall>().done;
  ctx.cancel_wait();  // the session closes during the wait
  EXPECT_TRUE(ctx.state<FakeCall>().cancelled);
  EXPECT_FALSE(ctx.suspended());
  old.complete();
  EXPECT_EQ(waiter.woken, 0);

  // The next request on the connection waits again; the earlier request's completion does not wake it.
  ctx.reset();
  ASSERT_FALSE(pipeline.run_request(ctx));
  old.complete();
  EXPECT_EQ(waiter.woken, 0);
  EXPECT_TRUE(ctx.waiting());
  ctx.state<FakeCall>().done.complete();
  EXPECT_EQ(waiter.woken, 1);
}

TEST(AsyncStep, ARouteWhosePluginsNeverSuspendFinishesInOneCall) {
  std::vector<std::string> calls;
  auto route = chain_of({std::make_shared<Recorder>("a", 10, kAccess, calls)});
  RequestContext ctx;
  EXPECT_TRUE(Pipeline(nullptr, route.get()).run_request(ctx));
  EXPECT_FALSE(ctx.suspended());
}

}  // namespace
}  // namespace portico::plugins
