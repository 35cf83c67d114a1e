// H2Connection and H2Stream end to end on one real Worker: an nghttp2 client speaks h2c to the worker's
// loopback listener, the route forwards to an HTTP/1.1 origin in the test (proxy_h2_test_support.h). Pinned:
// requests and responses translated both ways, content-length vs DATA, MAX_CONCURRENT_STREAMS, the access
// log's bytes_sent, drain, and a client's RST_STREAM mid-response.
#include <gtest/gtest.h>

#include "proxy_h2_test_support.h"

namespace portico::proxy::h2test {
namespace {

const std::string* field(const Fields& fields, const std::string& name) {
  for (const auto& [n, v] : fields) {
    if (n == name) return &v;
  }
  return nullptr;
}

// The access log's bytes_sent of the (one) request to `uri`; -1 if none was logged.
int64_t logged_bytes_sent(const std::string& log, const std::string& uri) {
  const size_t at = log.find("\"uri\":\"" + uri + "\"");
  if (at == std::string::npos) return -1;
  const std::string key = "\"bytes_sent\":";
  const size_t b = log.find(key, at);
  if (b == std::string::npos || log.find("\"uri\":\"" + uri + "\"", at + 1) != std::string::npos) return -1;
  return std::stoll(log.substr(b + key.size()));
}

class H2ConnectionTest : public ::testing::Test {
 protected:
  Origin origin_;
  Proxy proxy_{origin_.port()};
};

TEST_F(H2ConnectionTest, GetAndPostAreForwardedAndTheResponseComesBackAsHeadersAndData) {
  H2Client c(proxy_.port());
  const int32_t get = c.submit("GET", "/hello", {{"x-test", "1"}});
  const std::string sized = "0123456789";
  const int32_t post = c.submit("POST", "/echo", {{"content-length", "10"}}, &sized);
  const std::string unsized(40000, 'u');  // several DATA frames, no content-length: chunked upstream
  const int32_t post_chunked = c.submit("POST", "/echo", {}, &unsized);
  ASSERT_TRUE(
      c.pump_until([&] { return c.streams[get].end && c.streams[post].end && c.streams[post_chunked].end; }));

  const H2Client::Stream& g = c.streams[get];
  EXPECT_EQ(g.status, 200);
  EXPECT_EQ(g.body, "hello, world");
  ASSERT_NE(field(g.fields, "x-origin"), nullptr);
  EXPECT_EQ(*field(g.fields, "x-origin"), "yes");
  EXPECT_EQ(*field(g.fields, "content-type"), "text/plain");
  // Connection-specific fields never reach an HTTP/2 client (RFC 9113 8.2.2): nghttp2 would reject them.
  EXPECT_EQ(field(g.fields, "connection"), nullptr);
  EXPECT_EQ(field(g.fields, "transfer-encoding"), nullptr);
  EXPECT_EQ(c.streams[post].status, 200);
  EXPECT_EQ(c.streams[post].body, sized);
  EXPECT_EQ(*field(c.streams[post].fields, "x-method"), "POST");
  EXPECT_EQ(c.streams[post_chunked].status, 200);
  EXPECT_EQ(c.streams[post_chunked].body, unsized);
  for (const auto& [id, s] : c.streams) EXPECT_EQ(s.rst, -1) << "stream " << id;

  std::vector<Origin::Request> seen = origin_.requests();
  ASSERT_EQ(seen.size(), 3u);
  std::map<std::string, const Origin::Request*> by_body;
  for (const Origin::Request& r : seen) {
    EXPECT_TRUE(r.complete);
    by_body[r.method + " " + r.path + " " + std::to_string(r.body.size())] = &r;
  }
  const Origin::Request* hello = by_body["GET /hello 0"];
  ASSERT_NE(hello, nullptr);
  ASSERT_NE(field(hello->fields, "x-test"), nullptr);
  EXPECT_EQ(*field(hello->fields, "x-test"), "1");
  EXPECT_EQ(*field(hello->fields, "host"), "h2.test");
  const Origin::Request* p1 = by_body["POST /echo 10"];
  ASSERT_NE(p1, nullptr);
  EXPECT_EQ(p1->body, sized);
  EXPECT_EQ(*field(p1->fields, "content-length"), "10");
  const Origin::Request* p2 = by_body["POST /echo 40000"];
  ASSERT_NE(p2, nullptr);
  EXPECT_EQ(p2->body, unsized);
  EXPECT_EQ(*field(p2->fields, "transfer-encoding"), "chunked");
}

// Each body starts flowing first (the origin has the head and the first bytes), so the stream's Session is
// forwarding when the DATA that contradicts content-length arrives.
TEST_F(H2ConnectionTest, ContentLengthThatDisagreesWithDataIsResetAndNeverForwarded) {
  H2Client c(proxy_.port());
  struct Case {
    std::string path, content_length, first, last;
  };
  // Too short: END_STREAM after 5 of 10 bytes. Too long: 6 of 6 bytes, then a 7th; the 6th must not reach
  // the origin before END_STREAM shows that the body agrees with its content-length.
  const Case cases[] = {{"/bad-short", "10", "12345", ""}, {"/bad-long", "6", "123456", "7"}};
  for (const Case& k : cases) {
    SCOPED_TRACE(k.path);
    const int32_t id = c.submit("POST", k.path, {{"content-length", k.content_length}}, nullptr, true);
    c.send_data(id, k.first, false);
    c.flush();
    ASSERT_TRUE(origin_.wait_for([&](const std::vector<Origin::Request>& rs) {
      return !rs.empty() && rs.back().path == k.path && rs.back().received >= 5;
    }));
    c.send_data(id, k.last, true);
    ASSERT_TRUE(c.pump_until([&] { return c.streams[id].rst >= 0; }));
    EXPECT_EQ(c.streams[id].rst, NGHTTP2_PROTOCOL_ERROR);
    EXPECT_EQ(c.streams[id].status, 0) << "no response head";
  }

  // A stream error, not a connection error: the connection goes on.
  const int32_t next = c.submit("GET", "/hello");
  ASSERT_TRUE(c.pump_until([&] { return c.streams[next].end; }));
  EXPECT_EQ(c.streams[next].status, 200);
  EXPECT_TRUE(c.goaways.empty());

  // Once the worker is gone (its upstream connections closed) the origin has read all it was sent.
  proxy_.stop();
  origin_.stop();
  for (const Origin::Request& r : origin_.requests()) {
    if (r.path.rfind("/bad", 0) == 0) {
      EXPECT_FALSE(r.complete) << r.path << " reached the origin whole: " << r.body;
      EXPECT_LE(r.received, 5u) << r.path;
    }
  }
}

TEST_F(H2ConnectionTest, StreamsBeyondMaxConcurrentStreamsAreRefusedUntilOneEnds) {
  // All 129 HEADERS leave before the server's SETTINGS (128) can arrive. The first is forwarded and held by
  // the origin; content-length 0 without END_STREAM holds each of the others unstarted in the connection
  // (live, nothing forwarded) until its END_STREAM.
  H2Client c(proxy_.port(), 1000);
  std::vector<int32_t> ids{c.submit("GET", "/hold")};
  for (int i = 1; i < 129; ++i) {
    ids.push_back(c.submit("POST", "/hello", {{"content-length", "0"}}, nullptr, true));
  }
  const int32_t extra = ids.back();
  ASSERT_TRUE(c.pump_until([&] { return c.streams[extra].rst >= 0; }));
  EXPECT_EQ(c.streams[extra].rst, NGHTTP2_REFUSED_STREAM);
  ASSERT_TRUE(origin_.wait_for([](const std::vector<Origin::Request>& rs) { return !rs.empty(); }));

  // Rapid reset (CVE-2023-44487): a stream the client resets holds its slot until its Session has ended,
  // so a new stream in the same write is refused although nghttp2 already counts the old one closed.
  c.reset(ids[0], NGHTTP2_CANCEL);
  const int32_t after_reset = c.submit("GET", "/hello");
  ASSERT_TRUE(c.pump_until([&] { return c.streams[after_reset].rst >= 0 || c.streams[after_reset].end; }));
  EXPECT_EQ(c.streams[after_reset].rst, NGHTTP2_REFUSED_STREAM);
  EXPECT_TRUE(c.goaways.empty());

  // One of the unstarted streams ends: it is forwarded and answered; a new stream is served.
  c.send_data(ids[1], "", true);
  ASSERT_TRUE(c.pump_until([&] { return c.streams[ids[1]].end; }));
  EXPECT_EQ(c.streams[ids[1]].status, 200);
  const int32_t next = c.submit("GET", "/hello");
  ASSERT_TRUE(c.pump_until([&] { return c.streams[next].end || c.streams[next].rst >= 0; }));
  EXPECT_EQ(c.streams[next].status, 200);
  EXPECT_EQ(c.streams[next].rst, -1);
  for (size_t i = 1; i + 1 < ids.size(); ++i) EXPECT_EQ(c.streams[ids[i]].rst, -1) << "stream " << ids[i];
  EXPECT_EQ(origin_.requests().size(), 3u);  // /hold and two /hello: nothing refused was forwarded
}

// The ways a response reaches H2Stream: the relay's head (start_response) with a content-length body or a
// chunked one (decoded into DATA), and Portico's own answer (a 502 written as HTTP/1.1 text, parsed back).
TEST_F(H2ConnectionTest, BytesSentIsTheResponseFieldsPlusTheDataPayload) {
  H2Client c(proxy_.port());
  const int32_t get = c.submit("GET", "/hello");
  const std::string body(30000, 'e');  // more than one DATA frame
  const int32_t post = c.submit("POST", "/echo", {}, &body);
  const int32_t chunked = c.submit("GET", "/chunked");
  const int32_t dead = c.submit("GET", "/dead");
  ASSERT_TRUE(c.pump_until([&] {
    return c.streams[get].end && c.streams[post].end && c.streams[chunked].end && c.streams[dead].end;
  }));
  ASSERT_EQ(c.streams[chunked].body, "first" + std::string(4096, 'c'));
  ASSERT_EQ(c.streams[post].body.size(), body.size());
  ASSERT_EQ(c.streams[dead].status, 502);
  ASSERT_FALSE(c.streams[dead].body.empty());
  const std::string log = proxy_.stop();  // flushes the access log
  for (auto [uri, id] : {std::pair{"/hello", get}, {"/echo", post}, {"/chunked", chunked}, {"/dead", dead}}) {
    EXPECT_EQ(logged_bytes_sent(log, uri),
              static_cast<int64_t>(c.streams[id].field_bytes + c.streams[id].body.size()))
        << uri << "\n"
        << log;
  }
}

TEST_F(H2ConnectionTest, DrainSendsGoawayAndTheStreamInFlightCompletes) {
  H2Client c(proxy_.port());
  const int32_t id = c.submit("GET", "/hold");
  c.flush();
  ASSERT_TRUE(origin_.wait_for([](const std::vector<Origin::Request>& rs) { return !rs.empty(); }));
  proxy_.worker().drain();
  // The shutdown notice (last stream id 2^31-1), then, once its PING came back, the final GOAWAY naming the
  // stream in flight: the response is still on its way.
  ASSERT_TRUE(c.pump_until([&] { return c.goaways.size() >= 2; }));
  EXPECT_EQ(c.goaways[0].code, NGHTTP2_NO_ERROR);
  EXPECT_EQ(c.goaways[0].last_stream_id, (1u << 31) - 1);
  EXPECT_EQ(c.goaways[1].code, NGHTTP2_NO_ERROR);
  EXPECT_EQ(c.goaways[1].last_stream_id, id);
  EXPECT_FALSE(c.streams[id].end);

  origin_.release();
  ASSERT_TRUE(c.pump_until([&] { return c.streams[id].end; }));
  EXPECT_EQ(c.streams[id].status, 200);
  EXPECT_EQ(c.streams[id].body, "held");
  EXPECT_EQ(c.streams[id].rst, -1);
  // Then the connection ends: the server closes it.
  EXPECT_TRUE(c.pump_until([&] { return c.eof(); }));
}

TEST_F(H2ConnectionTest, ClientResetMidResponseClosesTheUpstreamAndTheConnectionStaysUsable) {
  H2Client c(proxy_.port());
  const int32_t big = c.submit("GET", "/big");
  ASSERT_TRUE(c.pump_until([&] { return !c.streams[big].body.empty(); }));
  EXPECT_EQ(c.streams[big].status, 200);
  c.reset(big, NGHTTP2_CANCEL);
  c.flush();
  // The stream's Session is force-closed: its upstream connection is closed mid-response, not pooled.
  EXPECT_TRUE(origin_.wait_for([](const std::vector<Origin::Request>& rs) {
    return !rs.empty() && rs[0].path == "/big" && rs[0].closed_early;
  }));
  const int32_t next = c.submit("GET", "/hello");
  ASSERT_TRUE(c.pump_until([&] { return c.streams[next].end; }));
  EXPECT_EQ(c.streams[next].status, 200);
  EXPECT_EQ(c.streams[next].body, "hello, world");
  EXPECT_TRUE(c.goaways.empty());
  EXPECT_LT(c.streams[big].body.size(), 1000000u);
  EXPECT_FALSE(c.streams[big].end);
}

}  // namespace
}  // namespace portico::proxy::h2test
