// ClientCodec against a real nghttp2 server session, in process: both sides sans I/O, bytes pumped between
// them until neither has anything to say.
#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <map>
#include <string>

#include "http2/client_codec.h"

namespace portico::http2 {
namespace {

struct ServerStream {
  Fields head;
  std::string body;
  Fields trailers;
  bool ended = false;
  uint32_t reset_code = 0xffffffff;
};

// A minimal nghttp2 server: records requests, answers what the test submits.
class Server {
 public:
  explicit Server(std::vector<nghttp2_settings_entry> settings = {}) {
    nghttp2_session_callbacks* cbs;
    nghttp2_session_callbacks_new(&cbs);
    nghttp2_session_callbacks_set_on_header_callback(
        cbs,
        [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl, const uint8_t* v, size_t vl,
           uint8_t, void* u) -> int {
          auto& st = static_cast<Server*>(u)->streams[f->hd.stream_id];
          Field field{std::string(reinterpret_cast<const char*>(n), nl),
                      std::string(reinterpret_cast<const char*>(v), vl)};
          (f->headers.cat == NGHTTP2_HCAT_REQUEST ? st.head : st.trailers).push_back(field);
          return 0;
        });
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
        cbs, [](nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t len, void* u) -> int {
          static_cast<Server*>(u)->streams[id].body.append(reinterpret_cast<const char*>(d), len);
          return 0;
        });
    nghttp2_session_callbacks_set_on_frame_recv_callback(
        cbs, [](nghttp2_session*, const nghttp2_frame* f, void* u) -> int {
          if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
              (f->hd.flags & NGHTTP2_FLAG_END_STREAM))
            static_cast<Server*>(u)->streams[f->hd.stream_id].ended = true;
          return 0;
        });
    nghttp2_session_callbacks_set_on_stream_close_callback(
        cbs, [](nghttp2_session*, int32_t id, uint32_t code, void* u) -> int {
          static_cast<Server*>(u)->streams[id].reset_code = code;
          return 0;
        });
    nghttp2_session_server_new(&session, cbs, this);
    nghttp2_session_callbacks_del(cbs);
    nghttp2_submit_settings(session, NGHTTP2_FLAG_NONE, settings.data(), settings.size());
  }
  ~Server() { nghttp2_session_del(session); }

  void respond(int32_t id, Fields head, std::string body, Fields trailers = {}, bool end = true) {
    pending_body[id] = std::move(body);
    pending_trailers[id] = std::move(trailers);
    pending_end[id] = end;
    std::vector<nghttp2_nv> nv;
    for (Field& f : head) nv.push_back(nv_of(f));
    nghttp2_data_provider p{};
    p.read_callback = [](nghttp2_session* s, int32_t id, uint8_t* buf, size_t len, uint32_t* flags,
                         nghttp2_data_source*, void* u) -> ssize_t {
      Server& srv = *static_cast<Server*>(u);
      std::string& b = srv.pending_body[id];
      size_t n = std::min(len, b.size());
      memcpy(buf, b.data(), n);
      b.erase(0, n);
      if (b.empty()) {
        if (!srv.pending_end[id])
          return n == 0 ? static_cast<ssize_t>(NGHTTP2_ERR_DEFERRED) : static_cast<ssize_t>(n);
        *flags |= NGHTTP2_DATA_FLAG_EOF;
        Fields& t = srv.pending_trailers[id];
        if (!t.empty()) {
          std::vector<nghttp2_nv> tv;
          for (Field& f : t) tv.push_back(nv_of(f));
          nghttp2_submit_trailer(s, id, tv.data(), tv.size());
          *flags |= NGHTTP2_DATA_FLAG_NO_END_STREAM;
        }
      }
      return static_cast<ssize_t>(n);
    };
    ASSERT_EQ(nghttp2_submit_response(session, id, nv.data(), nv.size(), &p), 0);
    heads.push_back(std::move(head));  // keeps the nv strings alive until sent
  }
  void headers(int32_t id, Fields head, bool end_stream = false) {
    std::vector<nghttp2_nv> nv;
    for (Field& f : head) nv.push_back(nv_of(f));
    nghttp2_submit_headers(session, end_stream ? NGHTTP2_FLAG_END_STREAM : NGHTTP2_FLAG_NONE, id, nullptr,
                           nv.data(), nv.size(), nullptr);
    heads.push_back(std::move(head));
  }
  static nghttp2_nv nv_of(Field& f) {
    return nghttp2_nv{reinterpret_cast<uint8_t*>(f.name.data()), reinterpret_cast<uint8_t*>(f.value.data()),
                      f.name.size(), f.value.size(), NGHTTP2_NV_FLAG_NONE};
  }

