// HttpSeriesTable and render_http_series: one series per label tuple, summed over workers, bounded (overflow
// series and dropped counter), no allocation for a tuple seen before, label values escaped, histograms whose
// count equals their +Inf bucket; and Metrics::render carrying them.
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <new>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "status/http_series.h"
#include "status/metrics.h"

namespace {
thread_local bool g_count_allocs = false;
std::atomic<long> g_allocs{0};
}  // namespace

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
void* operator new(std::size_t n) {
  if (g_count_allocs) g_allocs.fetch_add(1);
  if (void* p = std::malloc(n == 0 ? 1 : n)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}
#pragma GCC diagnostic pop

namespace portico::status {
namespace {

HttpLabels labels(int code, std::string_view route, std::string_view consumer = "") {
  HttpLabels l;
  l.code = code;
  l.route = route;
  l.matched_uri = "/r/*";
  l.matched_host = "";
  l.service = "s1";
  l.consumer = consumer;
  l.node = "127.0.0.1";
  return l;
}

HttpObservation obs(double request_ms, double upstream_ms = -1) {
  HttpObservation o;
  o.request_ms = request_ms;
  o.upstream_ms = upstream_ms;
  o.apisix_ms = upstream_ms >= 0 ? request_ms - upstream_ms : request_ms;
  o.ingress_bytes = 100;
  o.egress_bytes = 1000;
  return o;
}

std::string render(std::initializer_list<const HttpSeriesTable*> tables) {
  std::vector<const HttpSeriesTable*> v(tables);
  std::string out;
  render_http_series(out, v);
  return out;
}

// The value of the sample line starting with `prefix` (name and labels), or -1.
double sample(const std::string& text, const std::string& prefix) {
  size_t at = 0;
  while ((at = text.find(prefix, at)) != std::string::npos) {
    if (at == 0 || text[at - 1] == '\n') {
      size_t sp = text.find(' ', at + prefix.size());
      return std::stod(text.substr(sp + 1, text.find('\n', sp) - sp - 1));
    }
    at += prefix.size();
  }
  return -1;
}

const std::string kTail = R"(route="r1",service="s1",consumer="",node="127.0.0.1")";
const std::string kStatus200 =
    R"(portico_http_status{code="200",route="r1",matched_uri="/r/*",matched_host="",service="s1",consumer="",)"
    R"(node="127.0.0.1"})";

TEST(HttpSeries, CountsOneSeriesPerLabelTuple) {
  HttpSeriesTable t;
  t.record(labels(200, "r1"), obs(3));
  t.record(labels(200, "r1"), obs(4));
  t.record(labels(404, "r1"), obs(1));
  t.record(labels(200, "r1", "jack"), obs(1));
  EXPECT_EQ(t.status_count(), 1u + 3u);   // the overflow series, then three tuples
  EXPECT_EQ(t.latency_count(), 1u + 2u);  // code and matched uri/host are not latency labels

  std::string text = render({&t});
  EXPECT_EQ(sample(text, kStatus200), 2);
  EXPECT_EQ(sample(text, R"(portico_http_status{code="404",route="r1",)"), 1);
  EXPECT_EQ(sample(text, "portico_http_latency_count{type=\"request\"," + kTail + "}"), 3);
  EXPECT_EQ(sample(text, "portico_bandwidth{type=\"ingress\"," + kTail + "}"), 300);
  EXPECT_EQ(sample(text, "portico_bandwidth{type=\"egress\"," + kTail + "}"), 3000);
  EXPECT_NE(text.find("# TYPE portico_http_status counter\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE portico_http_latency histogram\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE portico_bandwidth counter\n"), std::string::npos);
  EXPECT_EQ(sample(text, "portico_http_series_dropped_total"), 0);
}

TEST(HttpSeries, LabelValuesCannotCollideThroughTheKey) {
  HttpSeriesTable t;
  HttpLabels a = labels(200, "ab");
  a.service = "";
  HttpLabels b = labels(200, "a");
  b.service = "b";
  t.record(a, obs(1));
  t.record(b, obs(1));
  EXPECT_EQ(t.status_count(), 3u);
  EXPECT_EQ(t.latency_count(), 3u);
}

TEST(HttpSeries, HistogramBucketsAreCumulativeAndCountEqualsInf) {
  HttpSeriesTable t;
  for (double ms : {0.5, 1.0, 1.5, 7.0, 70000.0}) t.record(labels(200, "r1"), obs(ms));
  std::string text = render({&t});
  auto bucket = [&](const char* le) {
    return sample(text, "portico_http_latency_bucket{type=\"request\"," + kTail + ",le=\"" + le + "\"}");
  };
  EXPECT_EQ(bucket("1"), 2);  // le is inclusive
  EXPECT_EQ(bucket("2"), 3);
  EXPECT_EQ(bucket("5"), 3);
  EXPECT_EQ(bucket("10"), 4);
  EXPECT_EQ(bucket("60000"), 4);
  EXPECT_EQ(bucket("+Inf"), 5);
  EXPECT_EQ(sample(text, "portico_http_latency_count{type=\"request\"," + kTail + "}"), 5);
  EXPECT_DOUBLE_EQ(sample(text, "portico_http_latency_sum{type=\"request\"," + kTail + "}"), 70010.0);
}

TEST(HttpSeries, UpstreamLatencyOnlyWhenThereWasAnExchange) {
  HttpSeriesTable t;
  t.record(labels(401, "r1"), obs(2));  // answered by a plugin: no upstream
  std::string text = render({&t});
  EXPECT_EQ(sample(text, "portico_http_latency_count{type=\"request\"," + kTail + "}"), 1);
  EXPECT_EQ(sample(text, "portico_http_latency_count{type=\"apisix\"," + kTail + "}"), 1);
  EXPECT_EQ(text.find("type=\"upstream\""), std::string::npos);

  t.record(labels(200, "r1"), obs(10, 8));
  text = render({&t});
  EXPECT_EQ(sample(text, "portico_http_latency_count{type=\"upstream\"," + kTail + "}"), 1);
  EXPECT_DOUBLE_EQ(sample(text, "portico_http_latency_sum{type=\"upstream\"," + kTail + "}"), 8.0);
  EXPECT_DOUBLE_EQ(sample(text, "portico_http_latency_sum{type=\"apisix\"," + kTail + "}"), 4.0);
}

TEST(HttpSeries, WorkersAreSummedByLabels) {
  HttpSeriesTable w0, w1;
  w0.record(labels(200, "r1"), obs(1));
  w1.record(labels(200, "r1"), obs(1));
  w1.record(labels(200, "r1"), obs(1));
  w1.record(labels(500, "r2"), obs(1));
  std::string text = render({&w0, &w1});
  EXPECT_EQ(sample(text, kStatus200), 3);
  EXPECT_EQ(sample(text, R"(portico_http_status{code="500",route="r2",)"), 1);
  EXPECT_EQ(sample(text, "portico_http_latency_count{type=\"request\"," + kTail + "}"), 3);
  // One line per series, not one per worker.
  EXPECT_EQ(text.find(kStatus200, text.find(kStatus200) + 1), std::string::npos);
}

TEST(HttpSeries, BoundedWithAnOverflowSeries) {
  HttpSeriesTable t(3);
  for (int code = 200; code < 210; ++code) t.record(labels(code, "r1"), obs(1));
  t.record(labels(200, "r1"), obs(1));  // known tuples keep their own series
  EXPECT_EQ(t.status_count(), 4u);
  EXPECT_EQ(t.dropped(), 7u);
  std::string text = render({&t});
  EXPECT_EQ(sample(text, kStatus200), 2);
  EXPECT_EQ(sample(text, R"(portico_http_status{code="203",)"), -1);
  EXPECT_EQ(sample(text, R"(portico_http_status{code="",route="",matched_uri="",matched_host="",service="",)"
                         R"(consumer="",node=""})"),
            7);
  EXPECT_EQ(
      sample(text, R"(portico_http_latency_count{type="request",route="",service="",consumer="",node=""})"),
      7);
  EXPECT_EQ(sample(text, "portico_http_series_dropped_total"), 7);
}

TEST(HttpSeries, NothingButTheDroppedCounterBeforeAnyRequest) {
  HttpSeriesTable t;
  std::string text = render({&t});
  EXPECT_EQ(text.find("portico_http_status"), std::string::npos);
  EXPECT_EQ(text.find("portico_http_latency"), std::string::npos);
  EXPECT_EQ(text.find("portico_bandwidth"), std::string::npos);
  EXPECT_EQ(sample(text, "portico_http_series_dropped_total"), 0);
}

TEST(HttpSeries, LabelValuesAreEscaped) {
  HttpSeriesTable t;
  HttpLabels l = labels(200, "a\"b\\c\nd");
  l.consumer = "ü";
  t.record(l, obs(1));
  std::string text = render({&t});
  EXPECT_NE(text.find(R"(route="a\"b\\c\nd",matched_uri=)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"(consumer="ü")"), std::string::npos);
  // Every sample stays on its line.
  for (size_t at = 0, end; at < text.size(); at = end + 1) {
    end = text.find('\n', at);
    std::string line = text.substr(at, end - at);
    EXPECT_TRUE(line.starts_with("# ") || line.starts_with("portico_")) << line;
  }
}

TEST(HttpSeries, AppendLabelValue) {
  std::string out;
  append_label_value(out, "plain");
  append_label_value(out, "|q\"|b\\|n\n|t\t|");
  EXPECT_EQ(out, "plain|q\\\"|b\\\\|n\\n|t\t|");
}

TEST(HttpSeries, NoAllocationForAKnownTuple) {
  HttpSeriesTable t;
  HttpLabels l = labels(200, "a-route-id-long-enough-to-leave-the-small-string-buffer");
  t.record(l, obs(1, 0.5));
  g_allocs = 0;
  g_count_allocs = true;
  for (int i = 0; i < 100; ++i) t.record(l, obs(i, i / 2.0));
  g_count_allocs = false;
  EXPECT_EQ(g_allocs.load(), 0);
}

TEST(HttpSeries, ScrapedWhileAWorkerAddsSeries) {
  HttpSeriesTable t(2000);
  std::atomic<bool> done{false};
  std::thread worker([&] {
    char route[16];
    for (int i = 0; i < 2000; ++i) {
      std::snprintf(route, sizeof route, "r%d", i);
      t.record(labels(200, route), obs(1));
    }
    done = true;
  });
  while (!done.load()) {
    std::string text = render({&t});
    ASSERT_EQ(text.back(), '\n');
  }
  worker.join();
  std::string text = render({&t});
  EXPECT_EQ(sample(text, R"(portico_http_status{code="200",route="r1999",)"), 1);
}

TEST(HttpSeries, MetricsRenderIncludesThePluginSeries) {
  Metrics m(2);
  std::string before = m.render("");
  EXPECT_EQ(before.find("portico_http_status"), std::string::npos);
  m.http_series(1).record(labels(200, "r1"), obs(1));
  std::string text = m.render("# extra\n");
  EXPECT_EQ(sample(text, kStatus200), 1);
  EXPECT_TRUE(text.ends_with("# extra\n"));
}

}  // namespace
}  // namespace portico::status
