#include "status/metrics.h"

#include <cstdio>

#include "status/http_series.h"

namespace portico::status {

void Histogram::observe(double seconds) {
  size_t i = 0;
  while (i < kBounds.size() && seconds > kBounds[i]) ++i;
  buckets[i].add();
  sum_micros.add(static_cast<uint64_t>(seconds * 1e6));
  count.add();
}

Metrics::Metrics(size_t workers) {
  for (size_t i = 0; i < workers; ++i) {
    workers_.push_back(std::make_unique<WorkerMetrics>());
    http_.push_back(std::make_unique<HttpSeriesTable>());
  }
  route_slot("");
}

Metrics::~Metrics() = default;

uint32_t Metrics::route_slot(const std::string& route_id) {
  std::lock_guard lock(slots_mu_);
  auto it = slot_of_.find(route_id);
  if (it != slot_of_.end()) return it->second;
  uint32_t slot = static_cast<uint32_t>(route_ids_.size());
  size_t block = slot / kRouteBlockSize;
  if (block >= kMaxRouteBlocks) return 0;
  if (block == blocks_.size()) {
    // One allocation holds this block for every worker; published before any snapshot uses the slot.
    blocks_.push_back(std::make_unique<RouteCounters[]>(kRouteBlockSize * workers_.size()));
    for (size_t w = 0; w < workers_.size(); ++w) {
      workers_[w]->route_blocks[block].store(blocks_.back().get() + w * kRouteBlockSize,
                                             std::memory_order_release);
    }
  }
  slot_of_.emplace(route_id, slot);
  route_ids_.push_back(route_id);
  return slot;
}

void append_label_value(std::string& out, std::string_view value) {
  for (char c : value) {
    if (c == '\\' || c == '"') out.push_back('\\');
    if (c == '\n') {
      out += "\\n";
      continue;
    }
    out.push_back(c);
  }
}

namespace {

void append_line(std::string& out, const char* name, double value) {
  char buf[64];
  std::snprintf(buf, sizeof buf, " %.17g\n", value);
  out += name;
  out += buf;
}

template <typename Get>
uint64_t sum_workers(const std::vector<std::unique_ptr<WorkerMetrics>>& workers, Get get) {
  uint64_t total = 0;
  for (const auto& w : workers) total += get(*w);
  return total;
}

void render_histogram(std::string& out, const char* name, const char* help,
                      const std::vector<std::unique_ptr<WorkerMetrics>>& workers,
                      const Histogram WorkerMetrics::*member) {
  out += "# HELP ";
  out += name;
  out += " ";
  out += help;
  out += "\n# TYPE ";
  out += name;
  out += " histogram\n";
  uint64_t cumulative = 0;
  char buf[160];
  for (size_t i = 0; i <= Histogram::kBounds.size(); ++i) {
    cumulative += sum_workers(workers, [&](const WorkerMetrics& w) { return (w.*member).buckets[i].get(); });
    if (i < Histogram::kBounds.size()) {
      std::snprintf(buf, sizeof buf, "%s_bucket{le=\"%g\"} %llu\n", name, Histogram::kBounds[i],
                    static_cast<unsigned long long>(cumulative));
    } else {
      std::snprintf(buf, sizeof buf, "%s_bucket{le=\"+Inf\"} %llu\n", name,
                    static_cast<unsigned long long>(cumulative));
    }
    out += buf;
  }
  uint64_t sum = sum_workers(workers, [&](const WorkerMetrics& w) { return (w.*member).sum_micros.get(); });
  uint64_t count = sum_workers(workers, [&](const WorkerMetrics& w) { return (w.*member).count.get(); });
  std::snprintf(buf, sizeof buf, "%s_sum %.6f\n%s_count %llu\n", name, static_cast<double>(sum) / 1e6, name,
                static_cast<unsigned long long>(count));
  out += buf;
}

void render_counter(std::string& out, const char* name, const char* type, const char* help, uint64_t value) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name,
                static_cast<unsigned long long>(value));
  out += buf;
}

}  // namespace

