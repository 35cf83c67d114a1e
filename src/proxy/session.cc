// Client side of a session: request heads in, routing, Portico's own responses, bookkeeping.
// The upstream side (tries, body streaming, response relay) is in session_exchange.cc.
#include "proxy/session.h"

#include "http2/grpc.h"

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cctype>
#include <cstring>
#include <exception>

#include "base/log.h"
#include "http/path.h"
#include "plugins/consumers.h"
#include "proxy/h2_connection.h"
#include "proxy/recycling.h"
#include "proxy/worker.h"
#include "snapshot/snapshot.h"
#include "tls/cert_store.h"
#include "tls/request_check.h"
#include "tls/server_context.h"

namespace portico::proxy {

namespace asio = boost::asio;
using asio::awaitable;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

namespace {
// A request head usually fits in 4 KiB; the buffer grows (up to the head limit) only for one that does not,
// so an idle keep-alive connection costs little memory.
constexpr size_t kInitialBuffer = 4 * 1024;

// Lingering close bounds (nginx: lingering_timeout 5 s, lingering_time 30 s; the Admin API: 2 s, 8 MiB). The
// client's reading the response takes one round trip; these only have to outlast that, and they cap what a
// client can make Portico read and wait for after it was answered.
constexpr auto kLingerIdle = std::chrono::seconds(2);           // ends after this long without a byte
constexpr auto kLingerTotal = std::chrono::seconds(10);         // ends this long after it started, at most
constexpr auto kLingerWhileDraining = std::chrono::seconds(1);  // ... when the worker drains
constexpr size_t kLingerMaxBytes = 16 * 1024 * 1024;            // ends once this much was read and dropped

// Empty lines (CRLF) tolerated before a request-line, per request: a stray CRLF or two after a body is common
// (RFC 9112 2.2); hundreds are not a client's mistake, and discarding them without a bound would let a client
// make Portico read for nothing. Beyond it: 400 and close.
constexpr size_t kMaxEmptyLineBytes = 256;

// RFC 9113 3.4: what an h2c client with prior knowledge sends first.
constexpr std::string_view kH2Preface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

int status_class(int status) {
  int c = status / 100 - 1;
  return c < 0 ? 0 : (c > 4 ? 4 : c);
}
}  // namespace

Session::Session(Worker& worker, ClientStream client)
    : worker_(worker), client_(std::move(client)), timer_(worker.context()), head_out_(StringCache::take()) {
  // A new timer's expiry is the epoch, which arm_until would never see as later than a deadline: start at
  // "never" so the first deadline (armed by run() before the watchdog starts) moves it.
  timer_.expires_at(Clock::time_point::max());
  limits_.max_head_size = worker_.options().max_header_size;
  limits_.max_target_size = worker_.options().max_target_size;
}

plugins::RequestContext& Session::plugin_context() {
  if (!plugin_ctx_) {
    plugin_ctx_.emplace();
    plugin_ctx_->worker = worker_.index();
    plugin_ctx_->waiter = &plugin_waiter_;
  }
  return *plugin_ctx_;
}

Session::Session(Worker& worker, asio::ip::tcp::socket socket, tls::ServerContext* tls,
                 const asio::ip::tcp::endpoint* peer)
    : Session(worker, ClientStream(std::move(socket))) {
  tls_ = tls;
  boost::system::error_code ec;
  client_.socket().set_option(asio::ip::tcp::no_delay(true), ec);
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (peer != nullptr && peer->size() <= sizeof ss) {
    std::memcpy(&ss, peer->data(), peer->size());
    client_ip_ = router::IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
    client_ip_len_ = client_ip_.format(client_ip_text_);
  } else if (::getpeername(client_.socket().native_handle(), reinterpret_cast<sockaddr*>(&ss), &len) == 0) {
    client_ip_ = router::IpAddress::from_sockaddr(reinterpret_cast<sockaddr*>(&ss));
    client_ip_len_ = client_ip_.format(client_ip_text_);
  }
  in_ = worker_.head_buffers().take(kInitialBuffer);
  if (tls_ != nullptr) {
    client_.enable_tls(tls_->context());
    match_.tls = true;
    secure_ = true;
  } else {
    h2c_possible_ = worker_.options().h2c;
  }
  worker_.add_session(this);
  worker_.metrics().connections_open.add();
  worker_.metrics().connections_total.add();
}

Session::Session(Worker& worker, std::shared_ptr<H2Stream> stream, const ConnectionInfo& connection,
                 std::vector<char> head, size_t head_size, StreamIo& io)
    : Session(worker, ClientStream(std::move(io.socket), std::move(stream))) {
  stream_mode_ = true;
  secure_ = connection.tls;
  match_.tls = connection.tls;
  client_ip_ = connection.client_ip;
  client_ip_len_ = std::min(connection.client_ip_text.size(), sizeof client_ip_text_ - 1);
  std::memcpy(client_ip_text_, connection.client_ip_text.data(), client_ip_len_);
  tls_sni_ = connection.sni;
  ssl_client_s_dn_ = connection.ssl_client_s_dn;
  ssl_client_verify_ = connection.ssl_client_verify;
  in_ = std::move(head);
  in_end_ = head_size;
}

Session::~Session() {
  StringCache::give(std::move(head_out_));
  worker_.head_buffers().give(std::move(in_));
  worker_.upstream_buffers().give(std::move(up_));
  if (stream_mode_) return;  // its H2Connection's session is the one the worker counts
  worker_.metrics().connections_open.sub();
  worker_.remove_session(this);
}

void Session::start() {
  auto self = shared_from_this();
  asio::co_spawn(
      worker_.context(), [self]() { return self->run(); },
      [self](std::exception_ptr e) {
        // run() threw (std::bad_alloc under memory exhaustion, ...): end the connection here, or
        // the watchdog, which re-arms while alive_, would hold the session and its sockets forever.
        if (!e || !self->alive_) return;
        self->alive_ = false;
        self->timer_.cancel();
        boost::system::error_code ec;
        if (self->upstream_) self->upstream_->socket.close(ec);
        self->client_.close(ec);
        static thread_local ::portico::log::Throttle throttle;
        uint64_t suppressed = 0;
        if (!throttle.due(suppressed)) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& x) {
          PORTICO_LOG(warn, "connection ended by an error: %s (%llu similar not logged)", x.what(),
                      static_cast<unsigned long long>(suppressed));
        } catch (...) {
          PORTICO_LOG(warn, "connection ended by an unknown error");
        }
      });
  // run() starts first (co_spawn dispatches inline) and may already have armed a deadline: keep it.
  if (!alive_) return;
  timer_.expires_at(deadline_);
  watch(std::move(self));
}

