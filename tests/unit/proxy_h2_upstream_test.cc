// H2UpstreamPool against an in-process h2c server (nghttp2's server session on a loopback socket), all on one
// io_context: multiplexing, the node's stream limit, idle close, GOAWAY, connection loss, connect failure.
#include "proxy/h2_upstream.h"

#include <gtest/gtest.h>
#include <nghttp2/nghttp2.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <functional>
#include <map>

namespace portico::proxy {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;

// Answers each request once it ended: 200, body "<path>", trailers grpc-status 0; or holds them.
class H2Server {
 public:
  struct Conn {
    explicit Conn(tcp::socket s) : sock(std::move(s)) {}
    ~Conn() { nghttp2_session_del(session); }
    tcp::socket sock;
    nghttp2_session* session = nullptr;
    std::map<int32_t, std::string> paths;
    std::map<int32_t, std::string> bodies;
    H2Server* server = nullptr;
  };

  H2Server(asio::io_context& io, uint32_t max_streams)
      : io_(io), acceptor_(io, {asio::ip::make_address("127.0.0.1"), 0}), max_streams_(max_streams) {
    asio::co_spawn(io_, accept_loop(), asio::detached);
  }
  tcp::endpoint endpoint() const { return acceptor_.local_endpoint(); }

  void respond(Conn& c, int32_t id) {
    c.bodies[id] = c.paths[id];
    nghttp2_nv nv[] = {{(uint8_t*)":status", (uint8_t*)"200", 7, 3, NGHTTP2_NV_FLAG_NONE}};
    nghttp2_data_provider p{};
    p.read_callback = [](nghttp2_session* s, int32_t id, uint8_t* buf, size_t len, uint32_t* flags,
                         nghttp2_data_source*, void* u) -> ssize_t {
      Conn& c = *static_cast<Conn*>(u);
      std::string& b = c.bodies[id];
      size_t n = std::min(len, b.size());
      memcpy(buf, b.data(), n);
      b.erase(0, n);
      if (b.empty()) {
        *flags |= NGHTTP2_DATA_FLAG_EOF | NGHTTP2_DATA_FLAG_NO_END_STREAM;
        static nghttp2_nv t[] = {{(uint8_t*)"grpc-status", (uint8_t*)"0", 11, 1, NGHTTP2_NV_FLAG_NONE}};
        nghttp2_submit_trailer(s, id, t, 1);
      }
      return static_cast<ssize_t>(n);
    };
    nghttp2_submit_response(c.session, id, nv, 1, &p);
  }
  void release_held() {
    auto held = std::move(held_);
    for (auto& [conn, id] : held) {
      respond(*conn, id);
      flush(*conn);
    }
  }
  void goaway_all() {
    for (auto& c : conns) {
      nghttp2_submit_goaway(c->session, NGHTTP2_FLAG_NONE,
                            nghttp2_session_get_last_proc_stream_id(c->session), NGHTTP2_NO_ERROR, nullptr,
                            0);
      flush(*c);
    }
  }
  void drop_all() {
    for (auto& c : conns) c->sock.close();
  }

  bool hold = false;
  uint32_t initial_window = 65535;  // 0: the client may send no DATA (its writes wait)
  int accepted = 0;
  int requests = 0;
  std::vector<std::shared_ptr<Conn>> conns;

 private:
  void flush(Conn& c) {
    while (true) {
      const uint8_t* p;
      ssize_t n = nghttp2_session_mem_send(c.session, &p);
      if (n <= 0 || !c.sock.is_open()) return;
      boost::system::error_code ec;
      asio::write(c.sock, asio::buffer(p, static_cast<size_t>(n)), ec);
    }
  }
  awaitable<void> accept_loop() {
    while (true) {
      tcp::socket s = co_await acceptor_.async_accept(asio::use_awaitable);
      accepted++;
      auto c = std::make_shared<Conn>(std::move(s));
      c->server = this;
      nghttp2_session_callbacks* cbs;
      nghttp2_session_callbacks_new(&cbs);
      nghttp2_session_callbacks_set_on_header_callback(
          cbs,
          [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl, const uint8_t* v,
             size_t vl, uint8_t, void* u) -> int {
            if (std::string_view((const char*)n, nl) == ":path")
              static_cast<Conn*>(u)->paths[f->hd.stream_id].assign((const char*)v, vl);
            return 0;
          });
      nghttp2_session_callbacks_set_on_frame_recv_callback(
          cbs, [](nghttp2_session*, const nghttp2_frame* f, void* u) -> int {
            Conn& c = *static_cast<Conn*>(u);
            if ((f->hd.type == NGHTTP2_HEADERS || f->hd.type == NGHTTP2_DATA) &&
                (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
              c.server->requests++;
              if (c.server->hold) {
                for (auto& sp : c.server->conns)
                  if (sp.get() == &c) c.server->held_.emplace_back(sp, f->hd.stream_id);
              } else {
                c.server->respond(c, f->hd.stream_id);
              }
            }
            return 0;
          });
      nghttp2_session_server_new(&c->session, cbs, c.get());
      nghttp2_session_callbacks_del(cbs);
      nghttp2_settings_entry settings[] = {{NGHTTP2_SETTINGS_MAX_CONCURRENT_STREAMS, max_streams_},
                                           {NGHTTP2_SETTINGS_INITIAL_WINDOW_SIZE, initial_window}};
      nghttp2_submit_settings(c->session, NGHTTP2_FLAG_NONE, settings, 2);
      conns.push_back(c);
      flush(*c);
      asio::co_spawn(io_, read_loop(c), asio::detached);
    }
  }
  awaitable<void> read_loop(std::shared_ptr<Conn> c) {
    char buf[16384];
    while (true) {
      auto [ec, n] = co_await c->sock.async_read_some(asio::buffer(buf), asio::as_tuple(asio::use_awaitable));
      if (ec) co_return;
      nghttp2_session_mem_recv(c->session, (const uint8_t*)buf, n);
      flush(*c);
    }
  }

  asio::io_context& io_;
  tcp::acceptor acceptor_;
  uint32_t max_streams_;
  std::vector<std::pair<std::shared_ptr<Conn>, int32_t>> held_;
};

http2::Fields head(const std::string& path) {
  return {{":method", "POST"}, {":scheme", "http"}, {":authority", "n"}, {":path", path}, {"te", "trailers"}};
}

Clock::time_point soon(double s = 5) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// Runs `body` as a coroutine on `io` until it finishes (or 10 s pass: a failure, not a wait).
void run(asio::io_context& io, std::function<awaitable<void>()> body) {
  bool done = false;
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        co_await body();
        done = true;
      },
      asio::detached);
  const auto end = soon(10);
  while (!done && Clock::now() < end) io.run_one_for(std::chrono::milliseconds(100));
  ASSERT_TRUE(done);
}

