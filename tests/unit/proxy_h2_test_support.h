// What proxy_h2_connection_test.cc drives an H2Connection with, each on its own thread so the test thread
// only blocks on sockets and condition variables (no sleeps):
// - Origin: a tiny HTTP/1.1 server (Asio coroutines on its own io_context) that records each request it
//   reads and answers by path: /hello, /echo (the body back), /chunked (a chunked body), /hold (answers
//   once release() is called),
//   /big (a 1 MB content-length of which it sends 20 KB, then waits for the proxy to close).
// - Proxy: one real proxy::Worker (its own thread) with h2c on a loopback listener, a route "/*" to the
//   origin, a route "/dead" to a port that refuses connections (Portico's own 502), and its access log in a
//   temporary file, read back once the worker has stopped.
// - H2Client: nghttp2's client session over a blocking socket; records what each stream received.
// Worker and Origin are thread-safe where their comments say so; H2Client is the test thread's only.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nghttp2/nghttp2.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "config/loader.h"
#include "proxy/worker.h"
#include "snapshot/snapshot.h"
#include "status/metrics.h"
#include "upstream/health.h"

namespace portico::proxy::h2test {

namespace asio = boost::asio;
using asio::ip::tcp;
using namespace std::chrono_literals;
using Fields = std::vector<std::pair<std::string, std::string>>;

class Origin {
 public:
  struct Request {
    std::string method, path, body;
    Fields fields;
    size_t received = 0;        // body bytes read so far (content-length bodies)
    bool complete = false;      // head and whole body read
    bool closed_early = false;  // /big: the proxy closed the connection mid-response
  };

  Origin() : acceptor_(io_, {asio::ip::make_address("127.0.0.1"), 0}) {
    asio::co_spawn(io_, accept_loop(), asio::detached);
    thread_ = std::thread([this] { io_.run(); });  // no work guard: returns once every coroutine ended
  }
  ~Origin() { stop(); }
  uint16_t port() const { return port_; }

  // Any thread: answers the /hold requests waiting and those still to come.
  void release() {
    asio::post(io_, [this] {
      released_ = true;
      for (asio::steady_timer* t : holds_) t->cancel();
    });
  }
  // Any thread: stops accepting, releases holds and waits until every connection has ended (the proxy must
  // have closed its connections: after that, requests() is final).
  void stop() {
    if (!thread_.joinable()) return;
    release();
    asio::post(io_, [this] { acceptor_.close(); });
    thread_.join();
  }
  // Any thread: waits until `pred` holds for the requests recorded (10 s at most).
  bool wait_for(const std::function<bool(const std::vector<Request>&)>& pred) {
    std::unique_lock lock(mu_);
    return cv_.wait_for(lock, 10s, [&] { return pred(requests_); });
  }
  std::vector<Request> requests() {
    std::lock_guard lock(mu_);
    return requests_;
  }

 private:
  static constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

  asio::awaitable<void> accept_loop() {
    while (true) {
      auto [ec, socket] = co_await acceptor_.async_accept(nothrow);
      if (ec) co_return;
      asio::co_spawn(io_, serve(std::move(socket)), asio::detached);
    }
  }
  template <typename F>
  void update(size_t index, F f) {
    {
      std::lock_guard lock(mu_);
      f(requests_[index]);
    }
    cv_.notify_all();
  }
  // Reads until `buf` holds `need` bytes; false if the connection ended first.
  static asio::awaitable<bool> fill(tcp::socket& s, std::string& buf, size_t need) {
    char tmp[4096];
    while (buf.size() < need) {
      auto [ec, n] = co_await s.async_read_some(asio::buffer(tmp), nothrow);
      if (ec) co_return false;
      buf.append(tmp, n);
    }
    co_return true;
  }
  static asio::awaitable<bool> read_chunked(tcp::socket& s, std::string& buf, std::string& body) {
    while (true) {
      size_t eol;
      while ((eol = buf.find("\r\n")) == std::string::npos) {
        if (!co_await fill(s, buf, buf.size() + 1)) co_return false;
      }
      const size_t size = std::stoul(buf.substr(0, eol), nullptr, 16);
      buf.erase(0, eol + 2);
      if (!co_await fill(s, buf, size + 2)) co_return false;  // data and its CRLF (no trailers sent)
      body += buf.substr(0, size);
      buf.erase(0, size + 2);
      if (size == 0) co_return true;
    }
  }
  static asio::awaitable<bool> respond(tcp::socket& s, const std::string& extra, const std::string& body) {
    std::string out =
        "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" + extra + "\r\n" + body;
    auto [ec, n] = co_await asio::async_write(s, asio::buffer(out), nothrow);
    co_return !ec;
  }