  nghttp2_session* session = nullptr;
  std::map<int32_t, ServerStream> streams;
  std::map<int32_t, std::string> pending_body;
  std::map<int32_t, Fields> pending_trailers;
  std::map<int32_t, bool> pending_end;
  std::vector<Fields> heads;
};

// Moves bytes both ways until quiet. Returns false if the client reported a connection error.
bool pump(ClientCodec& c, Server& s, int rounds = 1000) {
  bool ok = true;
  for (int i = 0; i < rounds; ++i) {
    std::string out;
    bool moved = c.take_output(out);
    if (moved) {
      EXPECT_GE(nghttp2_session_mem_recv(s.session, reinterpret_cast<const uint8_t*>(out.data()), out.size()),
                0);
    }
    std::string back;
    while (true) {
      const uint8_t* p;
      ssize_t n = nghttp2_session_mem_send(s.session, &p);
      if (n <= 0) break;
      back.append(reinterpret_cast<const char*>(p), static_cast<size_t>(n));
    }
    if (!back.empty()) {
      moved = true;
      if (!c.feed(back.data(), back.size())) ok = false;
    }
    if (!moved) break;
  }
  return ok;
}

Fields request(std::string path = "/pkg.Svc/Method") {
  return {{":method", "POST"},
          {":scheme", "http"},
          {":authority", "node"},
          {":path", path},
          {"content-type", "application/grpc"},
          {"te", "trailers"}};
}

std::string get(const Fields& fields, std::string_view name) {
  for (const Field& f : fields)
    if (f.name == name) return f.value;
  return "<none>";
}

TEST(ClientCodec, UnaryExchangeWithTrailersBothWays) {
  ClientCodec c;
  Server s;
  int32_t id = c.submit_request(request(), false);
  ASSERT_EQ(id, 1);
  ASSERT_TRUE(c.send_data(id, "hello"));
  ASSERT_TRUE(c.end_stream(id, {{"x-req-trailer", "t1"}}));
  ASSERT_TRUE(pump(c, s));
  EXPECT_EQ(get(s.streams[1].head, ":path"), "/pkg.Svc/Method");
  EXPECT_EQ(get(s.streams[1].head, "te"), "trailers");
  EXPECT_EQ(s.streams[1].body, "hello");
  EXPECT_EQ(get(s.streams[1].trailers, "x-req-trailer"), "t1");
  EXPECT_TRUE(s.streams[1].ended);

  s.respond(1, {{":status", "200"}, {"content-type", "application/grpc"}}, "world",
            {{"grpc-status", "0"}, {"x-custom", "v"}});
  ASSERT_TRUE(pump(c, s));
  ClientStream* st = c.stream(id);
  ASSERT_NE(st, nullptr);
  EXPECT_TRUE(st->head_ready);
  EXPECT_EQ(st->status, 200);
  EXPECT_EQ(get(st->head, "content-type"), "application/grpc");
  EXPECT_EQ(st->data, "world");
  EXPECT_TRUE(st->trailers_ready);
  EXPECT_EQ(get(st->trailers, "grpc-status"), "0");
  EXPECT_EQ(get(st->trailers, "x-custom"), "v");
  EXPECT_TRUE(st->remote_ended);
  EXPECT_TRUE(st->closed);
  EXPECT_EQ(st->error_code, kNoError);
  EXPECT_FALSE(st->unprocessed);
  auto changed = c.take_changed();
  EXPECT_EQ(changed, std::vector<int32_t>{1});
  EXPECT_TRUE(c.take_changed().empty());
  c.forget(id);
  EXPECT_EQ(c.known_streams(), 0u);
}

