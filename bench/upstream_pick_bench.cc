// Cost of one balancer round trip on the proxy path: pick + on_request_start + on_request_end, for each
// balancer type, with 3 and 100 nodes (all healthy, weights 1..5). chash hashes a different key each time.
#include <benchmark/benchmark.h>

#include <string>
#include <vector>

#include "upstream/balancer.h"

namespace {

using portico::config::LbType;
using portico::upstream::Balancer;
using portico::upstream::make_balancer;
using portico::upstream::NodeHealth;
using portico::upstream::NodeRuntime;

std::vector<NodeRuntime> make_nodes(int n) {
  std::vector<NodeRuntime> nodes(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    auto& node = nodes[static_cast<size_t>(i)];
    node.spec.host = "10.0." + std::to_string(i / 256) + "." + std::to_string(i % 256);
    node.spec.port = 8080;
    node.spec.weight = 1 + i % 5;
    node.address = node.spec.host;
    node.pool_key = node.spec.host + ":8080";
    node.host_port = node.pool_key;
    node.health = std::make_shared<NodeHealth>();
  }
  return nodes;
}

void run(benchmark::State& state, LbType type, bool retry) {
  auto nodes = make_nodes(static_cast<int>(state.range(0)));
  portico::config::Upstream spec;
  spec.type = type;
  auto balancer = make_balancer(spec, nodes);
  std::vector<std::string> keys;
  for (int k = 0; k < 1024; ++k)
    keys.push_back("192.168." + std::to_string(k / 256) + "." + std::to_string(k % 256));
  size_t k = 0;
  int tried[1] = {-1};
  for (auto _ : state) {
    std::string_view key = keys[k++ & 1023];
    int i = balancer->pick(key, {});
    if (retry) {  // a second try that must avoid the first node
      tried[0] = i;
      i = balancer->pick(key, tried);
    }
    balancer->on_request_start(i);
    balancer->on_request_end(i, 0.002, false);
    benchmark::DoNotOptimize(i);
  }
}

void BM_RoundRobin(benchmark::State& s) {
  run(s, LbType::roundrobin, false);
}
void BM_Chash(benchmark::State& s) {
  run(s, LbType::chash, false);
}
void BM_LeastConn(benchmark::State& s) {
  run(s, LbType::least_conn, false);
}
void BM_Ewma(benchmark::State& s) {
  run(s, LbType::ewma, false);
}
void BM_RoundRobinRetry(benchmark::State& s) {
  run(s, LbType::roundrobin, true);
}
void BM_ChashRetry(benchmark::State& s) {
  run(s, LbType::chash, true);
}
void BM_LeastConnRetry(benchmark::State& s) {
  run(s, LbType::least_conn, true);
}
void BM_EwmaRetry(benchmark::State& s) {
  run(s, LbType::ewma, true);
}

BENCHMARK(BM_RoundRobin)->Arg(3)->Arg(100);
BENCHMARK(BM_Chash)->Arg(3)->Arg(100);
BENCHMARK(BM_LeastConn)->Arg(3)->Arg(100);
BENCHMARK(BM_Ewma)->Arg(3)->Arg(100);
BENCHMARK(BM_RoundRobinRetry)->Arg(3)->Arg(100);
BENCHMARK(BM_ChashRetry)->Arg(3)->Arg(100);
BENCHMARK(BM_LeastConnRetry)->Arg(3)->Arg(100);
BENCHMARK(BM_EwmaRetry)->Arg(3)->Arg(100);

}  // namespace

BENCHMARK_MAIN();