void Session::on_drain() {
  if (h2_) {
    h2_->on_drain();
  } else if (idle_) {
    force_close();
  } else if (lingering_) {
    // Shutdown wins over the linger's full bounds, but not at once: a response just sent still gets its
    // moment to be read.
    linger_end_ = std::min(linger_end_, Clock::now() + kLingerWhileDraining);
    arm_until(std::min(deadline_, linger_end_), Guard::client);
  }
}

void Session::force_close() {
  if (h2_) h2_->force_close();
  boost::system::error_code ec;
  if (delay_timer_) delay_timer_->cancel();
  client_.close(ec);
  if (upstream_) upstream_->socket.close(ec);
  if (h2up_) h2up_->interrupt();
}

asio::steady_timer& Session::delay_timer() {
  if (!delay_timer_) delay_timer_.emplace(worker_.context());
  return *delay_timer_;
}

void Session::arm_until(Clock::time_point deadline, Guard guard) {
  guard_ = guard;
  deadline_ = deadline;
  // Only an earlier deadline needs the timer moved; a later one is picked up when the timer fires.
  if (deadline_ < timer_.expiry()) timer_.expires_at(deadline_);
}

void Session::watch(std::shared_ptr<Session> self) {
  // A completion handler rather than a second coroutine: one wait at a time, re-armed from its completion
  // (an HTTP/2 stream is a session too, and a coroutine per stream cost a co_spawn and its frames).
  timer_.async_wait([self = std::move(self)](const boost::system::error_code&) mutable {
    Session& s = *self;
    if (!s.alive_) return;
    if (s.deadline_ <= Clock::now()) {
      s.timed_out_ = true;
      boost::system::error_code ec;
      if (s.guard_ == Guard::head) {
        s.client_.cancel(ec);  // read_request_head answers 408, then closes
      } else {
        if (s.guard_ != Guard::client && s.upstream_) s.upstream_->socket.close(ec);
        if (s.guard_ != Guard::upstream) s.client_.close(ec);
      }
      s.deadline_ = Clock::time_point::max();
    }
    s.timer_.expires_at(s.deadline_);
    s.watch(std::move(self));
  });
}