  asio::awaitable<void> serve(tcp::socket s) {
    std::string buf;
    while (true) {
      auto [ec, n] = co_await asio::async_read_until(s, asio::dynamic_buffer(buf), "\r\n\r\n", nothrow);
      if (ec) co_return;
      Request r;
      const std::string head = buf.substr(0, n);
      buf.erase(0, n);
      const size_t sp1 = head.find(' '), sp2 = head.find(' ', sp1 + 1);
      r.method = head.substr(0, sp1);
      r.path = head.substr(sp1 + 1, sp2 - sp1 - 1);
      size_t content_length = 0;
      bool chunked = false;
      for (size_t at = head.find("\r\n") + 2; at < n - 2;) {
        const size_t end = head.find("\r\n", at), colon = head.find(':', at);
        std::string name = head.substr(at, colon - at), value = head.substr(colon + 2, end - colon - 2);
        for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        if (name == "content-length") content_length = std::stoul(value);
        if (name == "transfer-encoding") chunked = value == "chunked";
        r.fields.emplace_back(std::move(name), std::move(value));
        at = end + 2;
      }
      size_t index;
      {
        std::lock_guard lock(mu_);
        index = requests_.size();
        requests_.push_back(r);
      }
      cv_.notify_all();
      std::string body;
      if (chunked) {
        if (!co_await read_chunked(s, buf, body)) co_return;
      } else {
        while (buf.size() < content_length) {
          update(index, [&](Request& q) { q.received = buf.size(); });
          if (!co_await fill(s, buf, buf.size() + 1)) co_return;
        }
        body = buf.substr(0, content_length);
        buf.erase(0, content_length);
      }
      update(index, [&](Request& q) {
        q.received = body.size();
        q.body = body;
        q.complete = true;
      });
      bool ok = true;
      if (r.path == "/hold" && !released_) {
        asio::steady_timer t(io_, asio::steady_timer::time_point::max());
        holds_.insert(&t);
        co_await t.async_wait(nothrow);
        holds_.erase(&t);
      }
      if (r.path == "/big") {
        std::string out = "HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n" + std::string(20000, 'b');
        co_await asio::async_write(s, asio::buffer(out), nothrow);
        char tmp[256];
        while (true) {
          auto [rec, rn] = co_await s.async_read_some(asio::buffer(tmp), nothrow);
          if (rec) break;
        }
        update(index, [](Request& q) { q.closed_early = true; });
        co_return;
      }
      if (r.path == "/chunked") {
        const std::string out =
            "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nfirst\r\n1000\r\n" +
            std::string(4096, 'c') + "\r\n0\r\n\r\n";
        auto [wec, wn] = co_await asio::async_write(s, asio::buffer(out), nothrow);
        if (wec) co_return;
        continue;
      }
      if (r.path == "/echo") {
        ok = co_await respond(s, "X-Method: " + r.method + "\r\n", body);
      } else {
        ok = co_await respond(s, "X-Origin: yes\r\nContent-Type: text/plain\r\n",
                              r.path == "/hold" ? "held" : "hello, world");
      }
      if (!ok) co_return;
    }
  }