// Runs the loop until `pred` holds (or 10 s pass).
bool run_until(asio::io_context& io, const std::function<bool()>& pred) {
  const auto end = soon(10);
  while (!pred() && Clock::now() < end) io.run_one_for(std::chrono::milliseconds(100));
  return pred();
}

H2Target target(const H2Server& s, double idle = 60) {
  H2Target t;
  t.endpoint = s.endpoint();
  t.key = h2_pool_key("127.0.0.1:" + std::to_string(t.endpoint.port()), nullptr, "");
  t.connect_timeout = 5;
  t.idle_timeout = idle;
  return t;
}

// One full exchange on `s`: returns the body, or "<closed>" / "<timeout>".
awaitable<std::string> exchange(H2UpstreamStream& s) {
  s.finish();
  if (co_await s.wait_head(soon()) != H2UpstreamStream::Wait::ready) co_return "<no head>";
  std::string body;
  while (true) {
    H2UpstreamStream::Wait w = co_await s.wait_data(soon());
    if (w != H2UpstreamStream::Wait::ready) co_return "<closed>";
    body += s.state().data;
    s.consume(s.state().data.size());
    if (s.state().remote_ended) break;
  }
  co_return body;
}

TEST(H2UpstreamPool, StreamsShareOneConnection) {
  asio::io_context io;
  H2Server server(io, 100);
  H2UpstreamPool pool(io.get_executor());
  run(io, [&]() -> awaitable<void> {
    H2OpenError e;
    auto a = co_await pool.open(target(server), head("/a"), false, e);
    auto b = co_await pool.open(target(server), head("/b"), false, e);
    EXPECT_TRUE(a && b);
    EXPECT_EQ(co_await exchange(*b), "/b");
    EXPECT_EQ(co_await exchange(*a), "/a");
    EXPECT_EQ(a->state().trailers.at(0).name, "grpc-status");
  });
  EXPECT_EQ(server.accepted, 1);
  EXPECT_EQ(pool.connections(), 1u);
}

TEST(H2UpstreamPool, TheNodesStreamLimitOpensAnotherConnection) {
  asio::io_context io;
  H2Server server(io, 1);
  server.hold = true;
  H2UpstreamPool pool(io.get_executor());
  std::unique_ptr<H2UpstreamStream> a, b;
  run(io, [&]() -> awaitable<void> {
    H2OpenError e;
    a = co_await pool.open(target(server), head("/a"), true, e);
  });
  ASSERT_TRUE(run_until(io, [&] { return server.requests == 1; }));  // its SETTINGS arrived meanwhile
  run(io, [&]() -> awaitable<void> {
    H2OpenError e;
    b = co_await pool.open(target(server), head("/b"), true, e);
  });
  ASSERT_TRUE(run_until(io, [&] { return server.requests == 2; }));
  EXPECT_EQ(server.accepted, 2);
  EXPECT_EQ(pool.connections(), 2u);
  server.release_held();
  ASSERT_TRUE(run_until(io, [&] { return a->state().remote_ended && b->state().remote_ended; }));
}

TEST(H2UpstreamPool, IdleConnectionIsClosed) {
  asio::io_context io;
  H2Server server(io, 100);
  H2UpstreamPool pool(io.get_executor());
  run(io, [&]() -> awaitable<void> {
    H2OpenError e;
    auto a = co_await pool.open(target(server, 0.05), head("/a"), false, e);
    EXPECT_EQ(co_await exchange(*a), "/a");
  });
  EXPECT_TRUE(run_until(io, [&] { return pool.connections() == 0; }));
}