awaitable<bool> Session::tls_handshake() {
  // The newest certificates this worker has; the handshake pins them (a swap applies to the next one).
  std::shared_ptr<PinnedSnapshot> pinned = worker_.snapshot();
  const tls::CertStore* store = pinned && pinned->snapshot ? pinned->snapshot->tls.get() : nullptr;
  tls::ServerContext::prepare(client_.ssl(), store);
  arm(worker_.options().tls_handshake_timeout, Guard::client);
  auto [ec, unused] = co_await client_.tls()->async_handshake(nothrow);
  disarm();
  tls::ServerContext::prepare(client_.ssl(), nullptr);
  if (ec) {
    worker_.metrics().tls_handshake_failures.add();
    PORTICO_LOG(debug, "TLS handshake with %.*s failed: %s%s", static_cast<int>(client_ip_len_),
                client_ip_text_, timed_out_ ? "timed out" : ec.message().c_str(), "");
    co_return false;
  }
  worker_.metrics().tls_handshakes.add();
  if (SSL_session_reused(client_.ssl()) == 1) worker_.metrics().tls_resumed.add();
  ssl_client_s_dn_ = tls::ServerContext::client_subject(client_.ssl());
  ssl_client_verify_ = tls::ServerContext::client_verify(client_.ssl());
  if (const char* sni = SSL_get_servername(client_.ssl(), TLSEXT_NAMETYPE_host_name)) {
    tls_sni_ = sni;
    for (char& c : tls_sni_) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    if (!tls_sni_.empty() && tls_sni_.back() == '.') tls_sni_.pop_back();
  }
  tls_ready_ = true;
  SSL_set_mode(client_.ssl(), SSL_MODE_RELEASE_BUFFERS);
  co_return true;
}

bool Session::client_verified_for_host(const snapshot::Snapshot& snap) const {
  // The handshake chose its certificate (and whether to ask for a client one) by SNI; routing goes by Host
  // (APISIX verify_https_client: 400). tls/request_check.h has the rules.
  const tls::RequestTls state{tls_sni_, worker_.options().tls_default_sni,
                              std::strcmp(ssl_client_verify_, "SUCCESS") == 0};
  std::string normalized;
  const tls::RequestCheck verdict =
      tls::check_request(snap.tls.get(), state, request_.host, [&]() -> std::string_view {
        // skip_mtls_uri_regex sees the path routes match (an invalid one is answered 400 right after this
        // check).
        return http::normalize_path(request_.path, normalized) == http::PathStatus::normalized
                   ? std::string_view(normalized)
                   : request_.path;
      });
  if (verdict == tls::RequestCheck::ok) return true;
  // A client can send this at request rate: throttled.
  static thread_local ::portico::log::Throttle throttle;
  uint64_t suppressed = 0;
  if (!throttle.due(suppressed)) return false;
  if (verdict == tls::RequestCheck::no_certificate) {
    PORTICO_LOG(warn,
                "client certificate was not present, path \"%.*s\": 400 (%llu similar answers not logged)",
                static_cast<int>(request_.path.size()), request_.path.data(),
                static_cast<unsigned long long>(suppressed));
  } else {
    PORTICO_LOG(warn,
                "client certificate verified with SNI \"%s\", but the host is \"%.*s\": 400 (%llu similar "
                "answers not logged)",
                tls_sni_.c_str(), static_cast<int>(request_.host.size()), request_.host.data(),
                static_cast<unsigned long long>(suppressed));
  }
  return false;
}

awaitable<void> Session::serve_h2(std::string_view initial) {
  ConnectionInfo info;
  info.client_ip = client_ip_;
  info.client_ip_text.assign(client_ip_text_, client_ip_len_);
  info.tls = secure_;
  info.sni = tls_sni_;
  info.ssl_client_s_dn = ssl_client_s_dn_;
  info.ssl_client_verify = ssl_client_verify_;
  idle_ = false;
  h2_ = std::make_shared<H2Connection>(worker_, client_, std::move(info));
  std::shared_ptr<H2Connection> h2 = h2_;
  co_await h2->run(initial);
  if (h2->linger_wanted()) {
    // As after an HTTP/1.1 response the client may still be sending: run()'s caller lingers.
    response_started_ = true;
    request_body_done_ = false;
  }
}

awaitable<void> Session::run() {
  if (tls_ != nullptr && !co_await tls_handshake()) {
    alive_ = false;
    timer_.cancel();
    boost::system::error_code ec;
    client_.close(ec);
    co_return;
  }
  bool h2 = false;
  if (tls_ready_ && worker_.options().http2) {
    const unsigned char* proto = nullptr;
    unsigned int len = 0;
    SSL_get0_alpn_selected(client_.ssl(), &proto, &len);
    h2 = len == 2 && proto[0] == 'h' && proto[1] == '2';
  }
  if (h2) co_await serve_h2({});
  while (!h2) {
    if (!co_await read_request_head()) {
      if (h2c_preface_) co_await serve_h2(std::string_view(in_.data() + in_begin_, client_buffered()));
      break;
    }
    idle_ = false;
    bool keep = co_await handle_request();
    // Every path through handle_request ends in finish_request, which gives leases back after the log
    // phase; this only catches one that did not, while the plugins holding them are still pinned.
    if (plugin_ctx_) plugin_ctx_->release_leases(-1);
    pinned_.reset();
    if (!keep || worker_.draining() || stream_mode_) break;
    consume_client(request_.head_size + body_from_in_);
    if (!leftover_.empty()) {
      // Bytes read past the end of a chunked body: the start of the next pipelined request.
      in_begin_ = 0;
      in_end_ = leftover_.size();
      if (in_.size() < in_end_) in_.resize(in_end_);
      std::memcpy(in_.data(), leftover_.data(), in_end_);
      leftover_.clear();
    }
    idle_ = true;
  }
  boost::system::error_code ec;
  if (upstream_) upstream_->socket.close(ec);
  if (tls_ready_ && client_.is_open() && !client_gone_) {
    // close_notify: the client can tell the end of a response from a cut connection.
    arm(worker_.options().client_send_timeout, Guard::client);
    co_await client_.async_close_notify(nothrow);
    disarm();
  }
  if (client_may_still_send()) co_await linger();
  alive_ = false;
  timer_.cancel();
  if (!client_gone_) client_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  client_.close(ec);
}

