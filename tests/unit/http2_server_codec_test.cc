// http2::ServerCodec against an nghttp2 client session, bytes passed by hand (no sockets).
#include "http2/server_codec.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

namespace portico::http2 {
namespace {

struct Owner : ServerCodec::Handler {
  std::map<int32_t, Request> requests;
  std::map<int32_t, std::string> data;
  std::set<int32_t> ended;
  std::map<int32_t, uint32_t> closed;
  void on_request(int32_t id, Request& r) override { requests[id] = r; }
  void on_data(int32_t id, std::string_view d) override { data[id] += d; }
  void on_end_stream(int32_t id) override { ended.insert(id); }
  void on_stream_close(int32_t id, uint32_t code) override { closed[id] = code; }
};

// A minimal HTTP/2 client on nghttp2 that records what the server sends.
struct Client {
  nghttp2_session* s = nullptr;
  std::map<int32_t, int> status;
  std::map<int32_t, std::string> body;
  std::set<int32_t> end;
  std::map<int32_t, uint32_t> rst;
  std::map<int32_t, uint32_t> settings;
  std::vector<std::pair<uint32_t, int32_t>> goaways;  // (code, last stream id)
  int window_updates = 0;                             // stream-level ones

  Client() {
    nghttp2_session_callbacks* cb;
    nghttp2_session_callbacks_new(&cb);
    nghttp2_session_callbacks_set_on_header_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl, const uint8_t* v,
               size_t vl, uint8_t, void* u) {
          if (std::string_view(reinterpret_cast<const char*>(n), nl) == ":status") {
            static_cast<Client*>(u)->status[f->hd.stream_id] =
                std::stoi(std::string(reinterpret_cast<const char*>(v), vl));
          }
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cb, [](nghttp2_session* s, uint8_t, int32_t id, const uint8_t* d, size_t len, void* u) {
          static_cast<Client*>(u)->body[id].append(reinterpret_cast<const char*>(d), len);
          (void)s;
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        cb, [](nghttp2_session*, const nghttp2_frame* f, void* u) {
          Client& c = *static_cast<Client*>(u);
          if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
              (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
            c.end.insert(f->hd.stream_id);
          }
          if (f->hd.type == NGHTTP2_RST_STREAM) c.rst[f->hd.stream_id] = f->rst_stream.error_code;
          if (f->hd.type == NGHTTP2_GOAWAY)
            c.goaways.emplace_back(f->goaway.error_code, f->goaway.last_stream_id);
          if (f->hd.type == NGHTTP2_WINDOW_UPDATE && f->hd.stream_id != 0) ++c.window_updates;
          if (f->hd.type == NGHTTP2_SETTINGS && !(f->hd.flags & NGHTTP2_FLAG_ACK)) {
            for (size_t i = 0; i < f->settings.niv; ++i)
              c.settings[f->settings.iv[i].settings_id] = f->settings.iv[i].value;
          }
          return 0;
        });
    nghttp2_session_client_new(&s, cb, this);
    nghttp2_session_callbacks_del(cb);
    nghttp2_submit_settings(s, NGHTTP2_FLAG_NONE, nullptr, 0);
  }
  ~Client() { nghttp2_session_del(s); }