TEST(ClientCodec, InterimResponsesAreSkipped) {
  ClientCodec c;
  Server s;
  int32_t id = c.submit_request(request(), true);
  ASSERT_TRUE(pump(c, s));
  s.headers(id, {{":status", "103"}, {"link", "</a>"}});
  ASSERT_TRUE(pump(c, s));
  EXPECT_FALSE(c.stream(id)->head_ready);
  s.respond(id, {{":status", "200"}}, "");
  ASSERT_TRUE(pump(c, s));
  EXPECT_TRUE(c.stream(id)->head_ready);
  EXPECT_EQ(c.stream(id)->status, 200);
  EXPECT_EQ(get(c.stream(id)->head, "link"), "<none>");
}

TEST(ClientCodec, BufferedDataIsBoundedByTheGrantedWindow) {
  ClientLimits limits;
  limits.stream_window = 32 * 1024;
  ClientCodec c(limits);
  Server s;
  int32_t id = c.submit_request(request(), true);
  ASSERT_TRUE(pump(c, s));
  const std::string big(1 << 20, 'x');
  s.respond(id, {{":status", "200"}}, big);
  std::string got;
  for (int i = 0; i < 1000 && !c.stream(id)->remote_ended; ++i) {
    ASSERT_TRUE(pump(c, s));
    ClientStream* st = c.stream(id);
    EXPECT_LE(st->data.size(), limits.stream_window);
    if (st->data.empty() && !st->remote_ended) FAIL() << "stalled with nothing to consume";
    got += st->data;
    c.consume(id, st->data.size());
  }
  got += c.stream(id)->data;
  EXPECT_EQ(got.size(), big.size());
}

TEST(ClientCodec, NothingMoreArrivesUntilTheCallerConsumes) {
  ClientLimits limits;
  limits.stream_window = 16 * 1024;
  ClientCodec c(limits);
  Server s;
  int32_t id = c.submit_request(request(), true);
  ASSERT_TRUE(pump(c, s));
  s.respond(id, {{":status", "200"}}, std::string(100000, 'y'));
  ASSERT_TRUE(pump(c, s));
  ASSERT_TRUE(pump(c, s));
  EXPECT_EQ(c.stream(id)->data.size(), limits.stream_window);
  EXPECT_FALSE(c.stream(id)->remote_ended);
}

TEST(ClientCodec, LargeRequestBodyFollowsFlowControl) {
  ClientCodec c;
  Server s;
  int32_t id = c.submit_request(request(), false);
  const std::string big(300000, 'b');
  ASSERT_TRUE(c.send_data(id, big));
  ASSERT_TRUE(pump(c, s));
  // The server's session acknowledges DATA automatically, so everything goes; the body is not ended yet.
  EXPECT_EQ(s.streams[id].body.size(), big.size());
  EXPECT_EQ(c.stream(id)->out_pending(), 0u);
  EXPECT_FALSE(s.streams[id].ended);
  ASSERT_TRUE(c.end_stream(id));
  ASSERT_TRUE(pump(c, s));
  EXPECT_TRUE(s.streams[id].ended);
  EXPECT_TRUE(c.stream(id)->out_done);
}

