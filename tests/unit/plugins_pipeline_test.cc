// The plugin pipeline: chain compilation (precedence, _meta.disable, sharing) and the phase order
// (global rules first, consumer plugins merged over the route's, a reply ends the request phases).
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "plugins/consumers.h"
#include "plugins/pipeline.h"

namespace portico::plugins {
namespace {

using json = nlohmann::json;

// Records every call as "<name>.<phase>"; replies in `reply_in` when set.
class Recorder final : public Plugin {
 public:
  Recorder(std::string name, int priority, uint8_t phases, std::vector<std::string>& calls,
           uint8_t reply_in = 0)
      : Plugin(name, priority, phases), calls_(calls), reply_in_(reply_in) {}

  void rewrite(RequestContext& ctx) const override { record(ctx, kRewrite, "rewrite"); }
  void access(RequestContext& ctx) const override { record(ctx, kAccess, "access"); }
  void on_response(RequestContext&, const ResponseInfo&) const override {
    calls_.push_back(std::string(name()) + ".response");
  }
  void log(const RequestContext&, const LogInfo&) const override {
    calls_.push_back(std::string(name()) + ".log");
  }

 private:
  void record(RequestContext& ctx, uint8_t phase, const char* what) const {
    calls_.push_back(std::string(name()) + "." + what);
    if ((reply_in_ & phase) != 0) ctx.respond(403, "no");
  }
  std::vector<std::string>& calls_;
  uint8_t reply_in_;
};

// A chain of recorders, sorted as compile_chain sorts.
std::shared_ptr<Chain> chain_of(std::vector<std::shared_ptr<const Plugin>> plugins) {
  auto chain = std::make_shared<Chain>();
  for (auto& p : plugins) chain->phases |= p->phases();
  chain->plugins = std::move(plugins);
  std::stable_sort(chain->plugins.begin(), chain->plugins.end(),
                   [](const auto& a, const auto& b) { return a->priority() > b->priority(); });
  return chain;
}

constexpr uint8_t kAll = kRewrite | kAccess | kResponse | kLog;

TEST(PluginPipeline, GlobalRulesRunBeforeTheRouteAndConsumerPluginsMergeOverTheRoutes) {
  std::vector<std::string> calls;
  GlobalRules globals;
  globals.chains.push_back(chain_of({std::make_shared<Recorder>("g", 1, kAll, calls)}));
  globals.phases = kAll;
  // The route: an "auth" plugin at 2500 (rewrite) and two others; the consumer overrides "shared".
  auto route = chain_of({std::make_shared<Recorder>("auth", 2500, kRewrite, calls),
                         std::make_shared<Recorder>("shared", 1000, kRewrite | kAccess, calls),
                         std::make_shared<Recorder>("late", 10, kAccess | kLog, calls)});
  ConsumerRuntime consumer;
  consumer.chain = chain_of({std::make_shared<Recorder>("shared", 1000, kRewrite | kAccess, calls),
                             std::make_shared<Recorder>("mine", 500, kAccess, calls)});

  RequestContext ctx;
  ctx.consumer = &consumer;  // as if "auth" had set it
  Pipeline pipeline(&globals, route.get());
  pipeline.run_request(ctx);
  EXPECT_FALSE(ctx.replied());
  const std::vector<std::string> want = {"g.rewrite",      "g.access",        // 1. global rules, both phases
                                         "auth.rewrite",   "shared.rewrite",  // 2. the route's rewrite phase
                                         "shared.rewrite",  // 3. the consumer's plugins' rewrite
                                         "shared.access",  "mine.access",
                                         "late.access"};  // 4. merged access: the consumer's "shared" only
  EXPECT_EQ(calls, want);

  calls.clear();
  pipeline.run_log(ctx, LogInfo{});
  EXPECT_EQ(calls, (std::vector<std::string>{"g.log", "late.log"}));
}

TEST(PluginPipeline, AReplyEndsTheRequestPhasesButTheResponsePhaseStillRuns) {
  std::vector<std::string> calls;
  auto route = chain_of({std::make_shared<Recorder>("deny", 3000, kAccess | kResponse, calls, kAccess),
                         std::make_shared<Recorder>("after", 100, kRewrite | kAccess | kResponse, calls)});
  RequestContext ctx;
  Pipeline pipeline(nullptr, route.get());
  pipeline.run_request(ctx);
  ASSERT_TRUE(ctx.replied());
  EXPECT_EQ(ctx.reply.status, 403);
  EXPECT_EQ(calls, (std::vector<std::string>{"after.rewrite", "deny.access"}));
  calls.clear();
  pipeline.run_response(ctx, ResponseInfo{403, nullptr});
  EXPECT_EQ(calls, (std::vector<std::string>{"deny.response", "after.response"}));
}

TEST(PluginPipeline, AGlobalRuleReplyStopsBeforeTheRoute) {
  std::vector<std::string> calls;
  GlobalRules globals;
  globals.chains.push_back(chain_of({std::make_shared<Recorder>("g", 1, kRewrite, calls, kRewrite)}));
  globals.phases = kRewrite;
  auto route = chain_of({std::make_shared<Recorder>("r", 9999, kRewrite, calls)});
  RequestContext ctx;
  Pipeline(&globals, route.get()).run_request(ctx);
  EXPECT_EQ(calls, (std::vector<std::string>{"g.rewrite"}));
}

config::PluginSpec key_auth_spec(int priority, bool disabled = false) {
  config::PluginSpec spec;
  spec.name = "key-auth";
  spec.priority = priority;
  spec.disabled = disabled;
  spec.conf = std::make_shared<const json>(
      json{{"header", "apikey"}, {"query", "apikey"}, {"hide_credentials", false}});
  return spec;
}

TEST(PluginChain, RouteOverPluginConfigOverService) {
  // The priority tells which layer's configuration was taken.
  config::PluginMap service = {key_auth_spec(1)}, plugin_config = {key_auth_spec(2)},
                    route = {key_auth_spec(3)};
  BuildEnv env;
  PluginCache cache;
  std::string error;
  const config::PluginMap* all[] = {&service, &plugin_config, &route};
  auto chain = compile_chain(all, env, cache, &error);
  ASSERT_TRUE(chain) << error;
  ASSERT_EQ(chain->plugins.size(), 1u);
  EXPECT_EQ(chain->plugins[0]->priority(), 3);

  const config::PluginMap* no_route[] = {&service, &plugin_config, nullptr};
  chain = compile_chain(no_route, env, cache, &error);
  ASSERT_TRUE(chain);
  EXPECT_EQ(chain->plugins[0]->priority(), 2);
}

TEST(PluginChain, DisabledOnTheRouteTurnsOffTheServicesPlugin) {
  config::PluginMap service = {key_auth_spec(1)}, route = {key_auth_spec(1, true)};
  BuildEnv env;
  PluginCache cache;
  std::string error;
  const config::PluginMap* layers[] = {&service, nullptr, &route};
  EXPECT_EQ(compile_chain(layers, env, cache, &error), nullptr);  // nothing runs: the route pays nothing
  EXPECT_TRUE(error.empty());
}

TEST(PluginChain, OneConfigurationCompilesOnceForEveryRouteSharingIt) {
  config::PluginMap service = {key_auth_spec(1)};
  BuildEnv env;
  PluginCache cache;
  std::string error;
  const config::PluginMap* layers[] = {&service};
  auto a = compile_chain(layers, env, cache, &error);
  auto b = compile_chain(layers, env, cache, &error);
  ASSERT_TRUE(a && b);
  EXPECT_EQ(a->plugins[0].get(), b->plugins[0].get());
}

TEST(PluginChain, UnknownRuntimeIsAnError) {
  config::PluginSpec spec = key_auth_spec(1);
  spec.name = "no-such-plugin";
  config::PluginMap route = {spec};
  BuildEnv env;
  PluginCache cache;
  std::string error;
  const config::PluginMap* layers[] = {&route};
  EXPECT_EQ(compile_chain(layers, env, cache, &error), nullptr);
  EXPECT_NE(error.find("no-such-plugin"), std::string::npos);
}

config::Consumer consumer_with_key(const std::string& name, const std::string& key) {
  config::Consumer c;
  c.username = name;
  config::PluginSpec spec;
  spec.name = "key-auth";
  spec.conf = std::make_shared<const json>(json{{"key", key}});
  c.plugins.push_back(spec);
  return c;
}

TEST(ConsumerIndex, FindsKeysAndRefusesAKeySharedByTwoConsumers) {
  std::vector<config::Consumer> consumers = {
      consumer_with_key("a", "key-a"), consumer_with_key("b", "shared"), consumer_with_key("c", "shared")};
  BuildEnv env;
  PluginCache cache;
  std::vector<std::string> problems;
  auto index = ConsumerIndex::build(consumers, {}, env, cache, problems);
  ASSERT_TRUE(index);
  const auto* a = index->find_key("key-a");
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(a->consumer->username, "a");
  EXPECT_EQ(index->find_key("key-"), nullptr);
  EXPECT_EQ(index->find_key("key-a "), nullptr);
  EXPECT_EQ(index->find_key("shared"), nullptr);  // ambiguous: neither b nor c
  ASSERT_EQ(problems.size(), 1u);
  EXPECT_NE(problems[0].find("also used by"), std::string::npos);
  EXPECT_NE(index->find_consumer("b"), nullptr);
}

}  // namespace
}  // namespace portico::plugins