  std::string out() {
    std::string o;
    const uint8_t* d;
    ssize_t n;
    while ((n = nghttp2_session_mem_send(s, &d)) > 0)
      o.append(reinterpret_cast<const char*>(d), static_cast<size_t>(n));
    return o;
  }
  void in(const std::string& bytes) {
    nghttp2_session_mem_recv(s, reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  }
  int32_t get(std::vector<std::pair<std::string, std::string>> extra = {}, bool end_stream = true,
              nghttp2_data_provider* body = nullptr) {
    std::vector<std::pair<std::string, std::string>> h = {{":method", end_stream ? "GET" : "POST"},
                                                          {":scheme", "https"},
                                                          {":authority", "a.test"},
                                                          {":path", "/x"}};
    h.insert(h.end(), extra.begin(), extra.end());
    std::vector<nghttp2_nv> nva;
    for (auto& [n, v] : h) {
      nva.push_back({reinterpret_cast<uint8_t*>(n.data()), reinterpret_cast<uint8_t*>(v.data()), n.size(),
                     v.size(), NGHTTP2_NV_FLAG_NONE});
    }
    if (end_stream) return nghttp2_submit_request(s, nullptr, nva.data(), nva.size(), nullptr, nullptr);
    if (body) return nghttp2_submit_request(s, nullptr, nva.data(), nva.size(), body, nullptr);
    return nghttp2_submit_headers(s, NGHTTP2_FLAG_NONE, -1, nullptr, nva.data(), nva.size(), nullptr);
  }
};

struct Pair {
  Owner owner;
  ServerCodec codec;
  Client client;
  bool ok = true;
  explicit Pair(ServerLimits limits = {}) : codec(limits, owner) {}
  // Client -> server, then server -> client, until neither has anything to say.
  void pump() {
    for (int i = 0; i < 50; ++i) {
      std::string c = client.out();
      if (!c.empty()) ok = codec.receive(c) && ok;
      std::string s;
      codec.produce(s, 1 << 20);
      if (!s.empty()) client.in(s);
      if (c.empty() && s.empty()) return;
    }
  }
};

TEST(ServerCodec, RequestAndResponseWithSettingsAndEndStream) {
  Pair p;
  int32_t id = p.client.get({{"cookie", "a=1"}, {"cookie", "b=2"}, {"x-one", "1"}});
  p.pump();
  ASSERT_EQ(p.owner.requests.count(id), 1u);
  const Request& r = p.owner.requests[id];
  EXPECT_EQ(r.method, "GET");
  EXPECT_EQ(r.authority, "a.test");
  EXPECT_EQ(r.path, "/x");
  EXPECT_TRUE(r.end_stream);
  bool cookie = false;
  for (const Field& f : r.fields) cookie = cookie || (f.name == "cookie" && f.value == "a=1; b=2");
  EXPECT_TRUE(cookie) << "cookie crumbs joined with \"; \"";
  EXPECT_EQ(p.client.settings[NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS], 128u);
  EXPECT_EQ(p.client.settings[NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE], 256u * 1024);
  EXPECT_EQ(p.client.settings[NGHTTP2_SETTINGS_MAX_HEADER_LIST_SIZE], 64u * 1024);

  ASSERT_TRUE(p.codec.submit_response(id, 200, {{"content-type", "text/plain"}}, false));
  p.codec.submit_data(id, "hello");
  p.pump();
  EXPECT_EQ(p.client.body[id], "hello");
  EXPECT_EQ(p.client.end.count(id), 0u) << "no END_STREAM before submit_end";
  p.codec.submit_end(id);
  p.pump();
  EXPECT_EQ(p.client.status[id], 200);
  EXPECT_EQ(p.client.end.count(id), 1u);
}

TEST(ServerCodec, AuthorityAndHostDifferingIsAStreamError) {
  Pair p;
  int32_t id = p.client.get({{"host", "b.test"}});
  p.pump();
  EXPECT_EQ(p.owner.requests.count(id), 0u);
  EXPECT_EQ(p.client.rst[id], static_cast<uint32_t>(NGHTTP2_PROTOCOL_ERROR));
  int32_t same = p.client.get({{"host", "A.test"}});
  p.pump();
  EXPECT_EQ(p.owner.requests.count(same), 1u) << "the same name (case aside) is fine";
}

TEST(ServerCodec, ConnectionSpecificFieldIsAStreamError) {
  Pair p;
  int32_t id = p.client.get({{"connection", "keep-alive"}});
  p.pump();
  EXPECT_EQ(p.owner.requests.count(id), 0u);
  EXPECT_EQ(p.client.rst.count(id), 1u);
}

TEST(ServerCodec, HeaderListOverTheLimitIsRefusedWhileDecoding) {
  ServerLimits limits;
  limits.max_header_list_size = 16 * 1024;
  Pair p(limits);
  // The same 4000-byte field ten times: a small block once indexed (an HPACK bomb), 40 KB decoded.
  std::vector<std::pair<std::string, std::string>> big;
  for (int i = 0; i < 10; ++i) big.emplace_back("x-big", std::string(4000, 'a'));
  int32_t id = p.client.get(big);
  p.pump();
  EXPECT_EQ(p.owner.requests.count(id), 0u);
  EXPECT_EQ(p.client.status[id], 431);
  EXPECT_TRUE(p.ok);
}

TEST(ServerCodec, ResetStreamsStayLiveUntilFinishedThenNewOnesAreRefused) {
  ServerLimits limits;
  limits.max_concurrent_streams = 4;
  Pair p(limits);
  std::vector<int32_t> ids;
  for (int i = 0; i < 4; ++i) ids.push_back(p.client.get());
  p.pump();
  ASSERT_EQ(p.owner.requests.size(), 4u);
  for (int32_t id : ids) nghttp2_submit_rst_stream(p.client.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  p.pump();
  EXPECT_EQ(p.owner.closed.size(), 4u);
  EXPECT_EQ(p.codec.live_streams(), 4u) << "reset, but their sessions are still running";
  int32_t refused = p.client.get();
  p.pump();
  EXPECT_EQ(p.owner.requests.count(refused), 0u);
  EXPECT_EQ(p.client.rst[refused], static_cast<uint32_t>(NGHTTP2_REFUSED_STREAM));
  p.codec.stream_finished(ids[0]);
  int32_t next = p.client.get();
  p.pump();
  EXPECT_EQ(p.owner.requests.count(next), 1u);
}

TEST(ServerCodec, RapidResetFloodEndsInGoawayEnhanceYourCalm) {
  ServerLimits limits;
  limits.max_early_resets_per_second = 10;
  Pair p(limits);
  for (int i = 0; i < 30; ++i) {
    int32_t id = p.client.get();
    p.pump();  // HEADERS out first (nghttp2 would otherwise drop a request reset before it was sent)
    nghttp2_submit_rst_stream(p.client.s, NGHTTP2_FLAG_NONE, id, NGHTTP2_CANCEL);
  }
  p.pump();
  EXPECT_FALSE(p.ok);
  ASSERT_FALSE(p.client.goaways.empty());
  EXPECT_EQ(p.client.goaways.back().first, static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  // Each reset follows its own request: resets <= requests / 2 + 10 holds up to the 20th.
  EXPECT_LE(p.owner.requests.size(), 21u);
}

TEST(ServerCodec, ResetsAreBudgetedAgainstRequests) {
  // A busy channel cancelling a third of its RPCs: more resets than the fixed allowance, fewer than half the
  // requests.
  ServerLimits limits;
  limits.max_early_resets_per_second = 10;
  Pair p(limits);
  std::vector<int32_t> ids;
  for (int i = 0; i < 60; ++i) ids.push_back(p.client.get());
  p.pump();
  for (int i = 0; i < 20; ++i)
    nghttp2_submit_rst_stream(p.client.s, NGHTTP2_FLAG_NONE, ids[i], NGHTTP2_CANCEL);
  p.pump();
  EXPECT_TRUE(p.ok);
  EXPECT_TRUE(p.client.goaways.empty());
}

TEST(ServerCodec, ResetsForTheClientsStreamErrorsCountTowardTheBudget) {
  // MadeYouReset (CVE-2025-8671): malformed requests the server resets itself are resets all the same.
  ServerLimits limits;
  limits.max_early_resets_per_second = 10;
  Pair p(limits);
  for (int i = 0; i < 30; ++i) {
    p.client.get({{"connection", "x"}});
    p.pump();
  }
  ASSERT_FALSE(p.client.goaways.empty());
  EXPECT_EQ(p.client.goaways.back().first, static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  EXPECT_LE(p.client.rst.size(), 12u);
}

TEST(ServerCodec, PingFloodEndsInGoawayEnhanceYourCalm) {
  ServerLimits limits;
  limits.max_control_frames_per_second = 50;
  Pair p(limits);
  for (int i = 0; i < 100; ++i) nghttp2_submit_ping(p.client.s, NGHTTP2_FLAG_NONE, nullptr);
  p.pump();
  EXPECT_FALSE(p.ok);
  ASSERT_FALSE(p.client.goaways.empty());
  EXPECT_EQ(p.client.goaways.back().first, static_cast<uint32_t>(NGHTTP2_ENHANCE_YOUR_CALM));
  EXPECT_FALSE(p.codec.want_read());
}

TEST(ServerCodec, WindowUpdatesOfAFastDownloadAreNotAFlood) {
  // A client with a small window acknowledges every DATA frame it reads (nghttp -nv with 64 KiB does).
  ServerLimits limits;
  limits.max_control_frames_per_second = 50;
  Pair p(limits);
  int32_t id = p.client.get();
  p.pump();
  for (int i = 0; i < 200; ++i) {
    nghttp2_submit_window_update(p.client.s, NGHTTP2_FLAG_NONE, 0, 1);
    nghttp2_submit_window_update(p.client.s, NGHTTP2_FLAG_NONE, id, 1);
  }
  p.pump();
  EXPECT_TRUE(p.ok);
  EXPECT_TRUE(p.client.goaways.empty());
}

TEST(ServerCodec, WindowOpensOnlyAsTheOwnerConsumes) {
  Pair p;
  static std::string payload(400 * 1024, 'z');
  static size_t sent = 0;
  sent = 0;
  nghttp2_data_provider prd{};
  prd.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                         nghttp2_data_source*, void*) -> ssize_t {
    size_t n = std::min(len, payload.size() - sent);
    std::memcpy(buf, payload.data() + sent, n);
    sent += n;
    if (sent == payload.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  };
  int32_t id = p.client.get({}, false, &prd);
  p.pump();
  ASSERT_EQ(p.owner.requests.count(id), 1u);
  EXPECT_EQ(p.owner.data[id].size(), 256u * 1024) << "the stream window bounds what is buffered";
  EXPECT_EQ(p.client.window_updates, 0);
  p.codec.consume(id, p.owner.data[id].size());
  p.pump();
  EXPECT_GT(p.client.window_updates, 0);
  EXPECT_EQ(p.owner.data[id].size(), payload.size());
  EXPECT_EQ(p.owner.ended.count(id), 1u);
}

TEST(ServerCodec, ContentLengthDisagreeingWithDataResetsTheStream) {
  Pair p;
  static const std::string five = "12345";
  static size_t off = 0;
  off = 0;
  nghttp2_data_provider prd{};
  prd.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                         nghttp2_data_source*, void*) -> ssize_t {
    size_t n = std::min(len, five.size() - off);
    std::memcpy(buf, five.data() + off, n);
    off += n;
    if (off == five.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  };
  int32_t id = p.client.get({{"content-length", "10"}}, false, &prd);
  p.pump();
  ASSERT_EQ(p.owner.requests.count(id), 1u);
  EXPECT_EQ(p.owner.requests[id].content_length, 10u);
  EXPECT_EQ(p.owner.ended.count(id), 0u) << "never a complete body";
  ASSERT_EQ(p.owner.closed.count(id), 1u);
  EXPECT_NE(p.owner.closed[id], 0u);
}

TEST(ServerCodec, AnsweredBeforeTheBodyEndsThenResetNoError) {
  Pair p;
  int32_t id = p.client.get({}, false);  // HEADERS without END_STREAM: a body would follow
  p.pump();
  ASSERT_EQ(p.owner.requests.count(id), 1u);
  ASSERT_TRUE(p.codec.submit_response(id, 413, {}, true));
  p.codec.stream_finished(id);
  p.pump();
  EXPECT_EQ(p.client.status[id], 413);
  EXPECT_EQ(p.client.end.count(id), 1u) << "the response is complete first";
  ASSERT_EQ(p.client.rst.count(id), 1u);
  EXPECT_EQ(p.client.rst[id], static_cast<uint32_t>(NGHTTP2_NO_ERROR));
}

TEST(ServerCodec, GracefulGoawayRefusesLaterStreams) {
  Pair p;
  int32_t first = p.client.get();
  p.pump();
  p.codec.shutdown_notice();
  p.pump();
  ASSERT_EQ(p.client.goaways.size(), 1u);
  EXPECT_EQ(p.client.goaways[0].second, 0x7fffffff);
  EXPECT_TRUE(p.codec.notice_acknowledged()) << "the PING after the notice came back: one round trip";
  p.codec.goaway(NGHTTP2_NO_ERROR);
  p.pump();
  ASSERT_EQ(p.client.goaways.size(), 2u);
  EXPECT_EQ(p.client.goaways[1], std::make_pair(0u, first));
  EXPECT_TRUE(p.codec.submit_response(first, 200, {}, true)) << "the in-flight stream still completes";
  p.pump();
  EXPECT_EQ(p.client.status[first], 200);
}

TEST(ServerCodec, RequestsPerConnectionCapEndsInGracefulGoaway) {
  ServerLimits limits;
  limits.max_requests = 3;
  Pair p(limits);
  for (int i = 0; i < 3; ++i) p.client.get();
  p.pump();
  EXPECT_EQ(p.owner.requests.size(), 3u);
  ASSERT_FALSE(p.client.goaways.empty());
  EXPECT_EQ(p.client.goaways.back(), std::make_pair(0u, 5));
}

}  // namespace
}  // namespace portico::http2
