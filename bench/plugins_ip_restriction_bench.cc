// ip-restriction's lookup (plugins/ip_set.h) against a scan of the blocks, for lists of 10 to 10,000 random
// IPv4 /16../32 blocks; the client is not in the list (the whole list is looked at: a whitelist's refusal, a
// blacklist's pass).
//
//   build/bench/plugins_ip_restriction_bench
#include <benchmark/benchmark.h>

#include <random>
#include <string>
#include <vector>

#include "plugins/ip_set.h"

namespace {

using portico::plugins::IpSet;
using portico::router::Cidr;
using portico::router::IpAddress;

std::vector<Cidr> blocks(size_t n) {
  std::mt19937 rng(7);
  std::vector<Cidr> out;
  while (out.size() < n) {
    // 10.0.0.0/8 stays free for the probes.
    const uint32_t a = 11 + rng() % 200, b = rng() % 256, c = rng() % 256, d = rng() % 256;
    const std::string text = std::to_string(a) + "." + std::to_string(b) + "." + std::to_string(c) + "." +
                             std::to_string(d) + "/" + std::to_string(16 + rng() % 17);
    Cidr cidr;
    if (Cidr::parse(text, cidr)) out.push_back(cidr);
  }
  return out;
}

IpAddress probe() {
  IpAddress ip;
  IpAddress::parse("10.1.2.3", ip);
  return ip;
}

void BM_IpSet(benchmark::State& state) {
  const std::vector<Cidr> list = blocks(static_cast<size_t>(state.range(0)));
  const IpSet set(list);
  const IpAddress ip = probe();
  for (auto _ : state) benchmark::DoNotOptimize(set.contains(ip));
}
BENCHMARK(BM_IpSet)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);

void BM_LinearScan(benchmark::State& state) {
  const std::vector<Cidr> list = blocks(static_cast<size_t>(state.range(0)));
  const IpAddress ip = probe();
  for (auto _ : state) {
    bool in = false;
    for (const Cidr& c : list) in = in || c.contains(ip);
    benchmark::DoNotOptimize(in);
  }
}
BENCHMARK(BM_LinearScan)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);

}  // namespace

BENCHMARK_MAIN();