TEST(H2UpstreamPool, GoawayDrainsTheConnection) {
  asio::io_context io;
  H2Server server(io, 100);
  H2UpstreamPool pool(io.get_executor());
  run(io, [&]() -> awaitable<void> {
    H2OpenError e;
    auto a = co_await pool.open(target(server), head("/a"), false, e);
    EXPECT_EQ(co_await exchange(*a), "/a");
  });
  server.goaway_all();
  ASSERT_TRUE(run_until(io, [&] { return pool.connections() == 0; }));
  run(io, [&]() -> awaitable<void> {
    H2OpenError e;
    auto b = co_await pool.open(target(server), head("/b"), false, e);
    EXPECT_EQ(co_await exchange(*b), "/b");
  });
  EXPECT_EQ(server.accepted, 2);
}

TEST(H2UpstreamPool, ConnectionLossFailsOpenStreams) {
  asio::io_context io;
  H2Server server(io, 100);
  server.hold = true;
  H2UpstreamPool pool(io.get_executor());
  std::unique_ptr<H2UpstreamStream> a;
  run(io, [&]() -> awaitable<void> {
    H2OpenError e;
    a = co_await pool.open(target(server), head("/a"), true, e);
  });
  ASSERT_TRUE(run_until(io, [&] { return server.requests == 1; }));
  server.drop_all();
  H2UpstreamStream::Wait w = H2UpstreamStream::Wait::ready;
  run(io, [&]() -> awaitable<void> { w = co_await a->wait_head(soon()); });
  EXPECT_EQ(w, H2UpstreamStream::Wait::closed);
  EXPECT_TRUE(a->state().closed);
  EXPECT_FALSE(a->state().unprocessed);
  EXPECT_EQ(pool.connections(), 0u);
}

TEST(H2UpstreamPool, DeadlineAndInterrupt) {
  asio::io_context io;
  H2Server server(io, 100);
  server.hold = true;
  H2UpstreamPool pool(io.get_executor());
  run(io, [&]() -> awaitable<void> {
    H2OpenError e;
    auto a = co_await pool.open(target(server), head("/a"), true, e);
    EXPECT_EQ(co_await a->wait_head(soon(0.05)), H2UpstreamStream::Wait::timeout);
    a->interrupt();
    EXPECT_EQ(co_await a->wait_head(soon()), H2UpstreamStream::Wait::interrupted);
  });
}

// A bidirectional call waits both ways on one stream at once (session_grpc_body.cc's pump writes while the
// relay waits for the response): neither wait may wake the other, or the two re-arm each other forever.
TEST(H2UpstreamPool, WriteAndResponseWaitsDoNotWakeEachOther) {
  asio::io_context io;
  H2Server server(io, 100);
  server.hold = true;
  server.initial_window = 0;
  H2UpstreamPool pool(io.get_executor());
  std::unique_ptr<H2UpstreamStream> s;
  run(io, [&]() -> awaitable<void> {
    H2OpenError e;
    s = co_await pool.open(target(server), head("/bidi"), false, e);
  });
  ASSERT_TRUE(s);
  bool wrote = true;
  bool write_done = false;
  H2UpstreamStream::Wait head_wait = H2UpstreamStream::Wait::ready;
  bool head_done = false;
  const std::string body(H2UpstreamStream::kSendHighWater + 1, 'x');
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        co_await s->write(body, soon());  // queued: the window is 0
        wrote = co_await s->write("more", soon(0.3));
        write_done = true;
      },
      asio::detached);
  asio::co_spawn(
      io,
      [&]() -> awaitable<void> {
        head_wait = co_await s->wait_head(soon(0.3));
        head_done = true;
      },
      asio::detached);
  size_t handlers = 0;
  const auto end = soon(10);
  while (!(write_done && head_done) && Clock::now() < end)
    handlers += io.run_one_for(std::chrono::milliseconds(50));
  ASSERT_TRUE(write_done && head_done);
  EXPECT_FALSE(wrote);  // its deadline
  EXPECT_EQ(head_wait, H2UpstreamStream::Wait::timeout);
  EXPECT_LT(handlers, 100u);  // woken by the deadlines only, not by each other
  s.reset();
}

TEST(H2UpstreamPool, RefusedConnect) {
  asio::io_context io;
  tcp::endpoint dead;
  {
    tcp::acceptor a(io, {asio::ip::make_address("127.0.0.1"), 0});
    dead = a.local_endpoint();
  }
  H2UpstreamPool pool(io.get_executor());
  H2Target t;
  t.endpoint = dead;
  t.key = h2_pool_key("dead", nullptr, "");
  H2OpenError e = H2OpenError::none;
  run(io, [&]() -> awaitable<void> {
    auto s = co_await pool.open(t, head("/a"), true, e);
    EXPECT_EQ(s, nullptr);
  });
  EXPECT_EQ(e, H2OpenError::connect);
}

}  // namespace
}  // namespace portico::proxy