bool Session::client_may_still_send() {
  // Only a close that follows a response needs care; the client's own close, or its stall, ends it anyway.
  // An HTTP/2 stream has no socket of its own: its connection goes on.
  if (stream_mode_ || !response_started_ || client_gone_ || !client_.is_open()) return false;
  if (!request_body_done_ || !leftover_.empty()) return true;
  // Pipelined bytes behind the request (in the buffer, or still in the kernel's).
  if (client_buffered() > request_.head_size + body_from_in_) return true;
  boost::system::error_code ec;
  return client_.available(ec) > 0;
}

awaitable<void> Session::linger() {
  // The half-close tells the client at once that the response is complete (it sees EOF after it); what it
  // still sends is read and dropped until it closes too, or a bound is reached.
  boost::system::error_code ec;
  client_.shutdown(asio::ip::tcp::socket::shutdown_send, ec);
  lingering_ = true;
  linger_end_ = Clock::now() + (worker_.draining() ? kLingerWhileDraining : kLingerTotal);
  std::vector<char>& buffer = up_.size() > in_.size() ? up_ : in_;  // both are free now
  size_t dropped = 0;
  while (dropped < kLingerMaxBytes) {
    // A passed deadline closes the socket (Guard::client), which ends the read; so does Worker::abort.
    arm_until(std::min(Clock::now() + kLingerIdle, linger_end_), Guard::client);
    // The socket itself: after a TLS close_notify what the client still sends is dropped undecrypted.
    auto [rec, n] =
        co_await client_.socket().async_read_some(asio::buffer(buffer.data(), buffer.size()), nothrow);
    disarm();
    if (rec || n == 0) break;
    dropped += n;
  }
  lingering_ = false;
}

void Session::consume_client(size_t n) {
  in_begin_ += n;
  if (in_begin_ == in_end_) in_begin_ = in_end_ = 0;
}