std::string Metrics::render(const std::string& extra) const {
  std::string out;
  out.reserve(4096);
  static const char* kClass[] = {"1xx", "2xx", "3xx", "4xx", "5xx"};
  out += "# HELP portico_http_requests_total Requests answered, by route id and status class.\n";
  out += "# TYPE portico_http_requests_total counter\n";
  char buf[64];
  auto emit = [&](const std::string& route, size_t cls, uint64_t v) {
    out += "portico_http_requests_total{route=\"";
    append_label_value(out, route);
    out += "\",code=\"";
    out += kClass[cls];
    std::snprintf(buf, sizeof buf, "\"} %llu\n", static_cast<unsigned long long>(v));
    out += buf;
  };
  {
    std::lock_guard lock(slots_mu_);
    for (uint32_t slot = 0; slot < route_ids_.size(); ++slot) {
      for (size_t c = 0; c < 5; ++c) {
        uint64_t v = 0;
        for (const auto& w : workers_) {
          RouteCounters* block = w->route_blocks[slot / kRouteBlockSize].load(std::memory_order_acquire);
          if (block) v += block[slot % kRouteBlockSize].by_class[c].get();
        }
        if (v) emit(route_ids_[slot], c, v);
      }
    }
  }
  render_histogram(out, "portico_http_request_duration_seconds",
                   "Time from the request head to the last response byte.", workers_,
                   &WorkerMetrics::request_duration);
  render_histogram(out, "portico_upstream_duration_seconds",
                   "Time from sending the request upstream to the end of its response.", workers_,
                   &WorkerMetrics::upstream_duration);
  render_counter(
      out, "portico_upstream_connect_errors_total", "counter", "Failed connects to upstream nodes.",
      sum_workers(workers_, [](const WorkerMetrics& w) { return w.upstream_connect_errors.get(); }));
  render_counter(out, "portico_upstream_timeouts_total", "counter", "Upstream connect/send/read timeouts.",
                 sum_workers(workers_, [](const WorkerMetrics& w) { return w.upstream_timeouts.get(); }));
  render_counter(out, "portico_upstream_retries_total", "counter", "Requests retried on another node.",
                 sum_workers(workers_, [](const WorkerMetrics& w) { return w.upstream_retries.get(); }));
  render_counter(out, "portico_http_bad_requests_total", "counter",
                 "Requests rejected by the HTTP parser before routing.",
                 sum_workers(workers_, [](const WorkerMetrics& w) { return w.bad_requests.get(); }));
  render_counter(out, "portico_tls_handshakes_total", "counter",
                 "TLS handshakes completed on the TLS listener.",
                 sum_workers(workers_, [](const WorkerMetrics& w) { return w.tls_handshakes.get(); }));
  render_counter(
      out, "portico_tls_handshake_failures_total", "counter", "TLS handshakes that failed or timed out.",
      sum_workers(workers_, [](const WorkerMetrics& w) { return w.tls_handshake_failures.get(); }));
  render_counter(out, "portico_tls_sessions_resumed_total", "counter",
                 "TLS handshakes that resumed a session (ticket).",
                 sum_workers(workers_, [](const WorkerMetrics& w) { return w.tls_resumed.get(); }));
  render_counter(out, "portico_http2_connections_total", "counter",
                 "Client connections that spoke HTTP/2 (ALPN h2 or h2c prior knowledge).",
                 sum_workers(workers_, [](const WorkerMetrics& w) { return w.http2_connections.get(); }));
  render_counter(out, "portico_http2_streams_total", "counter", "HTTP/2 request streams served.",
                 sum_workers(workers_, [](const WorkerMetrics& w) { return w.http2_streams.get(); }));
  render_counter(
      out, "portico_http2_connection_errors_total", "counter",
      "HTTP/2 connections ended by a GOAWAY with an error (ENHANCE_YOUR_CALM, PROTOCOL_ERROR, ...).",
      sum_workers(workers_, [](const WorkerMetrics& w) { return w.http2_errors.get(); }));
  render_counter(out, "portico_connections_open", "gauge", "Client connections open now.",
                 sum_workers(workers_, [](const WorkerMetrics& w) { return w.connections_open.get(); }));
  render_counter(out, "portico_connections_total", "counter", "Client connections accepted.",
                 sum_workers(workers_, [](const WorkerMetrics& w) { return w.connections_total.get(); }));
  render_counter(out, "portico_config_generation", "gauge", "Generation of the config being served.",
                 config_generation.load());
  render_counter(out, "portico_config_routes", "gauge", "Routes in the config being served.",
                 config_routes.load());
  render_counter(out, "portico_config_apply_failures_total", "counter",
                 "Config files or updates rejected (the last good config kept serving).",
                 config_apply_failures.load());
  out += "# HELP portico_config_last_success_timestamp_seconds Unix time of the last successful apply.\n";
  out += "# TYPE portico_config_last_success_timestamp_seconds gauge\n";
  append_line(out, "portico_config_last_success_timestamp_seconds", config_last_success.load());
  out += "# HELP portico_config_last_failure_timestamp_seconds Unix time of the last rejected apply.\n";
  out += "# TYPE portico_config_last_failure_timestamp_seconds gauge\n";
  append_line(out, "portico_config_last_failure_timestamp_seconds", config_last_failure.load());
  std::vector<const HttpSeriesTable*> http;
  for (const auto& t : http_) http.push_back(t.get());
  render_http_series(out, http);
  out += extra;
  return out;
}

}  // namespace portico::status
