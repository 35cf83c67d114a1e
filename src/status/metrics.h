// Process metrics in Prometheus form. Each worker owns a WorkerMetrics block and is its only writer: counters
// are relaxed atomics updated with a plain load+store (no locked instruction, no shared cache line on the
// request path); the scraper reads them from the status thread. Route counters live in fixed blocks that are
// allocated, for every worker at once, by the snapshot builder before a snapshot naming the route is
// published, so a worker never allocates or resizes anything while counting. The prometheus plugin's
// labelled series live in one HttpSeriesTable per worker (http_series.h), owned here too.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace portico::status {

class HttpSeriesTable;

// Appends `value` escaped for a label value of the text exposition format: backslash, double quote and line
// feed become \\, \" and \n; every other byte is kept (label values come from the config, valid UTF-8).
void append_label_value(std::string& out, std::string_view value);

// A counter with one writer thread and any number of reader threads.
struct Counter {
  std::atomic<uint64_t> value{0};
  void add(uint64_t n = 1) {
    value.store(value.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  void sub(uint64_t n = 1) {
    value.store(value.load(std::memory_order_relaxed) - n, std::memory_order_relaxed);
  }
  uint64_t get() const { return value.load(std::memory_order_relaxed); }
};

// Latency histogram with fixed buckets (seconds): 1ms .. 10s.
struct Histogram {
  static constexpr std::array<double, 13> kBounds = {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                                                     0.25,  0.5,    1,     2.5,  5,     10};
  std::array<Counter, kBounds.size() + 1> buckets;  // last = +Inf
  Counter sum_micros;
  Counter count;
  void observe(double seconds);
};

// Requests of one route by status class: [0]=1xx .. [4]=5xx.
struct RouteCounters {
  std::array<Counter, 5> by_class;
};

constexpr size_t kRouteBlockSize = 1024;
constexpr size_t kMaxRouteBlocks = 1024;  // up to ~1M distinct route ids per process lifetime

struct alignas(64) WorkerMetrics {
  Counter connections_open;  // gauge: inc on accept, dec on close
  Counter connections_total;
  Counter upstream_connect_errors;
  Counter upstream_timeouts;
  Counter upstream_retries;
  Counter bad_requests;            // rejected by the parser (4xx before routing)
  Counter tls_handshakes;          // completed on the TLS listener
  Counter tls_handshake_failures;  // failed or timed out (alert, unknown SNI, client certificate, ...)
  Counter tls_resumed;             // of tls_handshakes: resumed from a session ticket
  Counter http2_connections;       // of connections_total: spoke HTTP/2 (ALPN h2 or the h2c preface)
  Counter http2_streams;           // request streams handed to a session (each also counts as a request)
  Counter http2_errors;            // connections ended by a GOAWAY with an error code (abuse, protocol error)
  Histogram request_duration;
  Histogram upstream_duration;
  std::array<std::atomic<RouteCounters*>, kMaxRouteBlocks> route_blocks{};

  // Worker thread only. `slot` must come from Metrics::route_slot (so its block exists).
  RouteCounters& route(uint32_t slot) {
    return route_blocks[slot / kRouteBlockSize].load(std::memory_order_relaxed)[slot % kRouteBlockSize];
  }
};

// Owner of all WorkerMetrics plus process-level gauges. Created before the workers, outlives them.
class Metrics {
 public:
  explicit Metrics(size_t workers);
  ~Metrics();

  WorkerMetrics& worker(size_t index) { return *workers_[index]; }
  size_t worker_count() const { return workers_.size(); }
  // The prometheus plugin's series of worker `index`; written by that worker only.
  HttpSeriesTable& http_series(size_t index) { return *http_[index]; }

  // Snapshot builder thread: the counter slot for a route id (stable for the process lifetime, so counters
  // stay monotonic across reloads). Slot 0 (route "") counts requests that matched no route, and also takes
  // routes beyond the slot space.
  uint32_t route_slot(const std::string& route_id);

  // Config-apply gauges, set by the builder thread.
  std::atomic<uint64_t> config_generation{0};
  std::atomic<uint64_t> config_routes{0};
  std::atomic<uint64_t> config_apply_failures{0};
  std::atomic<double> config_last_success{0};
  std::atomic<double> config_last_failure{0};

  // Prometheus text exposition of everything above, plus `extra` appended verbatim. Status thread.
  std::string render(const std::string& extra) const;

 private:
  std::vector<std::unique_ptr<WorkerMetrics>> workers_;
  std::vector<std::unique_ptr<HttpSeriesTable>> http_;  // by worker
  mutable std::mutex slots_mu_;
  std::unordered_map<std::string, uint32_t> slot_of_;
  std::vector<std::string> route_ids_;                    // by slot
  std::vector<std::unique_ptr<RouteCounters[]>> blocks_;  // owned storage, blocks_[b] has worker_count*block
};

}  // namespace portico::status
