#include "status/http_series.h"

#include <cmath>
#include <cstdio>
#include <cstring>
#include <map>

namespace portico::status {

void LatencyHistogram::observe(double ms) {
  if (!(ms >= 0)) ms = 0;  // clock skew between two measurements (APISIX clamps too); NaN as well
  size_t i = 0;
  while (i < kBoundsMs.size() && ms > kBoundsMs[i]) ++i;
  buckets[i].add();
  sum_us.add(static_cast<uint64_t>(std::llround(ms * 1000)));
}

uint64_t LatencyHistogram::count() const {
  uint64_t n = 0;
  for (const Counter& b : buckets) n += b.get();
  return n;
}

namespace {

// Length-prefixed, so that no label value can make two different tuples share a key.
void append_field(std::string& key, std::string_view value) {
  const uint32_t n = static_cast<uint32_t>(value.size());
  char len[sizeof n];
  std::memcpy(len, &n, sizeof n);
  key.append(len, sizeof n);
  key.append(value);
}

void append_latency_key(std::string& key, const HttpLabels& l) {
  append_field(key, l.route);
  append_field(key, l.service);
  append_field(key, l.consumer);
  append_field(key, l.node);
}

}  // namespace

HttpSeriesTable::HttpSeriesTable(size_t max_series)
    : max_series_(max_series),
      status_slots_(new StatusSeries*[max_series + 1]),
      latency_slots_(new LatencySeries*[max_series + 1]) {
  key_.reserve(256);
  overflow_.latency = &overflow_latency_;
  status_slots_[0] = &overflow_;
  latency_slots_[0] = &overflow_latency_;
  status_n_.store(1, std::memory_order_release);
  latency_n_.store(1, std::memory_order_release);
}

HttpSeriesTable::~HttpSeriesTable() = default;

void HttpSeriesTable::record(const HttpLabels& labels, const HttpObservation& o) {
  StatusSeries* s = find_or_add(labels);
  s->requests.add();
  LatencySeries& lat = *s->latency;
  lat.request.observe(o.request_ms);
  if (o.upstream_ms >= 0) lat.upstream.observe(o.upstream_ms);
  lat.apisix.observe(o.apisix_ms);
  lat.ingress.add(o.ingress_bytes);
  lat.egress.add(o.egress_bytes);
}

StatusSeries* HttpSeriesTable::find_or_add(const HttpLabels& l) {
  key_.clear();
  const int32_t code = l.code;
  char code_bytes[sizeof code];
  std::memcpy(code_bytes, &code, sizeof code);
  key_.append(code_bytes, sizeof code);
  append_field(key_, l.matched_uri);
  append_field(key_, l.matched_host);
  append_latency_key(key_, l);
  auto it = status_index_.find(key_);
  if (it != status_index_.end()) return it->second.get();

  const size_t n = status_n_.load(std::memory_order_relaxed);
  if (n > max_series_) {  // slot 0 is the overflow series: max_series_ others are there already
    dropped_.add();
    return &overflow_;
  }
  auto series = std::make_unique<StatusSeries>();
  series->code = l.code;
  series->route = l.route;
  series->matched_uri = l.matched_uri;
  series->matched_host = l.matched_host;
  series->service = l.service;
  series->consumer = l.consumer;
  series->node = l.node;
  series->latency = latency_for(l);
  StatusSeries* out = series.get();
  status_index_.emplace(key_, std::move(series));
  status_slots_[n] = out;
  status_n_.store(n + 1, std::memory_order_release);
  return out;
}

LatencySeries* HttpSeriesTable::latency_for(const HttpLabels& l) {
  std::string key;
  append_latency_key(key, l);
  auto it = latency_index_.find(key);
  if (it != latency_index_.end()) return it->second.get();
  // At most one latency series per status series, so the slots cannot run out before the status ones do.
  auto series = std::make_unique<LatencySeries>();
  series->route = l.route;
  series->service = l.service;
  series->consumer = l.consumer;
  series->node = l.node;
  LatencySeries* out = series.get();
  latency_index_.emplace(std::move(key), std::move(series));
  const size_t n = latency_n_.load(std::memory_order_relaxed);
  latency_slots_[n] = out;
  latency_n_.store(n + 1, std::memory_order_release);
  return out;
}

namespace {

void append_label(std::string& out, const char* name, std::string_view value, bool first = false) {
  if (!first) out += ',';
  out += name;
  out += "=\"";
  append_label_value(out, value);
  out += '"';
}

std::string latency_labels(const LatencySeries& s) {
  std::string out;
  append_label(out, "route", s.route, true);
  append_label(out, "service", s.service);
  append_label(out, "consumer", s.consumer);
  append_label(out, "node", s.node);
  return out;
}

std::string status_labels(const StatusSeries& s) {
  std::string out;
  append_label(out, "code", s.code != 0 ? std::to_string(s.code) : std::string(), true);
  append_label(out, "route", s.route);
  append_label(out, "matched_uri", s.matched_uri);
  append_label(out, "matched_host", s.matched_host);
  append_label(out, "service", s.service);
  append_label(out, "consumer", s.consumer);
  append_label(out, "node", s.node);
  return out;
}

struct HistogramSum {
  std::array<uint64_t, LatencyHistogram::kBoundsMs.size() + 1> buckets{};
  uint64_t sum_us = 0;
  uint64_t count = 0;
  void add(const LatencyHistogram& h) {
    for (size_t i = 0; i < buckets.size(); ++i) {
      const uint64_t n = h.buckets[i].get();
      buckets[i] += n;
      count += n;
    }
    sum_us += h.sum_us.get();
  }
};

struct LatencySum {
  HistogramSum by_type[3];  // request, upstream, apisix
  uint64_t ingress = 0, egress = 0;
};

void append_sample(std::string& out, const char* name, std::string_view labels, uint64_t value) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "} %llu\n", static_cast<unsigned long long>(value));
  out += name;
  out += '{';
  out += labels;
  out += buf;
}

}  // namespace