awaitable<bool> Session::read_request_head() {
  const Options& opt = worker_.options();
  response_started_ = false;  // a new request: nothing of its response is out yet
  timed_out_ = false;
  request_body_done_ = true;  // no body is known before the head parses (errors close anyway)
  client_error_ = 0;
  client_gone_ = false;
  size_t fresh = client_buffered();  // bytes not yet seen by the parser: all of them on entry
  // Until the first byte of a head the connection is idle: one --keepalive-timeout from now (the end of the
  // previous request, or the accept), closed silently when it passes. Empty lines (CRLF) are not a head
  // (RFC 9112 2.2: a server SHOULD ignore at least one before the request-line; some clients send one after
  // a body): they are discarded and leave the connection idle, without moving that deadline, so they can
  // neither start the 408 nor keep an idle connection open. At most kMaxEmptyLineBytes of them (400 after).
  // One clock read for both deadlines while no read came between (an HTTP/2 stream's head is all there).
  const Clock::time_point entered = Clock::now();
  bool read_since_entry = false;
  const Clock::time_point idle_deadline = base::deadline_after(entered, opt.keepalive_timeout);
  size_t empty_line_bytes = 0;
  bool head_started = false;
  // --header-timeout is one deadline for the whole head, counted from its first byte other than an empty
  // line (bytes already buffered, pipelined behind the previous request, count from now: the end of that
  // request). It is not re-armed by later reads, so a client trickling a byte at a time is answered 408 like
  // a silent one (the deadline of nginx's client_header_timeout, but answered: nginx closes without a
  // response).
  Clock::time_point head_deadline = Clock::time_point::max();
  while (true) {
    bool partial_preface = false;
    bool preface_diverged = false;
    if (h2c_possible_) {
      // The h2c preface (prior knowledge) can only be the connection's very first bytes.
      const size_t k = std::min(client_buffered(), kH2Preface.size());
      if (std::memcmp(in_.data() + in_begin_, kH2Preface.data(), k) != 0) {
        h2c_possible_ = false;
        preface_diverged = true;  // line ends seen while it matched were not parsed: parse now
      } else if (k == kH2Preface.size()) {
        h2c_preface_ = true;
        co_return false;
      } else {
        partial_preface = k > 0;
      }
    }
    if (!head_started) {
      while (client_buffered() >= 2 && in_[in_begin_] == '\r' && in_[in_begin_ + 1] == '\n') {
        consume_client(2);
        empty_line_bytes += 2;
      }
      fresh = std::min(fresh, client_buffered());
      if (empty_line_bytes > kMaxEmptyLineBytes) {
        co_await reject_head(400, "too many empty lines before request-line");
        co_return false;
      }
      // A lone CR may still become an empty line; anything else (a bare LF too: the parser answers 400) is
      // the first byte of a head.
      if (client_buffered() > 1 || (client_buffered() == 1 && in_[in_begin_] != '\r')) {
        head_started = true;
        head_deadline = base::deadline_after(read_since_entry ? Clock::now() : entered, opt.header_timeout);
      }
    }
    // A head can only complete (or newly fail) on a line end; a client trickling bytes without one costs
    // no re-parse.
    if (!partial_preface && (preface_diverged || (fresh > 0 && std::memchr(in_.data() + in_end_ - fresh, '\n',
                                                                           fresh) != nullptr))) {
      http::ParseResult r = http::parse_request(in_.data() + in_begin_, client_buffered(), limits_, request_);
      if (r.status == http::ParseStatus::complete) {
        h2c_possible_ = false;
        idle_ = false;
        request_start_ =
            read_since_entry ? Clock::now() : entered;  // an HTTP/2 stream's head: no second read
        co_return true;
      }
      if (r.status == http::ParseStatus::error) {
        co_await reject_head(r.error_status, r.error_reason);
        co_return false;
      }
    }
    // Need more bytes: make room (compact, then grow up to the head limit).
    if (in_begin_ > 0 && in_end_ == in_.size()) {
      std::memmove(in_.data(), in_.data() + in_begin_, client_buffered());
      in_end_ -= in_begin_;
      in_begin_ = 0;
    }
    if (in_end_ == in_.size()) {
      size_t limit = opt.max_header_size + 1024;  // the parser reports 431 once the head outgrows its limit
      if (in_.size() >= limit) {
        // Full without a complete head: the parser says which limit it is (414 for the target, else 431).
        http::ParseResult r =
            http::parse_request(in_.data() + in_begin_, client_buffered(), limits_, request_);
        bool parsed = r.status == http::ParseStatus::error;
        co_await reject_head(parsed ? r.error_status : 431,
                             parsed ? r.error_reason : "request header fields too large");
        co_return false;
      }
      in_.resize(std::min(limit, in_.size() * 2));
    }
    if (!head_started) {
      if (worker_.draining()) co_return false;
      idle_ = true;
      arm_until(idle_deadline, Guard::client);
    } else {
      idle_ = false;
      arm_until(head_deadline, Guard::head);
    }
    auto [ec, n] =
        co_await client_.async_read_some(asio::buffer(in_.data() + in_end_, in_.size() - in_end_), nothrow);
    disarm();
    read_since_entry = true;
    if (ec || n == 0) {
      // A reset connection takes no close_notify nor shutdown (each would only fail, a syscall each).
      if (ec == asio::error::connection_reset || ec == asio::error::broken_pipe) client_gone_ = true;
      if (timed_out_ && head_started) {
        timed_out_ = false;
        // The client started a request and did not finish its head in time: tell it why (RFC 9110
        // 15.5.9), then close.
        co_await reject_head(408, "request head not received in time");
      }
      co_return false;
    }
    // The deadline may have passed just as this read completed: the next wait re-arms it (already due).
    timed_out_ = false;
    in_end_ += n;
    fresh = n;
  }
}

