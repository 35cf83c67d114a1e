// Router::match cost at 10 / 10k / 100k routes and Router::build time and memory at 100k routes.
//
// Route shapes (deterministic pseudo-random): exact "/svcN/v1/resN", parameter "/svcN/v1/resN/:id",
// "/svcN/v2/resN/:id/items", prefix "/svcN/static/resN/*", mixed "/svcN/files/resN/:bucket/*"; about 40% of
// the routes carry an exact host (pool of n/50 hosts), 10% a wildcard host, the rest none; half restrict
// methods; 2% have a header var. Hits rotate through a pre-generated list of requests for random routes
// (each checked to match its route before timing), so caches see a realistic spread; the "Cold" variant
// rotates through 100k distinct requests.
#include <malloc.h>

#include <algorithm>
#include <cstdio>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include <benchmark/benchmark.h>

#include "config/model.h"
#include "http/message.h"
#include "router/router.h"

namespace portico::router {
namespace {

struct Workload {
  config::Config config;
  // Request strings live here; MatchRequest views point into them.
  struct Req {
    std::string path, host, method;
    int route;
  };
  std::vector<Req> reqs;
};

std::string pick_host(std::mt19937& rng, size_t pool) {
  return "api" + std::to_string(rng() % pool) + ".example.com";
}

config::Config make_routes(size_t n, uint32_t seed) {
  std::mt19937 rng(seed);
  config::Config c;
  c.routes.reserve(n);
  size_t host_pool = std::max<size_t>(1, n / 50);
  size_t svc_pool = std::max<size_t>(1, n / 200);
  for (size_t i = 0; i < n; ++i) {
    config::Route r;
    r.id = std::to_string(i);
    std::string svc = "/svc" + std::to_string(rng() % svc_pool);
    std::string res = "res" + std::to_string(i);
    switch (rng() % 10) {
      case 0:
      case 1:
      case 2:
      case 3:
        r.uris = {svc + "/v1/" + res};
        break;
      case 4:
      case 5:
        r.uris = {svc + "/v1/" + res + "/:id"};
        break;
      case 6:
        r.uris = {svc + "/v2/" + res + "/:id/items"};
        break;
      case 7:
      case 8:
        r.uris = {svc + "/static/" + res + "/*"};
        break;
      default:
        r.uris = {svc + "/files/" + res + "/:bucket/*"};
        break;
    }
    uint32_t h = rng() % 10;
    if (h < 4) {
      r.hosts = {pick_host(rng, host_pool)};
    } else if (h == 4) {
      r.hosts = {"*.t" + std::to_string(rng() % host_pool) + ".example.net"};
    }
    if (rng() % 2 == 0) r.methods = {"GET", "HEAD"};
    if (rng() % 50 == 0) {
      config::VarExpr v;
      v.var = "http_x_tenant";
      v.op = config::VarExpr::Op::ne;
      v.values = {"blocked"};
      r.vars.push_back(v);
    }
    c.routes.push_back(std::move(r));
  }
  return c;
}

// A request that the route at `i` matches.
Workload::Req request_for(const config::Route& r, int i, std::mt19937& rng) {
  Workload::Req q;
  q.route = i;
  std::string u = r.uris[0];
  std::string path;
  for (size_t k = 0; k < u.size(); ++k) {
    if (u[k] == ':') {
      path += 'v';
      path += std::to_string(rng() % 100000);
      while (k < u.size() && u[k] != '/') ++k;
      --k;
    } else if (u[k] == '*') {
      path += "a/b/c.js";
    } else {
      path.push_back(u[k]);
    }
  }
  q.path = path;
  if (r.hosts.empty()) {
    q.host = "unrelated.example.org";
  } else if (r.hosts[0][0] == '*') {
    q.host = r.hosts[0];
    q.host[0] = 'x';  // "*.tN.example.net" -> "x.tN.example.net"
  } else {
    q.host = r.hosts[0];
  }
  q.method = "GET";
  return q;
}

struct Prepared {
  Workload w;
  std::unique_ptr<Router> router;
  std::string arena;  // the request strings back to back, as a proxy's receive buffers would be
  std::vector<MatchRequest> reqs;
  http::RequestHead head;
};

// Route indexes for the requests: uniform, or Zipf-distributed (s = 1) over a random ranking of the
// routes, which is closer to real traffic where a few routes take most requests.
std::vector<int> pick_routes(size_t routes, size_t requests, bool zipf, std::mt19937& rng) {
  std::vector<int> out;
  out.reserve(requests);
  if (!zipf) {
    for (size_t k = 0; k < requests; ++k) out.push_back(static_cast<int>(rng() % routes));
    return out;
  }
  std::vector<int> rank(routes);
  for (size_t i = 0; i < routes; ++i) rank[i] = static_cast<int>(i);
  std::shuffle(rank.begin(), rank.end(), rng);
  std::vector<double> cdf(routes);
  double sum = 0;
  for (size_t i = 0; i < routes; ++i) cdf[i] = sum += 1.0 / static_cast<double>(i + 1);
  std::uniform_real_distribution<double> u(0, sum);
  for (size_t k = 0; k < requests; ++k) {
    size_t i = static_cast<size_t>(std::lower_bound(cdf.begin(), cdf.end(), u(rng)) - cdf.begin());
    out.push_back(rank[std::min(i, routes - 1)]);
  }
  return out;
}

std::unique_ptr<Prepared> prepare(size_t routes, size_t requests, bool zipf, uint32_t seed) {
  auto p = std::make_unique<Prepared>();
  p->w.config = make_routes(routes, seed);
  std::string error;
  p->router = Router::build(p->w.config, &error);
  if (!p->router) {
    std::fprintf(stderr, "build failed: %s\n", error.c_str());
    std::abort();
  }
  std::mt19937 rng(seed + 1);
  p->w.reqs.reserve(requests);
  size_t bytes = 0;
  for (int i : pick_routes(routes, requests, zipf, rng)) {
    p->w.reqs.push_back(request_for(p->w.config.routes[i], i, rng));
    bytes += p->w.reqs.back().path.size() + p->w.reqs.back().host.size() + p->w.reqs.back().method.size();
  }
  p->arena.reserve(bytes);
  p->head.header_count = 3;
  p->head.headers[0] = {"Host", "example"};
  p->head.headers[1] = {"User-Agent", "bench/1.0"};
  p->head.headers[2] = {"Accept", "*/*"};
  IpAddress client;
  IpAddress::parse("198.51.100.23", client);
  for (const Workload::Req& q : p->w.reqs) {
    auto put = [&](const std::string& s) {
      p->arena.append(s);
      return std::string_view(p->arena.data() + p->arena.size() - s.size(), s.size());
    };
    MatchRequest m;
    m.method = http::Method::GET;
    m.method_text = put(q.method);
    m.host = put(q.host);
    m.path = put(q.path);
    m.target = m.path;
    m.head = &p->head;
    m.client = client;
    p->reqs.push_back(m);
    int got = p->router->match(m);
    // Every route's path is unique with these shapes, so the route itself must come back.
    if (got != q.route) {
      std::fprintf(stderr, "sanity: %s %s matched %d, expected %d\n", q.host.c_str(), q.path.c_str(), got,
                   q.route);
      std::abort();
    }
  }
  return p;
}

Prepared& cached(size_t routes, size_t requests, bool zipf) {
  // Only the latest workload is kept, so earlier ones do not hold memory (benchmarks run in order).
  static size_t key_routes = 0, key_requests = 0;
  static bool key_zipf = false;
  static std::unique_ptr<Prepared> p;
  if (!p || key_routes != routes || key_requests != requests || key_zipf != zipf) {
    p.reset();
    p = prepare(routes, requests, zipf, 42);
    key_routes = routes;
    key_requests = requests;
    key_zipf = zipf;
  }
  return *p;
}

void BM_MatchHit(benchmark::State& state) {
  Prepared& p =
      cached(static_cast<size_t>(state.range(0)), static_cast<size_t>(state.range(1)), state.range(2) != 0);
  size_t i = 0, n = p.reqs.size();
  for (auto _ : state) {
    benchmark::DoNotOptimize(p.router->match(p.reqs[i]));
    if (++i == n) i = 0;
  }
  state.SetItemsProcessed(state.iterations());
}
// {routes, requests rotated, 0 = uniform over the routes / 1 = Zipf}
BENCHMARK(BM_MatchHit)
    ->ArgNames({"routes", "reqs", "zipf"})
    ->Args({10, 16, 0})
    ->Args({10000, 16, 0})
    ->Args({100000, 16, 0})
    ->Args({10, 8192, 0})
    ->Args({10000, 8192, 0})
    ->Args({100000, 8192, 0})
    ->Args({100000, 100000, 0})
    ->Args({10000, 100000, 1})
    ->Args({100000, 100000, 1});

void BM_MatchMiss(benchmark::State& state) {
  Prepared& p = cached(static_cast<size_t>(state.range(0)), 8192, false);
  MatchRequest m = p.reqs[0];
  m.path = "/svc1/v1/no-such-resource/at/all";
  m.host = "api1.example.com";
  for (auto _ : state) benchmark::DoNotOptimize(p.router->match(m));
  if (p.router->match(m) != -1) state.SkipWithError("miss request matched");
}
BENCHMARK(BM_MatchMiss)->ArgName("routes")->Arg(10)->Arg(10000)->Arg(100000);

void BM_Build(benchmark::State& state) {
  config::Config c = make_routes(static_cast<size_t>(state.range(0)), 7);
  size_t before = mallinfo2().uordblks;
  size_t mem = 0;
  for (auto _ : state) {
    std::string error;
    auto r = Router::build(c, &error);
    mem = mallinfo2().uordblks - before;
    benchmark::DoNotOptimize(r.get());
  }
  state.counters["router_MB"] = static_cast<double>(mem) / (1024.0 * 1024.0);
}
BENCHMARK(BM_Build)->ArgName("routes")->Arg(10000)->Arg(100000)->Iterations(3)->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace portico::router

BENCHMARK_MAIN();