void render_http_series(std::string& out, std::span<const HttpSeriesTable* const> tables) {
  std::map<std::string, uint64_t> status;
  std::map<std::string, LatencySum> latency;
  uint64_t dropped = 0;
  for (const HttpSeriesTable* t : tables) {
    dropped += t->dropped();
    for (size_t i = 0, n = t->status_count(); i < n; ++i) {
      const StatusSeries& s = t->status(i);
      if (uint64_t v = s.requests.get(); v != 0) status[status_labels(s)] += v;
    }
    for (size_t i = 0, n = t->latency_count(); i < n; ++i) {
      const LatencySeries& s = t->latency(i);
      if (s.request.count() == 0) continue;  // the overflow series before any overflow
      LatencySum& sum = latency[latency_labels(s)];
      sum.by_type[0].add(s.request);
      sum.by_type[1].add(s.upstream);
      sum.by_type[2].add(s.apisix);
      sum.ingress += s.ingress.get();
      sum.egress += s.egress.get();
    }
  }

  if (!status.empty()) {
    out += "# HELP portico_http_status HTTP status codes per service in Portico\n";
    out += "# TYPE portico_http_status counter\n";
    for (const auto& [labels, v] : status) append_sample(out, "portico_http_status", labels, v);
  }
  if (!latency.empty()) {
    out += "# HELP portico_http_latency HTTP request latency in milliseconds per service in Portico\n";
    out += "# TYPE portico_http_latency histogram\n";
    static const char* kTypes[] = {"request", "upstream", "apisix"};
    std::string labels;
    char buf[96];
    for (size_t type = 0; type < 3; ++type) {
      for (const auto& [tail, sum] : latency) {
        const HistogramSum& h = sum.by_type[type];
        if (h.count == 0) continue;  // no upstream exchange yet: APISIX has no such series either
        labels = "type=\"";
        labels += kTypes[type];
        labels += "\",";
        labels += tail;
        uint64_t cumulative = 0;
        for (size_t i = 0; i < h.buckets.size(); ++i) {
          cumulative += h.buckets[i];
          if (i < LatencyHistogram::kBoundsMs.size()) {
            std::snprintf(buf, sizeof buf, ",le=\"%g\"", LatencyHistogram::kBoundsMs[i]);
          } else {
            std::snprintf(buf, sizeof buf, ",le=\"+Inf\"");
          }
          append_sample(out, "portico_http_latency_bucket", labels + buf, cumulative);
        }
        std::snprintf(buf, sizeof buf, "} %.3f\n", static_cast<double>(h.sum_us) / 1000);
        out += "portico_http_latency_sum{";
        out += labels;
        out += buf;
        append_sample(out, "portico_http_latency_count", labels, h.count);
      }
    }
    out += "# HELP portico_bandwidth Total bandwidth in bytes consumed per service in Portico\n";
    out += "# TYPE portico_bandwidth counter\n";
    for (const char* type : {"ingress", "egress"}) {
      for (const auto& [tail, sum] : latency) {
        labels = "type=\"";
        labels += type;
        labels += "\",";
        labels += tail;
        append_sample(out, "portico_bandwidth", labels, type[0] == 'i' ? sum.ingress : sum.egress);
      }
    }
  }
  out +=
      "# HELP portico_http_series_dropped_total Requests counted in the overflow series (all labels empty) "
      "because a worker had reached its limit of label sets.\n";
  out += "# TYPE portico_http_series_dropped_total counter\n";
  char buf[64];
  std::snprintf(buf, sizeof buf, "portico_http_series_dropped_total %llu\n",
                static_cast<unsigned long long>(dropped));
  out += buf;
}

}  // namespace portico::status
