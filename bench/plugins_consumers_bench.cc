// The consumer index at scale (docs/benchmarks.md "Consumers"): building it for N consumers (time and
// memory), the key-auth lookup at 10 vs 100k consumers (should be flat), and a one-consumer delta (an overlay
// over the whole index, which should cost the change, not N).
//
//   build/bench/plugins_consumers_bench --benchmark_counters_tabular=true
#include <benchmark/benchmark.h>
#include <malloc.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "plugins/consumers.h"

namespace {

using portico::plugins::BuildEnv;
using portico::plugins::ConsumerIndex;
using portico::plugins::PluginCache;

std::string key_of(size_t i) {
  return "key-" + std::to_string(i * 7919) + "-0123456789abcdef";  // 32-ish bytes, like real API keys
}

std::vector<portico::config::Consumer> consumers(size_t n) {
  std::vector<portico::config::Consumer> out(n);
  for (size_t i = 0; i < n; ++i) {
    out[i].username = "user" + std::to_string(i);
    portico::config::PluginSpec spec;
    spec.name = "key-auth";
    spec.conf = std::make_shared<const nlohmann::json>(nlohmann::json{{"key", key_of(i)}});
    out[i].plugins.push_back(std::move(spec));
  }
  return out;
}

size_t heap_bytes() {
  struct mallinfo2 m = mallinfo2();
  return m.uordblks + m.hblkhd;
}

void BM_BuildIndex(benchmark::State& state) {
  auto models = consumers(static_cast<size_t>(state.range(0)));
  size_t bytes = 0;
  for (auto _ : state) {
    BuildEnv env;
    PluginCache cache;
    std::vector<std::string> problems;
    size_t before = heap_bytes();
    auto index = ConsumerIndex::build(models, {}, env, cache, problems);
    bytes = heap_bytes() - before;
    benchmark::DoNotOptimize(index);
  }
  state.counters["index_MiB"] = static_cast<double>(bytes) / (1024 * 1024);
  state.counters["bytes_per_consumer"] = static_cast<double>(bytes) / static_cast<double>(state.range(0));
}
BENCHMARK(BM_BuildIndex)->Arg(10)->Arg(100000)->Unit(benchmark::kMillisecond)->Iterations(3);

void BM_KeyLookup(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  BuildEnv env;
  PluginCache cache;
  std::vector<std::string> problems;
  auto index = ConsumerIndex::build(consumers(n), {}, env, cache, problems);
  std::vector<std::string> keys;
  for (size_t i = 0; i < 1024; ++i) keys.push_back(key_of((i * 104729) % n));
  size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(index->find_key(keys[i++ & 1023]));
  }
}
BENCHMARK(BM_KeyLookup)->Arg(10)->Arg(100000);

// A delta changing one consumer's key, at N consumers: the overlay built over the whole index.
void BM_OneConsumerDelta(benchmark::State& state) {
  const size_t n = static_cast<size_t>(state.range(0));
  BuildEnv env;
  PluginCache cache;
  std::vector<std::string> problems;
  auto whole = ConsumerIndex::build(consumers(n), {}, env, cache, problems);
  auto changed = consumers(1);
  changed[0].username = "user0";
  for (auto _ : state) {
    auto layer = ConsumerIndex::layer(whole, changed, {}, {"user0"}, env, cache, problems);
    benchmark::DoNotOptimize(layer);
  }
}
BENCHMARK(BM_OneConsumerDelta)->Arg(10)->Arg(100000)->Unit(benchmark::kMicrosecond);

}  // namespace

BENCHMARK_MAIN();