TEST(ClientCodec, GoawayMarksStreamsAboveTheLastIdUnprocessed) {
  ClientCodec c;
  Server s;
  int32_t a = c.submit_request(request(), true);
  int32_t b = c.submit_request(request(), true);
  int32_t d = c.submit_request(request(), true);
  ASSERT_TRUE(pump(c, s));
  nghttp2_submit_goaway(s.session, NGHTTP2_FLAG_NONE, a, NGHTTP2_NO_ERROR, nullptr, 0);
  ASSERT_TRUE(pump(c, s));
  EXPECT_TRUE(c.goaway_received());
  EXPECT_EQ(c.goaway_last_stream(), a);
  EXPECT_FALSE(c.stream(a)->closed);
  EXPECT_TRUE(c.stream(b)->unprocessed);
  EXPECT_TRUE(c.stream(b)->closed);
  EXPECT_TRUE(c.stream(d)->unprocessed);
  EXPECT_EQ(c.submit_request(request(), true), -1);  // no new streams on a draining connection
  s.respond(a, {{":status", "200"}}, "done");
  ASSERT_TRUE(pump(c, s));
  EXPECT_TRUE(c.stream(a)->remote_ended);
  EXPECT_FALSE(c.stream(a)->unprocessed);
}

TEST(ClientCodec, RefusedStreamIsUnprocessed) {
  ClientCodec c;
  Server s;
  int32_t id = c.submit_request(request(), true);
  ASSERT_TRUE(pump(c, s));
  nghttp2_submit_rst_stream(s.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_REFUSED_STREAM);
  ASSERT_TRUE(pump(c, s));
  EXPECT_TRUE(c.stream(id)->closed);
  EXPECT_EQ(c.stream(id)->error_code, kRefusedStream);
  EXPECT_TRUE(c.stream(id)->unprocessed);
}

TEST(ClientCodec, ResetAfterTheHeadIsNotUnprocessed) {
  ClientCodec c;
  Server s;
  int32_t id = c.submit_request(request(), true);
  ASSERT_TRUE(pump(c, s));
  s.respond(id, {{":status", "200"}}, "part", {}, false);
  ASSERT_TRUE(pump(c, s));
  nghttp2_submit_rst_stream(s.session, NGHTTP2_FLAG_NONE, id, NGHTTP2_INTERNAL_ERROR);
  ASSERT_TRUE(pump(c, s));
  EXPECT_TRUE(c.stream(id)->head_ready);
  EXPECT_TRUE(c.stream(id)->closed);
  EXPECT_FALSE(c.stream(id)->remote_ended);
  EXPECT_EQ(c.stream(id)->error_code, kInternalError);
  EXPECT_FALSE(c.stream(id)->unprocessed);
}

TEST(ClientCodec, PeerMaxConcurrentStreams) {
  ClientCodec c;
  EXPECT_EQ(c.peer_max_streams(), 100u);  // assumed until the node's SETTINGS
  Server s({{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, 2}});
  ASSERT_TRUE(pump(c, s));
  EXPECT_TRUE(c.settings_received());
  EXPECT_EQ(c.peer_max_streams(), 2u);
}

TEST(ClientCodec, OversizedResponseHeadResetsTheStream) {
  ClientLimits limits;
  limits.max_header_list = 4096;
  ClientCodec c(limits);
  Server s;
  int32_t id = c.submit_request(request(), true);
  ASSERT_TRUE(pump(c, s));
  s.respond(id, {{":status", "200"}, {"x-a", std::string(3000, 'a')}, {"x-b", std::string(3000, 'b')}}, "x");
  ASSERT_TRUE(pump(c, s));
  ClientStream* st = c.stream(id);
  EXPECT_TRUE(st->header_overflow);
  EXPECT_FALSE(st->head_ready);
  EXPECT_TRUE(st->closed);
  EXPECT_NE(st->error_code, kNoError);
  EXPECT_TRUE(c.alive());  // a stream error, not a connection error
}