namespace portico::plugins {
namespace {

TEST(ConsumerIndex, AnOverlayMasksChangedAndRemovedConsumersOfItsBase) {
  BuildEnv env;
  PluginCache cache;
  std::vector<std::string> problems;
  auto whole = ConsumerIndex::build(
      {consumer_with_key("a", "key-a"), consumer_with_key("b", "key-b"), consumer_with_key("c", "key-c")}, {},
      env, cache, problems);
  // a changes its key, b is removed, d is added with c's key (ambiguous), e is added.
  auto layer = ConsumerIndex::layer(
      whole,
      {consumer_with_key("a", "key-a2"), consumer_with_key("d", "key-c"), consumer_with_key("e", "key-e")},
      {}, {"a", "b", "d", "e"}, env, cache, problems);
  EXPECT_EQ(layer->find_key("key-a"), nullptr);  // a's old key
  ASSERT_NE(layer->find_key("key-a2"), nullptr);
  EXPECT_EQ(layer->find_key("key-a2")->consumer->username, "a");
  EXPECT_EQ(layer->find_key("key-b"), nullptr);  // b removed
  EXPECT_EQ(layer->find_consumer("b"), nullptr);
  EXPECT_EQ(layer->find_key("key-c"), nullptr);  // now claimed by c (base) and d (overlay)
  ASSERT_NE(layer->find_key("key-e"), nullptr);
  EXPECT_NE(layer->find_consumer("c"), nullptr);
  // The base is untouched (older snapshots keep using it).
  EXPECT_NE(whole->find_key("key-b"), nullptr);
  EXPECT_NE(whole->find_key("key-c"), nullptr);
  // A layer over a layer refers to the whole index, never to the previous layer.
  auto next = ConsumerIndex::layer(layer, {}, {}, {"a", "b", "d", "e"}, env, cache, problems);
  EXPECT_EQ(next->whole(), whole.get());
}

}  // namespace
}  // namespace portico::plugins

namespace portico::plugins {
namespace {

TEST(ConsumerIndex, AValueTheBaseBlockedStaysBlockedWhenAHolderChanges) {
  BuildEnv env;
  PluginCache cache;
  std::vector<std::string> problems;
  auto whole = ConsumerIndex::build({consumer_with_key("a", "shared"), consumer_with_key("b", "shared")}, {},
                                    env, cache, problems);
  ASSERT_EQ(whole->find_key("shared"), nullptr);
  // a is edited (its desc, say) and keeps the key; c is added with the same key: neither may take it over.
  auto layer =
      ConsumerIndex::layer(whole, {consumer_with_key("a", "shared"), consumer_with_key("c", "shared")}, {},
                           {"a", "c"}, env, cache, problems);
  EXPECT_EQ(layer->find_key("shared"), nullptr);
}

}  // namespace
}  // namespace portico::plugins