  asio::io_context io_;
  tcp::acceptor acceptor_;
  uint16_t port_ = acceptor_.local_endpoint().port();
  std::set<asio::steady_timer*> holds_;  // io_ thread only
  bool released_ = false;                // io_ thread only
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Request> requests_;
  std::thread thread_;
};

// One worker serving h2c on 127.0.0.1, every path routed to `origin_port`.
class Proxy {
 public:
  explicit Proxy(uint16_t origin_port) : metrics_(1), log_(std::tmpfile()), reserve_(io_), dead_(io_) {
    // The port is held by a bound, never listening SO_REUSEPORT socket so no other test can take it between
    // here and the worker's bind; the kernel hands connections only to listening sockets.
    port_ = bind_unlistened(reserve_);
    // /dead goes to a port bound and never listening: connections are refused, Portico answers 502 itself.
    const uint16_t dead = bind_unlistened(dead_);
    const std::string doc =
        R"({"routes":[{"id":"r1","uri":"/*","upstream":{"nodes":{"127.0.0.1:)" + std::to_string(origin_port) +
        R"(":1}}},{"id":"r2","uri":"/dead","priority":10,"upstream":{"nodes":{"127.0.0.1:)" +
        std::to_string(dead) + R"(":1}}}]})";
    config::LoadResult r = config::parse_text(doc, config::Format::json);
    if (!r.ok) throw std::runtime_error(r.describe());
    snapshot::BuildContext ctx;
    ctx.health = &health_;
    ctx.metrics = &metrics_;
    std::string error;
    auto snap = snapshot::build(std::move(r.config), "h", "test", 1, ctx, &error);
    if (!snap) throw std::runtime_error(error);
    worker_ = std::make_unique<Worker>(0, options_, metrics_, fileno(log_));
    worker_->publish(std::move(snap));
    worker_->listen({asio::ip::make_address("127.0.0.1"), port_});
    worker_->start();
  }
  ~Proxy() {
    stop();
    std::fclose(log_);
  }
  uint16_t port() const { return port_; }
  Worker& worker() { return *worker_; }
  static uint16_t bind_unlistened(tcp::socket& s) {
    s.open(tcp::v4());
    int one = 1;
    ::setsockopt(s.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one);
    s.set_option(asio::socket_base::reuse_address(true));
    s.bind({asio::ip::make_address("127.0.0.1"), 0});
    return s.local_endpoint().port();
  }
  // Ends the worker (at once, unless it already finished after a drain) and returns its access log.
  std::string stop() {
    if (!stopped_) {
      worker_->abort();
      worker_->join();
      stopped_ = true;
    }
    std::string out;
    char buf[4096];
    size_t n;
    std::rewind(log_);
    while ((n = std::fread(buf, 1, sizeof buf, log_)) > 0) out.append(buf, n);
    return out;
  }

 private:
  Options options_;
  status::Metrics metrics_;
  upstream::HealthRegistry health_;
  std::FILE* log_;
  asio::io_context io_;
  tcp::socket reserve_;
  tcp::socket dead_;
  uint16_t port_ = 0;
  std::unique_ptr<Worker> worker_;
  bool stopped_ = false;
};

class H2Client {
 public:
  struct Stream {
    int status = 0;
    Fields fields;             // as received, ":status" included
    uint64_t field_bytes = 0;  // names and values of the response's header fields
    std::string body;
    bool end = false;
    int64_t rst = -1;  // the server's RST_STREAM code
  };
  struct Goaway {
    uint32_t code;
    int32_t last_stream_id;
  };

  // `peer_streams`: streams the client may open before the server's SETTINGS arrive (nghttp2's default 100).
  explicit H2Client(uint16_t port, uint32_t peer_streams = 100);
  ~H2Client() {
    nghttp2_session_del(session_);
    ::close(fd_);
  }

  // A request. `body` null: END_STREAM on HEADERS unless `open`, which leaves the stream open (send_end).
  int32_t submit(const std::string& method, const std::string& path, const Fields& extra = {},
                 const std::string* body = nullptr, bool open = false);
  // DATA on a stream opened with `open` (several frames if long); `end`: END_STREAM on the last.
  void send_data(int32_t id, const std::string& data, bool end);
  void reset(int32_t id, uint32_t code) { nghttp2_submit_rst_stream(session_, NGHTTP2_FLAG_NONE, id, code); }
  // Sends what is pending, then reads until `pred` holds, the server closes (eof()) or 10 s pass.
  bool pump_until(const std::function<bool()>& pred);
  void flush();
  std::map<int32_t, Stream> streams;
  std::vector<Goaway> goaways;
  bool eof() const { return eof_; }

 private:
  struct Source {
    std::string data;
    size_t offset = 0;
  };
  nghttp2_session* session_ = nullptr;
  int fd_ = -1;
  bool eof_ = false;
  nghttp2_data_provider provider(const std::string& data);
  std::deque<Source> sources_;  // request bodies, stable addresses
};

inline H2Client::H2Client(uint16_t port, uint32_t peer_streams) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) throw std::runtime_error("connect");
  nghttp2_session_callbacks* cb;
  nghttp2_session_callbacks_new(&cb);
  nghttp2_session_callbacks_set_on_header_callback(
      cb, [](nghttp2_session*, const nghttp2_frame* f, const uint8_t* n, size_t nl, const uint8_t* v,
             size_t vl, uint8_t, void* u) {
        Stream& s = static_cast<H2Client*>(u)->streams[f->hd.stream_id];
        std::string name(reinterpret_cast<const char*>(n), nl), value(reinterpret_cast<const char*>(v), vl);
        if (name == ":status") s.status = std::stoi(value);
        s.field_bytes += nl + vl;
        s.fields.emplace_back(std::move(name), std::move(value));
        return 0;
      });
  nghttp2_session_callbacks_set_on_data_chunk_recv_callback(
      cb, [](nghttp2_session*, uint8_t, int32_t id, const uint8_t* d, size_t len, void* u) {
        static_cast<H2Client*>(u)->streams[id].body.append(reinterpret_cast<const char*>(d), len);
        return 0;
      });
  nghttp2_session_callbacks_set_on_frame_recv_callback(
      cb, [](nghttp2_session*, const nghttp2_frame* f, void* u) {
        H2Client& c = *static_cast<H2Client*>(u);
        if ((f->hd.type == NGHTTP2_DATA || f->hd.type == NGHTTP2_HEADERS) &&
            (f->hd.flags & NGHTTP2_FLAG_END_STREAM)) {
          c.streams[f->hd.stream_id].end = true;
        }
        if (f->hd.type == NGHTTP2_RST_STREAM) c.streams[f->hd.stream_id].rst = f->rst_stream.error_code;
        if (f->hd.type == NGHTTP2_GOAWAY)
          c.goaways.push_back({f->goaway.error_code, f->goaway.last_stream_id});
        return 0;
      });
  nghttp2_option* opt;
  nghttp2_option_new(&opt);
  nghttp2_option_set_peer_max_concurrent_streams(opt, peer_streams);
  nghttp2_session_client_new2(&session_, cb, this, opt);
  nghttp2_option_del(opt);
  nghttp2_session_callbacks_del(cb);
  nghttp2_submit_settings(session_, NGHTTP2_FLAG_NONE, nullptr, 0);
}

inline int32_t H2Client::submit(const std::string& method, const std::string& path, const Fields& extra,
                                const std::string* body, bool open) {
  Fields h = {{":method", method}, {":scheme", "http"}, {":authority", "h2.test"}, {":path", path}};
  h.insert(h.end(), extra.begin(), extra.end());
  std::vector<nghttp2_nv> nva;
  for (auto& [n, v] : h) {
    nva.push_back({reinterpret_cast<uint8_t*>(n.data()), reinterpret_cast<uint8_t*>(v.data()), n.size(),
                   v.size(), NGHTTP2_NV_FLAG_NONE});
  }
  if (body == nullptr) {
    if (open)
      return nghttp2_submit_headers(session_, NGHTTP2_FLAG_NONE, -1, nullptr, nva.data(), nva.size(),
                                    nullptr);
    return nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), nullptr, nullptr);
  }
  nghttp2_data_provider p = provider(*body);
  return nghttp2_submit_request(session_, nullptr, nva.data(), nva.size(), &p, nullptr);
}

inline nghttp2_data_provider H2Client::provider(const std::string& data) {
  sources_.push_back({data, 0});
  nghttp2_data_provider p{};
  p.source.ptr = &sources_.back();
  p.read_callback = [](nghttp2_session*, int32_t, uint8_t* buf, size_t len, uint32_t* flags,
                       nghttp2_data_source* src, void*) -> ssize_t {
    Source& s = *static_cast<Source*>(src->ptr);
    const size_t n = std::min(len, s.data.size() - s.offset);
    std::memcpy(buf, s.data.data() + s.offset, n);
    s.offset += n;
    if (s.offset == s.data.size()) *flags |= NGHTTP2_DATA_FLAG_EOF;
    return static_cast<ssize_t>(n);
  };
  return p;
}

inline void H2Client::send_data(int32_t id, const std::string& data, bool end) {
  flush();  // nghttp2 knows a stream opened with submit_headers once its HEADERS went out
  nghttp2_data_provider p = provider(data);
  if (nghttp2_submit_data(session_, end ? NGHTTP2_FLAG_END_STREAM : NGHTTP2_FLAG_NONE, id, &p) != 0) {
    throw std::runtime_error("nghttp2_submit_data");
  }
}

inline void H2Client::flush() {
  // One send for all that is pending, so frames submitted together (a RST_STREAM and the next HEADERS) reach
  // the server in one read.
  std::string out;
  const uint8_t* d;
  ssize_t n;
  while ((n = nghttp2_session_mem_send(session_, &d)) > 0) out.append(reinterpret_cast<const char*>(d), n);
  for (size_t off = 0; off < out.size();) {
    ssize_t w = ::send(fd_, out.data() + off, out.size() - off, MSG_NOSIGNAL);
    if (w <= 0) return;  // the server closed: what it sent is still read by pump_until
    off += static_cast<size_t>(w);
  }
}

inline bool H2Client::pump_until(const std::function<bool()>& pred) {
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (true) {
    flush();
    if (pred()) return true;
    if (eof_) return false;
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
    uint8_t buf[16384];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      eof_ = true;
      continue;
    }
    nghttp2_session_mem_recv(session_, buf, static_cast<size_t>(n));
  }
}

}  // namespace portico::proxy::h2test