awaitable<bool> Session::handle_request() {
  start_request_bookkeeping();
  response_started_ = false;
  request_body_done_ = request_.framing == http::BodyFraming::none;
  body_streamed_ = false;
  continue_sent_ = false;
  close_after_ = !request_.keep_alive;
  body_from_in_ = 0;
  if (request_.framing == http::BodyFraming::content_length &&
      client_buffered() - request_.head_size >= request_.content_length) {
    body_from_in_ = static_cast<size_t>(request_.content_length);  // the whole body is already here
    request_body_done_ = true;
  }

  pinned_ = worker_.snapshot();
  if (!pinned_ || !pinned_->snapshot) {
    bool keep = co_await send_error(503, "no configuration loaded", close_after_ || !request_body_done_);
    finish_request(503, nullptr);
    co_return keep;
  }
  const snapshot::Snapshot& snap = *pinned_->snapshot;

  if (secure_ && !client_verified_for_host(snap)) {
    bool keep = co_await send_error(400, "400 Bad Request", close_after_ || !request_body_done_);
    finish_request(400, nullptr);
    co_return keep;
  }
  if (request_.method == http::Method::CONNECT) {
    co_await send_error(501, "CONNECT is not supported", true);
    finish_request(501, nullptr);
    co_return false;
  }
  if (request_.path.empty()) {  // OPTIONS * asks about the server itself: no route serves it
    bool keep = co_await send_error(404, "404 Route Not Found", close_after_ || !request_body_done_);
    finish_request(404, nullptr);
    co_return keep;
  }
  // Route on the fields the origin will receive: those named in Connection are not forwarded.
  remove_connection_options(request_);
  std::string_view path = request_.path;
  switch (http::normalize_path(request_.path, normalized_path_)) {
    case http::PathStatus::unchanged:
      break;
    case http::PathStatus::normalized:
      path = normalized_path_;
      break;
    case http::PathStatus::invalid: {
      worker_.metrics().bad_requests.add();
      co_await send_error(400, "invalid request path", true);
      finish_request(400, nullptr);
      co_return false;
    }
  }
  // The origin sees the path that was routed, so it cannot resolve it differently ("/a/../admin"). The
  // common case, an origin-form target already normal, is forwarded as received, without a copy.
  if (path.data() == request_.path.data() && request_.target.starts_with('/')) {
    target_ = request_.target;
  } else {
    rebuilt_target_.assign(path);
    if (!request_.query.empty()) {
      rebuilt_target_ += '?';
      rebuilt_target_ += request_.query;
    }
    target_ = rebuilt_target_;
  }

  match_.method = request_.method;
  match_.method_text = request_.method_text;
  match_.host = request_.host;
  match_.path = path;
  match_.query = request_.query;
  match_.target = request_.target;
  match_.head = &request_;
  match_.client = client_ip_;
  const snapshot::RouteRuntime* matched = snap.match(match_);
  if (matched == nullptr) {
    bool keep = co_await send_error(404, "404 Route Not Found", close_after_ || !request_body_done_);
    finish_request(404, nullptr);
    co_return keep;
  }
  const snapshot::RouteRuntime& route = *matched;

  max_body_ = route.max_body_size >= 0 ? route.max_body_size : worker_.options().max_body_size;
  int64_t max_body = max_body_;
  if (max_body >= 0 && request_.framing == http::BodyFraming::content_length &&
      request_.content_length > static_cast<uint64_t>(max_body)) {
    co_await send_error(413, "request body too large", true);
    finish_request(413, &route);
    co_return false;
  }

  pipeline_ = plugins::Pipeline(snap.global_rules.get(), route.plugins.get());
  if (!pipeline_.empty()) {
    bool keep = false;
    if (!co_await run_plugins(snap, route, path, keep)) {
      finish_request(plugin_context().response.status != 0 ? plugin_context().response.status
                                                           : plugin_context().reply.status,
                     &route);
      co_return keep;
    }
  }

  if (!client_.is_open()) {
    // The client gave up already (an HTTP/2 stream reset while its plugins ran): nothing goes upstream.
    finish_request(499, &route);
    co_return false;
  }
  // traffic-split's choice is read only when plugins ran (the context is reset then).
  bool keep = co_await forward(route, pipeline_.empty() ? snapshot::SplitTarget{route.upstream, route.timeout}
                                                        : route.target_for(plugin_context().split_owner,
                                                                           plugin_context().split_choice));
  co_return keep && !close_after_;
}

