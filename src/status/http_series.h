// The labelled HTTP metrics of the prometheus plugin (APISIX's apisix_http_status, apisix_http_latency and
// apisix_bandwidth, here named portico_http_status, portico_http_latency and portico_bandwidth): one series
// per distinct tuple of label values, kept in one HttpSeriesTable per worker.
//
// Threads: a table is written by its worker only (the plugin's log phase). A tuple seen before costs one hash
// probe over a key built in a reused buffer and a few relaxed counter stores: no lock, no allocation. A new
// tuple allocates its series once, then publishes it (release store of the series count) so the scraper
// (status thread, render_http_series) can read it: labels are immutable once published, counters are relaxed
// atomics. The scraper sums the series of every worker that have equal labels.
//
// Bounds: a table holds at most `max_series` status series (and as many latency series at most: each is
// created along with a status series). Once full, a request with a new tuple is counted in the overflow
// series, whose labels are all empty, and in dropped(), so a client cannot grow memory by varying what it
// sends. Series are never removed: those of a route gone from the config stay until a restart (as in APISIX).
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>

#include "status/metrics.h"

namespace portico::status {

// The label values of one request (APISIX's, `node` being the IP of the upstream node that answered).
struct HttpLabels {
  int code = 0;  // the status sent to the client; 0 renders as ""
  std::string_view route;
  std::string_view matched_uri;
  std::string_view matched_host;
  std::string_view service;
  std::string_view consumer;
  std::string_view node;
};

// What one request adds to its series. Latencies in milliseconds, as APISIX reports them.
struct HttpObservation {
  double request_ms = 0;
  double upstream_ms = -1;  // < 0: no upstream exchange, nothing observed for type="upstream"
  double apisix_ms = 0;
  uint64_t ingress_bytes = 0;  // request line, header and body bytes received
  uint64_t egress_bytes = 0;   // bytes sent to the client
};

// A latency histogram with APISIX's default buckets (milliseconds, 1 ms .. 60 s).
struct LatencyHistogram {
  static constexpr std::array<double, 15> kBoundsMs = {1,   2,    5,    10,   20,    50,    100,  200,
                                                       500, 1000, 2000, 5000, 10000, 30000, 60000};
  // Per bucket, not cumulative; last = +Inf. No separate count: the scraper adds the buckets up, so that
  // _count always equals the +Inf bucket even while the worker is writing.
  std::array<Counter, kBoundsMs.size() + 1> buckets;
  Counter sum_us;  // sum of the observations, microseconds
  void observe(double ms);
  uint64_t count() const;
};

// portico_http_latency and portico_bandwidth of one (route, service, consumer, node).
struct LatencySeries {
  std::string route, service, consumer, node;
  LatencyHistogram request, upstream, apisix;
  Counter ingress, egress;
};

// portico_http_status of one (code, route, matched_uri, matched_host, service, consumer, node).
struct StatusSeries {
  int code = 0;
  std::string route, matched_uri, matched_host, service, consumer, node;
  Counter requests;
  LatencySeries* latency = nullptr;  // the series of the same route, service, consumer and node
};

class HttpSeriesTable {
 public:
  static constexpr size_t kDefaultMaxSeries = 10000;

  explicit HttpSeriesTable(size_t max_series = kDefaultMaxSeries);
  ~HttpSeriesTable();
  HttpSeriesTable(const HttpSeriesTable&) = delete;
  HttpSeriesTable& operator=(const HttpSeriesTable&) = delete;

  // Worker thread only.
  void record(const HttpLabels& labels, const HttpObservation& observation);

  // Any thread. Series published so far; index 0 is the overflow series (all labels empty), which counts
  // nothing until the table is full.
  size_t status_count() const { return status_n_.load(std::memory_order_acquire); }
  const StatusSeries& status(size_t i) const { return *status_slots_[i]; }
  size_t latency_count() const { return latency_n_.load(std::memory_order_acquire); }
  const LatencySeries& latency(size_t i) const { return *latency_slots_[i]; }
  // Requests counted in the overflow series because the table was full.
  uint64_t dropped() const { return dropped_.get(); }
  size_t max_series() const { return max_series_; }

 private:
  StatusSeries* find_or_add(const HttpLabels& labels);
  LatencySeries* latency_for(const HttpLabels& labels);

  size_t max_series_;
  std::string key_;  // the lookup key, rebuilt per request in the same buffer
  std::unordered_map<std::string, std::unique_ptr<StatusSeries>> status_index_;
  std::unordered_map<std::string, std::unique_ptr<LatencySeries>> latency_index_;
  // Published pointers, for the scraper: [0, count) are set and never change.
  std::unique_ptr<StatusSeries*[]> status_slots_;
  std::unique_ptr<LatencySeries*[]> latency_slots_;
  std::atomic<size_t> status_n_{0};
  std::atomic<size_t> latency_n_{0};
  StatusSeries overflow_;
  LatencySeries overflow_latency_;
  Counter dropped_;
};

// Appends the text exposition of the tables' series (summed over the tables, sorted by labels), under
// portico_http_status, portico_http_latency (_bucket, _sum, _count) and portico_bandwidth, then
// portico_http_series_dropped_total. Families without a sample are left out, the dropped counter is not.
// Status thread.
void render_http_series(std::string& out, std::span<const HttpSeriesTable* const> tables);

}  // namespace portico::status