TEST(ClientCodec, TooManyResponseFieldsResetTheStream) {
  ClientLimits limits;
  limits.max_header_count = 4;
  ClientCodec c(limits);
  Server s;
  int32_t ok = c.submit_request(request(), true);
  int32_t head = c.submit_request(request(), true);
  int32_t trailers = c.submit_request(request(), true);
  ASSERT_TRUE(pump(c, s));
  Fields four{{":status", "200"}, {"a", "1"}, {"b", "2"}, {"c", "3"}, {"d", "4"}};
  Fields five = four;
  five.push_back({"e", "5"});
  s.respond(ok, four, "x", {{"t1", "1"}, {"t2", "2"}, {"t3", "3"}, {"t4", "4"}});
  s.respond(head, five, "x");
  s.respond(trailers, four, "x", {{"t1", "1"}, {"t2", "2"}, {"t3", "3"}, {"t4", "4"}, {"t5", "5"}});
  ASSERT_TRUE(pump(c, s));
  EXPECT_FALSE(c.stream(ok)->header_overflow);
  EXPECT_TRUE(c.stream(ok)->trailers_ready);
  EXPECT_EQ(c.stream(ok)->error_code, kNoError);
  EXPECT_TRUE(c.stream(head)->header_overflow);
  EXPECT_FALSE(c.stream(head)->head_ready);
  EXPECT_TRUE(c.stream(head)->closed);
  EXPECT_TRUE(c.stream(trailers)->header_overflow);
  EXPECT_FALSE(c.stream(trailers)->trailers_ready);
  EXPECT_TRUE(c.stream(trailers)->closed);
  EXPECT_NE(c.stream(trailers)->error_code, kNoError);
  EXPECT_TRUE(c.alive());
}

TEST(ClientCodec, ContentLengthDisagreeingWithDataIsAStreamError) {
  ClientCodec c;
  Server s;
  int32_t id = c.submit_request(request(), true);
  ASSERT_TRUE(pump(c, s));
  s.respond(id, {{":status", "200"}, {"content-length", "10"}}, "short");
  pump(c, s);
  ClientStream* st = c.stream(id);
  EXPECT_TRUE(st->closed);
  EXPECT_EQ(st->error_code, kProtocolError);
}

TEST(ClientCodec, ForgetResetsAnOpenStream) {
  ClientCodec c;
  Server s;
  int32_t id = c.submit_request(request(), false);
  ASSERT_TRUE(pump(c, s));
  c.forget(id);
  ASSERT_TRUE(pump(c, s));
  EXPECT_EQ(s.streams[id].reset_code, kCancel);
  EXPECT_EQ(c.open_streams(), 0u);
}

TEST(ClientCodec, TransportClosedFailsOpenStreams) {
  ClientCodec c;
  Server s;
  int32_t id = c.submit_request(request(), true);
  ASSERT_TRUE(pump(c, s));
  c.transport_closed();
  EXPECT_TRUE(c.stream(id)->closed);
  EXPECT_EQ(c.stream(id)->error_code, kInternalError);
  EXPECT_FALSE(c.alive());
  EXPECT_EQ(c.submit_request(request(), true), -1);
}

TEST(ClientCodec, GarbageIsAConnectionError) {
  ClientCodec c;
  int32_t id = c.submit_request(request(), true);
  std::string out;
  c.take_output(out);
  const std::string junk = "HTTP/1.1 400 Bad Request\r\n\r\n";
  c.feed(junk.data(), junk.size());
  out.clear();
  c.take_output(out);
  EXPECT_TRUE(c.stream(id)->closed);
  EXPECT_NE(c.connection_error(), kNoError);
  EXPECT_FALSE(c.alive());
}

TEST(ClientCodec, InvalidRequestFieldsAreRefused) {
  ClientCodec c;
  Server s;
  int32_t id =
      c.submit_request({{":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {"connection", "x"}}, true);
  // nghttp2 sends it (its checks are on receipt); the server's messaging checks refuse it.
  if (id > 0) {
    pump(c, s);
    EXPECT_TRUE(c.stream(id)->closed);
    EXPECT_NE(c.stream(id)->error_code, kNoError);
  }
}

}  // namespace
}  // namespace portico::http2