awaitable<bool> Session::run_plugins(const snapshot::Snapshot& snap, const snapshot::RouteRuntime& route,
                                     std::string_view path, bool& keep) {
  plugins::RequestContext& ctx = plugin_context();
  ctx.reset();
  ctx.request = &request_;
  ctx.path = path;
  ctx.client_ip = client_ip_;
  ctx.client_ip_text = std::string_view(client_ip_text_, client_ip_len_);
  ctx.tls = secure_;
  ctx.ssl_client_s_dn = ssl_client_s_dn_;
  ctx.ssl_client_verify = secure_ ? std::string_view(ssl_client_verify_) : std::string_view();
  ctx.route_id = route.spec->id;
  ctx.route_name = route.spec->name;
  ctx.service_id = route.spec->service_id;
  ctx.service_name = route.service_name;
  ctx.matched_uri = router::matched_uri(route.spec->uris, path);
  ctx.matched_host = router::matched_host(route.hosts, request_.host);
  ctx.consumers = snap.consumers.get();
  ctx.match = &match_;
  bool done = pipeline_.run_request(ctx);
  while (!done) {
    // A plugin waits for I/O (context.h Completion). No guard is armed: the plugin's I/O has its own
    // timeout, and a session closed meanwhile (force_close) cancels the timer without a completion.
    if (ctx.waiting()) {
      delay_timer().expires_at(Clock::time_point::max());
      co_await delay_timer().async_wait(nothrow);
    }
    if (ctx.waiting() || !client_.is_open()) {
      ctx.cancel_wait();
      if (!ctx.replied()) ctx.reply.status = 499;
      keep = false;
      co_return false;
    }
    done = pipeline_.resume_request(ctx);
  }
  if (ctx.delay_seconds > 0) {
    // The worker serves other connections meanwhile. No guard is armed: the client is not expected to
    // send or read anything during the wait, and a session closed meanwhile (force_close) cancels it.
    delay_timer().expires_after(
        std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(ctx.delay_seconds)));
    auto [ec] = co_await delay_timer().async_wait(nothrow);
    if (ec || !client_.is_open()) {
      if (!ctx.replied()) ctx.reply.status = 499;  // recorded as nginx records a request given up on
      keep = false;
      co_return false;
    }
  }
  if (ctx.replied()) {
    keep = co_await send_plugin_reply();
    co_return false;
  }
  if (ctx.consumer != nullptr) {
    // What the origin learns of who called (APISIX 3.x attach_consumer); a client's own copies are replaced.
    ctx.set_upstream_header("X-Consumer-Username", ctx.consumer->username);
    if (!ctx.credential_id.empty()) {
      ctx.set_upstream_header("X-Credential-Identifier", ctx.credential_id);
    } else {
      ctx.remove_upstream_header("X-Credential-Identifier");
    }
  }
  if (ctx.upstream.target_changed()) {
    // Built in place, reusing the buffer's capacity across requests. Neither view points into it: the path
    // is the plugins' or the routed one, the query the plugins' or the received one.
    const std::string_view path = ctx.upstream_path();
    const std::string_view query = ctx.upstream_query();
    rebuilt_target_.assign(path);
    if (!query.empty()) {
      rebuilt_target_ += '?';
      rebuilt_target_ += query;
    }
    target_ = rebuilt_target_;
  }
  co_return true;
}

awaitable<bool> Session::send_plugin_reply() {
  plugins::RequestContext& ctx = plugin_context();
  plugins::ResponseInfo info;
  info.status = ctx.reply.status;
  pipeline_.run_response(ctx, info);
  if (response_started_) co_return false;
  const bool close = close_after_ || worker_.draining() || !request_body_done_;
  if (ctx.reply.status >= 400 && is_grpc_request()) {
    // A gRPC client reads statuses from trailers: a refusal (401, 403, 429...) as a gRPC error.
    const int status = ctx.response.status != 0 ? ctx.response.status : ctx.reply.status;
    co_return co_await send_grpc_error(status, http2::grpc::message_of_body(ctx.reply.body), close);
  }
  write_plugin_reply(head_out_, ctx.reply, &ctx.response, close, request_.method == http::Method::HEAD);
  bool ok = co_await write_client(bufs(asio::buffer(head_out_)));
  co_return ok && !close;
}

awaitable<bool> Session::write_client(Buffers buffers) {
  if (H2Stream* stream = client_.h2()) {
    // As write_upstream: a stream that takes the bytes and may take more goes on without a round through
    // the event loop, where a hundred streams of the connection would otherwise step in lockstep.
    const std::string_view pieces[3] = {{static_cast<const char*>(buffers[0].data()), buffers[0].size()},
                                        {static_cast<const char*>(buffers[1].data()), buffers[1].size()},
                                        {static_cast<const char*>(buffers[2].data()), buffers[2].size()}};
    const size_t total = buffers[0].size() + buffers[1].size() + buffers[2].size();
    boost::system::error_code ec;
    size_t n = 0;
    if (stream->write_now(pieces, 3, ec)) {
      n = ec ? 0 : total;
    } else {
      arm(worker_.options().client_send_timeout, Guard::client);
      std::tie(ec, n) = co_await client_.async_wait_h2_writable(total, nothrow);
      disarm();
    }
    bytes_sent_ += n;
    if (n > 0) response_started_ = true;
    co_return !ec;
  }
  arm(worker_.options().client_send_timeout, Guard::client);
  auto [ec, n] = co_await asio::async_write(client_, buffers, nothrow);
  disarm();
  bytes_sent_ += n;
  if (n > 0) response_started_ = true;
  co_return !ec;
}

void Session::write_response_head(const http::ResponseHead& response, const ClientResponseParams& params) {
  if (H2Stream* stream = client_.h2()) {
    head_out_.clear();
    stream->start_response(response, params);
    response_started_ = true;  // even when no body byte follows (HEAD, 204, an empty body)
    return;
  }
  write_client_response_head(head_out_, response, params);
}

awaitable<bool> Session::send_error(int status, std::string_view message, bool close) {
  if (response_started_) co_return false;  // too late for a clean error: the connection just closes
  close = close || worker_.draining() || !request_body_done_;
  if (grpc_web_call() && !plugin_context().replied())
    co_return co_await send_grpc_web_error(status, message, close);
  if (is_grpc_request()) co_return co_await send_grpc_error(status, message, close);
  if (!pipeline_.empty() && !plugin_context().replied()) {
    // Portico's own answer for a request the plugins saw (502, 504, 413 while streaming): their response
    // phase runs on it too, as APISIX's header_filter does on its errors (so CORS headers reach a 502).
    plugins::RequestContext& ctx = plugin_context();
    ctx.reply.status = status;
    ctx.reply.body = "{\"error_msg\":\"";
    ctx.reply.body += message;
    ctx.reply.body += "\"}\n";
    ctx.reply.content_type = "application/json";
    plugins::ResponseInfo info;
    info.status = status;
    pipeline_.run_response(ctx, info);
    write_plugin_reply(head_out_, ctx.reply, &ctx.response, close, request_.method == http::Method::HEAD);
  } else {
    write_error_response(head_out_, status, message, close, request_.method == http::Method::HEAD);
  }
  bool ok = co_await write_client(bufs(asio::buffer(head_out_)));
  co_return ok && !close;
}

awaitable<void> Session::reject_head(int status, std::string_view reason) {
  idle_ = false;
  request_body_done_ = false;  // the rest of the head, and any body, stay unread: the close lingers
  worker_.metrics().bad_requests.add();
  request_start_ = Clock::now();
  start_request_bookkeeping();
  // The last parse may predate a buffer move or be the previous request's: parse again, so that the access
  // log reads views into the bytes as they are now (whatever of the request line arrived).
  http::parse_request(in_.data() + in_begin_, client_buffered(), limits_, request_);
  co_await send_error(status, reason, true);
  finish_request(status, nullptr);
}

void Session::start_request_bookkeeping() {
  pipeline_ = {};
  grpc_deadline_ = Clock::time_point::max();  // set by the first gRPC try (session_grpc.cc)
  upstream_seconds_ = -1;
  upstream_status_ = 0;
  upstream_addr_ = {};
  upstream_ip_ = {};
  bytes_sent_ = 0;
  body_bytes_read_ = 0;
  if (h2_body_.started) {
    std::string replay = std::move(h2_body_.replay);
    replay.clear();
    h2_body_ = H2Body{};
    if (replay.capacity() <= kH2ReplayLimit) h2_body_.replay = std::move(replay);  // keep its allocation
  }
}

void Session::finish_request(int status, const snapshot::RouteRuntime* route, Clock::time_point now) {
  // An HTTP/2 stream: what its HEADERS and DATA carried, not the HTTP/1.1 bytes the session wrote.
  if (H2Stream* stream = client_.h2()) bytes_sent_ = stream->bytes_sent();
  if (now == Clock::time_point{}) now = Clock::now();
  double seconds = std::chrono::duration<double>(now - request_start_).count();
  status::WorkerMetrics& m = worker_.metrics();
  m.route(route ? route->metrics_slot : 0).by_class[static_cast<size_t>(status_class(status))].add();
  m.request_duration.observe(seconds);
  if (upstream_seconds_ >= 0) m.upstream_duration.observe(upstream_seconds_);
  if (!pipeline_.empty()) {
    plugins::LogInfo info;
    info.status = status;
    info.request_seconds = seconds;
    info.upstream_seconds = upstream_seconds_;
    info.bytes_sent = bytes_sent_;
    info.upstream_addr = upstream_addr_;
    info.upstream_ip = upstream_ip_;
    info.bytes_received = request_.head_size + body_bytes_read_;
    pipeline_.run_log(plugin_context(), info);
    plugin_context().release_leases(seconds);
    pipeline_ = {};
  }
  AccessLog& log = worker_.access_log();
  if (!log.enabled()) return;
  AccessRecord rec;
  rec.remote_addr = std::string_view(client_ip_text_, client_ip_len_);
  rec.method = request_.method_text;
  rec.uri = request_.target;
  rec.host = request_.host_header;
  rec.user_agent = request_.find("user-agent");
  rec.route_id = route ? std::string_view(route->spec->id) : std::string_view();
  rec.upstream_addr = upstream_addr_;
  rec.status = status;
  rec.upstream_status = upstream_status_;
  rec.bytes_sent = bytes_sent_;
  rec.request_time = seconds;
  if (stream_mode_) rec.protocol = "HTTP/2.0";
  if (secure_) {
    rec.tls = true;
    rec.ssl_client_s_dn = ssl_client_s_dn_;
    rec.ssl_client_verify = ssl_client_verify_;
  }
  rec.upstream_time = upstream_seconds_;
  log.write(rec);
}

}  // namespace portico::proxy
