// Upstream side of a session: choosing nodes and retrying, sending the request (head and body), reading the
// response head, and relaying the response body to the client. Bodies stream through fixed buffers in both
// directions, one read then one write at a time, so a slow reader slows the writer (backpressure) and memory
// stays bounded whatever the body size.
#include <sys/socket.h>
#include <sys/uio.h>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <cerrno>
#include <charconv>
#include <cstring>

#include "base/log.h"
#include "proxy/session.h"
#include "proxy/session_attempt.h"
#include "proxy/worker.h"
#include "snapshot/snapshot.h"

namespace portico::proxy {

namespace asio = boost::asio;
using asio::awaitable;
using namespace asio::experimental::awaitable_operators;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

namespace {
// Upstream reads and body relay use 16 KiB (HAProxy's default buffer); a response head that does not fit
// grows the buffer up to the head limit.
constexpr size_t kUpstreamBuffer = 16 * 1024;
constexpr size_t kMaxTries = 16;
const char kCrlf[] = "\r\n";
const char kLastChunk[] = "0\r\n\r\n";
const char kContinue[] = "HTTP/1.1 100 Continue\r\n\r\n";

void format_chunk_size(std::string& out, size_t n) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n, 16);
  (void)ec;
  out.assign(buf, end);
  out += "\r\n";
}

// Whether the request as the origin receives it may be repeated (RFC 9110 9.2.2): proxy-rewrite may have
// changed its method (a POST sent as GET, or the other way round). It never changes a HEAD request's method
// nor makes one, so the response framing, read by request_.method, stays right.
bool sent_idempotent(const http::RequestHead& request, const plugins::Pipeline& pipeline,
                     const plugins::RequestContext* ctx) {
  if (pipeline.empty() || ctx == nullptr || ctx->upstream.method.empty())
    return http::is_idempotent(request.method);
  const std::string_view m = ctx->upstream.method;
  return m == "GET" || m == "PUT" || m == "DELETE" || m == "OPTIONS" || m == "TRACE";
}

// Writes what the socket takes now, without waiting (MSG_DONTWAIT: whatever Asio set on the descriptor), and
// advances `buffers` past it. False: the connection failed (`ec` says how); true with bytes left: the rest
// waits for the socket.
bool send_now(int fd, std::array<asio::const_buffer, 3>& buffers, boost::system::error_code& ec) {
  iovec iov[3];
  int count = 0;
  for (const asio::const_buffer& b : buffers) {
    if (b.size() == 0) continue;
    iov[count].iov_base = const_cast<void*>(b.data());
    iov[count].iov_len = b.size();
    ++count;
  }
  if (count == 0) return true;
  msghdr msg{};
  msg.msg_iov = iov;
  msg.msg_iovlen = static_cast<size_t>(count);
  ssize_t n;
  do {
    // One piece (a request without body bytes, the common case): send(2) spares the kernel the message
    // header and vector copies of sendmsg(2).
    n = count == 1 ? ::send(fd, iov[0].iov_base, iov[0].iov_len, MSG_DONTWAIT | MSG_NOSIGNAL)
                   : ::sendmsg(fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN || errno == EWOULDBLOCK) return true;
    ec.assign(errno, boost::system::system_category());
    return false;
  }
  auto left = static_cast<size_t>(n);
  for (asio::const_buffer& b : buffers) {
    const size_t k = std::min(left, b.size());
    b += k;
    left -= k;
  }
  return true;
}

bool empty(const std::array<asio::const_buffer, 3>& buffers) {
  return buffers[0].size() == 0 && buffers[1].size() == 0 && buffers[2].size() == 0;
}

}  // namespace

awaitable<bool> Session::forward(const snapshot::RouteRuntime& route, snapshot::SplitTarget target) {
  snapshot::UpstreamRuntime& up = *target.upstream;
  upstream::Balancer& balancer = *up.per_worker[worker_.index()];
  const config::Upstream& spec = up.spec;
  std::string_view hash_key;
  if (spec.type == config::LbType::chash) up.hash_key.get(match_, hash_key);
  const config::PassiveCheck* passive =
      spec.checks && spec.checks->passive ? &*spec.checks->passive : nullptr;
  if (up_.size() < kUpstreamBuffer) up_ = worker_.upstream_buffers().take(kUpstreamBuffer);

  int excluded[kMaxTries];
  size_t excluded_count = 0;
  int tries = std::min<int>(up.tries, static_cast<int>(kMaxTries));
  Failure last = Failure::none;
  bool any_node = false;
  for (int attempt = 0; attempt < tries; ++attempt) {
    if (attempt > 0) {
      // Nothing reached the origin after a failed connect, so any request may go elsewhere.
      bool connect_failed =
          last == Failure::connect || last == Failure::connect_timeout || last == Failure::refused;
      bool safe =
          connect_failed ||
          (sent_idempotent(request_, pipeline_, plugin_ctx_ ? &*plugin_ctx_ : nullptr) && !body_streamed_);
      double elapsed = std::chrono::duration<double>(Clock::now() - request_start_).count();
      if (!safe || response_started_ || (spec.retry_timeout > 0 && elapsed >= spec.retry_timeout)) break;
      if (up.grpc && Clock::now() >= grpc_deadline_) break;  // the call's deadline covers every try
      worker_.metrics().upstream_retries.add();
    }
    int node = balancer.pick(hash_key, std::span<const int>(excluded, excluded_count));
    if (node < 0) break;
    any_node = true;
    excluded[excluded_count++] = node;

    Attempt a;
    a.route = &route;
    a.upstream = &up;
    a.timeout = &target.timeout;
    a.node = &up.nodes[static_cast<size_t>(node)];
    // Last try: no tries left, or no node left to try (then an origin's 502/503/504 is relayed as is).
    a.last_try = attempt + 1 == tries || excluded_count >= up.nodes.size();
    upstream_addr_ = a.node->pool_key;
    upstream_ip_ = a.node->address;
    balancer.on_request_start(node);
    // The try's latency only for a balancer that reads it (ewma): a clock read per try less for the others.
    const bool timed = balancer.uses_latency();
    const Clock::time_point started = timed ? Clock::now() : Clock::time_point{};
    // scheme grpc / grpcs: one HTTP/2 stream instead of an HTTP/1.1 exchange (session_grpc.cc).
    Failure f = up.grpc ? co_await try_h2_node(a) : co_await try_node(a);
    double latency = 0;
    if (timed) {
      // try_node returned from where it read ended_at, without waiting in between.
      const Clock::time_point ended = a.ended_at != Clock::time_point{} ? a.ended_at : Clock::now();
      latency = std::chrono::duration<double>(ended - started).count();
    }
    // A certificate that does not verify is a trust or naming problem, not a sick node: it neither ejects
    // the node (balancer, passive checks) nor counts as a connect error.
    const bool counted = f != Failure::client && f != Failure::tls_verify && f != Failure::refused;
    balancer.on_request_end(node, latency, f != Failure::none && counted);
    if (passive && counted) {
      int outcome = f == Failure::none || f == Failure::bad_status           ? upstream_status_
                    : f == Failure::timeout || f == Failure::connect_timeout ? -1
                                                                             : 0;
      a.node->health->report_passive(*passive, outcome, up.has_active_check);
    }
    if (f == Failure::connect || f == Failure::connect_timeout)
      worker_.metrics().upstream_connect_errors.add();
    if (f == Failure::timeout || f == Failure::connect_timeout) worker_.metrics().upstream_timeouts.add();
    if (f == Failure::none) {
      const int edited = pipeline_.empty() ? 0 : plugin_context().response.status;
      // Still the loop turn in which try_node read ended_at (the response's end), when it did.
      finish_request(edited != 0 ? edited : upstream_status_, &route, a.ended_at);
      co_return !close_after_;
    }
    last = f;
    if (f == Failure::client) break;  // the client's fault (or gone): no other node would do better
    // The same name checked on every node fails the same way on every node: no retry storm.
    if (f == Failure::tls_verify && !a.name_per_node) break;
  }
  if (upstream_) {
    boost::system::error_code ec;
    upstream_->socket.close(ec);
    upstream_.reset();
  }
  bool timed_out = last == Failure::timeout || last == Failure::connect_timeout;
  int status = client_error_ ? client_error_ : !any_node ? 503 : timed_out ? 504 : 502;
  const char* message = client_error_ == 400 && grpc_web_.bad_body ? "invalid base64 request body"
                        : client_error_ == 400                     ? "invalid chunked request body"
                        : client_error_ == 413                     ? "request body too large"
                        : !any_node                                ? "no upstream node available"
                        : timed_out                                ? "upstream timed out"
                        : last == Failure::connect || last == Failure::tls_verify || last == Failure::refused
                            ? "upstream connection failed"
                            : "invalid or failed upstream response";
  if (client_gone_) status = 499;  // nobody to answer; logged as nginx does
  bool keep = false;
  if (!response_started_ && !client_gone_) {
    keep = co_await send_error(status, message, close_after_);
  }
  finish_request(status, &route);
  co_return keep;
}

std::string_view Session::upstream_host(const Attempt& a) const {
  const config::Upstream& spec = a.upstream->spec;
  std::string_view host;
  switch (spec.pass_host) {
    case config::PassHost::pass:
      host = request_.host_header;
      break;
    case config::PassHost::node:
      host = a.node->host_port;
      break;
    case config::PassHost::rewrite:
      host = spec.upstream_host;
      break;
  }
  if (!pipeline_.empty() && plugin_ctx_ && !plugin_ctx_->upstream.host.empty())
    host = plugin_ctx_->upstream.host;
  if (host.empty()) host = a.node->host_port;  // an HTTP/1.0 client may send no Host at all
  return host;
}

awaitable<Session::Failure> Session::start_tls(Attempt& a, const std::string& key, std::string_view sni) {
  const std::shared_ptr<const tls::ClientContext>& ctx = a.upstream->tls;
  if (!ctx) co_return Failure::connect;  // its material did not load (logged at build): never plain HTTP
  upstream_->tls_context = ctx;
  upstream_->tls =
      std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(upstream_->socket, ctx->asio());
  SSL* ssl = upstream_->tls->native_handle();
  tls::ClientSessionCache& sessions = worker_.pool().sessions();
  if (!ctx->prepare(ssl, sni, sessions.find(key))) {
    // Verification with no name to check (client_context.cc fails closed) is a naming problem too.
    co_return ctx->verify() && sni.empty() ? Failure::tls_verify : Failure::connect;
  }
  arm(a.timeout->connect, Guard::upstream);  // as nginx: proxy_connect_timeout bounds the handshake too
  auto [ec] = co_await upstream_->tls->async_handshake(asio::ssl::stream_base::client, nothrow);
  disarm();
  if (!ec) co_return Failure::none;
  const bool was_timeout = timed_out_;
  timed_out_ = false;
  sessions.erase(key);
  const long verify = SSL_get_verify_result(ssl);
  if (!was_timeout && verify != X509_V_OK) {
    // Triggered at request rate by a forged Host under pass_host pass with verify off, or a bad origin.
    static thread_local ::portico::log::Throttle throttle;
    uint64_t suppressed = 0;
    if (throttle.due(suppressed)) {
      PORTICO_LOG(warn,
                  "upstream %s: TLS handshake with %s failed: certificate verification for \"%.*s\": %s "
                  "(%llu similar failures not logged)",
                  a.upstream->key.c_str(), a.node->pool_key.c_str(), static_cast<int>(sni.size()), sni.data(),
                  X509_verify_cert_error_string(verify), static_cast<unsigned long long>(suppressed));
    }
    co_return Failure::tls_verify;
  }
  PORTICO_LOG(warn, "upstream %s: TLS handshake with %s failed: %s", a.upstream->key.c_str(),
              a.node->pool_key.c_str(), was_timeout ? "timed out" : ec.message().c_str());
  co_return was_timeout ? Failure::connect_timeout : Failure::connect;
}

std::string_view Session::tls_server_name(Attempt& a) const {
  // The SNI is the Host the origin receives (APISIX: proxy_ssl_name $upstream_host), except that with
  // verification a client's Host (pass_host pass) is never the name checked: the node's own host is, as
  // nginx's default proxy_ssl_name $proxy_host. A client then cannot pick the identity the gateway trusts,
  // nor fail every node with a bogus Host. A name left empty (a Host of ":80") falls back to the node's.
  const config::Upstream& spec = a.upstream->spec;
  const bool edited_host = !pipeline_.empty() && plugin_ctx_ && !plugin_ctx_->upstream.host.empty();
  const bool verify = a.upstream->tls && a.upstream->tls->verify();
  const bool client_host = spec.pass_host == config::PassHost::pass && !edited_host;
  const bool node_name = verify && client_host;
  std::string_view sni =
      tls::host_without_port(node_name ? std::string_view(a.node->host_port) : upstream_host(a));
  if (sni.empty()) sni = tls::host_without_port(a.node->host_port);
  a.name_per_node = !edited_host && (node_name || spec.pass_host == config::PassHost::node);
  return sni;
}

awaitable<Session::Failure> Session::try_node(Attempt& a) {
  const config::Upstream& spec = a.upstream->spec;
  const config::Timeout& timeout = *a.timeout;
  // scheme https: the pool key also names the context and the SNI (upstream_pool.h).
  std::string_view sni;
  if (a.upstream->https) {
    sni = tls_server_name(a);
    tls_pool_key_.assign(a.node->pool_key).append("|tls:");
    if (a.upstream->tls) tls_pool_key_.append(std::to_string(a.upstream->tls->id()));
    tls_pool_key_.append("|").append(sni);
  }
  const std::string& key = a.upstream->https ? tls_pool_key_ : a.node->pool_key;
  // A reused connection may have been closed by the origin just as we picked it: if it fails before any
  // response byte and before any body byte was consumed from the client, try once more on a new connection.
  for (int fresh = 0; fresh < 2; ++fresh) {
    upstream_ = nullptr;
    if (fresh == 0) {
      // One clock read for the idle check and, for a pooled connection (it sends in this turn), sent_at.
      a.sent_at = Clock::now();
      upstream_ = worker_.pool().checkout(key, a.sent_at);
    }
    a.reused = upstream_ != nullptr;
    if (!upstream_) {
      if (a.node->address.empty()) co_return Failure::connect;
      boost::system::error_code ec;
      auto address = asio::ip::make_address(a.node->address, ec);
      if (ec) co_return Failure::connect;
      upstream_ = std::make_unique<UpstreamConnection>(asio::ip::tcp::socket(worker_.context()));
      arm(timeout.connect, Guard::upstream);
      auto [cec] = co_await upstream_->socket.async_connect(
          asio::ip::tcp::endpoint(address, a.node->spec.port), nothrow);
      disarm();
      if (cec) {
        bool was_timeout = timed_out_;
        timed_out_ = false;
        upstream_.reset();
        co_return was_timeout ? Failure::connect_timeout : Failure::connect;
      }
      upstream_->socket.set_option(asio::ip::tcp::no_delay(true), ec);
      if (a.upstream->https) {
        if (Failure f = co_await start_tls(a, key, sni); f != Failure::none) {
          upstream_.reset();
          co_return f;
        }
      }
    }
    a.reusable = spec.keepalive_pool.size > 0;
    if (!co_await send_request(a)) {
      bool was_timeout = timed_out_;
      timed_out_ = false;
      upstream_.reset();
      if (client_error_ || client_gone_ || !client_.is_open()) {
        client_gone_ = client_gone_ || !client_.is_open();
        co_return Failure::client;
      }
      if (a.reused && !body_streamed_ && !was_timeout) continue;
      co_return was_timeout ? Failure::timeout : Failure::send;
    }
    Failure f = co_await read_response_head(a);
    if (f != Failure::none && !client_.is_open()) {
      // The client went away (an HTTP/2 stream reset, force_close): no retry, nobody to answer.
      client_gone_ = true;
      upstream_.reset();
      co_return Failure::client;
    }
    if (f == Failure::reset && a.reused && !body_streamed_) {
      upstream_.reset();
      continue;
    }
    if (f != Failure::none) {
      upstream_.reset();
      co_return f;
    }
    // A TLS 1.3 ticket arrives after the handshake, ahead of the response: keep the session now.
    if (upstream_->tls) worker_.pool().sessions().store(key, upstream_->tls->native_handle());
    break;
  }
  if (!upstream_) co_return Failure::reset;

  upstream_status_ = response_.status;
  if (response_.status == 101) {
    co_await tunnel(a);
    upstream_seconds_ = std::chrono::duration<double>(Clock::now() - a.sent_at).count();
    upstream_.reset();
    close_after_ = true;
    co_return Failure::none;
  }
  bool retryable_status = response_.status == 502 || response_.status == 503 || response_.status == 504;
  if (retryable_status && !a.last_try &&
      sent_idempotent(request_, pipeline_, plugin_ctx_ ? &*plugin_ctx_ : nullptr) && !body_streamed_) {
    upstream_.reset();  // its body is not read: the connection cannot be reused
    co_return Failure::bad_status;
  }
  bool ok = co_await relay_response(a);
  a.ended_at = Clock::now();
  upstream_seconds_ = std::chrono::duration<double>(a.ended_at - a.sent_at).count();
  if (ok && a.reusable && upstream_) {
    upstream_->requests++;
    if (upstream_->requests < static_cast<uint32_t>(spec.keepalive_pool.requests)) {
      worker_.pool().checkin(key, std::move(upstream_), static_cast<size_t>(spec.keepalive_pool.size),
                             spec.keepalive_pool.idle_timeout, a.ended_at);
    }
  }
  upstream_.reset();
  if (!ok) close_after_ = true;
  co_return Failure::none;
}

awaitable<bool> Session::write_upstream(Buffers buffers) {
  if (!upstream_->tls) {
    // A request to an origin nearly always fits the socket's buffer: written here, the session goes on to
    // its response without a round through the event loop. Waiting for a write's completion there put every
    // stream of an HTTP/2 connection through each step in lockstep (a hundred sessions' memory touched
    // between two steps of one), the main cost of HTTP/2 requests (docs/benchmarks.md, THREADALLOC).
    boost::system::error_code ec;
    wrote_inline_ = true;
    if (!send_now(upstream_->socket.native_handle(), buffers, ec)) co_return false;
    if (empty(buffers)) co_return true;
  }
  wrote_inline_ = false;
  arm(upstream_send_timeout_, Guard::upstream);
  auto [ec, n] = upstream_->tls ? co_await asio::async_write(*upstream_->tls, buffers, nothrow)
                                : co_await asio::async_write(upstream_->socket, buffers, nothrow);
  disarm();
  co_return !ec;
}

awaitable<size_t> Session::read_upstream(size_t offset, size_t max, Clock::time_point deadline) {
  arm_until(deadline, Guard::upstream);
  const auto buffer = asio::buffer(up_.data() + offset, max);
  auto [ec, n] = upstream_->tls ? co_await upstream_->tls->async_read_some(buffer, nothrow)
                                : co_await upstream_->socket.async_read_some(buffer, nothrow);
  disarm();
  co_return ec ? 0 : n;
}

awaitable<bool> Session::write_client_body(std::string_view data, bool chunked) {
  if (!chunked) co_return co_await write_client(bufs(asio::buffer(data.data(), data.size())));
  format_chunk_size(chunk_line_, data.size());
  co_return co_await write_client(
      bufs(asio::buffer(chunk_line_), asio::buffer(data.data(), data.size()), asio::buffer(kCrlf, 2)));
}

awaitable<bool> Session::send_continue() {
  if (continue_sent_ || !request_.expect_continue || request_.version_minor == 0) co_return true;
  continue_sent_ = true;
  arm(worker_.options().client_send_timeout, Guard::client);
  auto [ec, n] = co_await asio::async_write(client_, asio::buffer(kContinue, sizeof kContinue - 1), nothrow);
  disarm();
  co_return !ec;
}

UpstreamRequestParams Session::upstream_request_params(const Attempt& a) const {
  UpstreamRequestParams p;
  p.target = target_;
  p.host = upstream_host(a);
  if (!pipeline_.empty() && plugin_ctx_ && !plugin_ctx_->upstream.empty()) p.edits = &plugin_ctx_->upstream;
  p.client_ip = std::string_view(client_ip_text_, client_ip_len_);
  p.tls = secure_;
  return p;
}

awaitable<bool> Session::send_request(Attempt& a) {
  a.request_sent_at = {};  // set below only if this send goes out whole at once (a retry's may not)
  const config::Upstream& spec = a.upstream->spec;
  upstream_send_timeout_ = a.timeout->send;
  UpstreamRequestParams p = upstream_request_params(a);
  p.body = request_.framing == http::BodyFraming::chunked          ? OutFraming::chunked
           : request_.framing == http::BodyFraming::content_length ? OutFraming::content_length
                                                                   : OutFraming::none;
  p.close = spec.keepalive_pool.size <= 0;
  a.upgrade = request_.upgrade && a.route->websocket && request_.method == http::Method::GET;
  if (a.upgrade) p.upgrade = request_.find("upgrade");
  write_upstream_request_head(head_out_, request_, p);
  if (!a.reused) a.sent_at = Clock::now();  // a pooled one's was read at its checkout, in this same turn

  const char* body_start = in_.data() + in_begin_ + request_.head_size;
  size_t after_head = client_buffered() - request_.head_size;
  if (request_.framing != http::BodyFraming::content_length) {
    if (!co_await write_upstream(bufs(asio::buffer(head_out_)))) co_return false;
    if (request_.framing == http::BodyFraming::chunked) co_return co_await send_chunked_body();
    if (wrote_inline_) a.request_sent_at = a.sent_at;
    co_return true;
  }
  // Content-Length body: the buffered part goes out with the head; the rest streams from the client.
  size_t first = static_cast<size_t>(std::min<uint64_t>(after_head, request_.content_length));
  body_from_in_ = first;
  body_bytes_read_ = first;
  if (!co_await write_upstream(bufs(asio::buffer(head_out_), asio::buffer(body_start, first))))
    co_return false;
  uint64_t remaining = request_.content_length - first;
  if (remaining == 0) {
    request_body_done_ = true;
    if (wrote_inline_) a.request_sent_at = a.sent_at;
    co_return true;
  }
  if (!co_await send_continue()) {
    client_gone_ = true;
    co_return false;
  }
  body_streamed_ = true;
  while (remaining > 0) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(remaining, up_.size()));
    arm(worker_.options().header_timeout, Guard::client);
    auto [ec, n] = co_await client_.async_read_some(asio::buffer(up_.data(), want), nothrow);
    disarm();
    if (ec || n == 0) {
      client_gone_ = true;  // or stalled past the timeout
      close_after_ = true;
      co_return false;
    }
    body_bytes_read_ += n;
    if (!co_await write_upstream(bufs(asio::buffer(up_.data(), n)))) co_return false;
    remaining -= n;
  }
  request_body_done_ = true;
  co_return true;
}

awaitable<bool> Session::send_chunked_body() {
  decoder_.reset();
  body_bytes_read_ = 0;  // a retry decodes the buffered body again
  int64_t max_body = max_body_;
  uint64_t total = 0;
  // First the bytes already buffered after the head, then reads from the client into up_.
  const char* data = in_.data() + in_begin_ + request_.head_size;
  size_t len = client_buffered() - request_.head_size;
  bool from_in = true;
  while (true) {
    std::string_view input(data, len);
    size_t used = 0;
    while (used < input.size() || !decoder_.done()) {
      http::ChunkedDecoder::Step step = decoder_.next(input.substr(used));
      used += step.consumed;
      if (step.status == http::ChunkedDecoder::Status::error) {
        client_error_ = 400;
        close_after_ = true;
        co_return false;
      }
      if (step.status == http::ChunkedDecoder::Status::data) {
        total += step.data.size();
        if (max_body >= 0 && total > static_cast<uint64_t>(max_body)) {
          client_error_ = 413;
          close_after_ = true;
          co_return false;
        }
        format_chunk_size(chunk_line_, step.data.size());
        if (!co_await write_upstream(bufs(asio::buffer(chunk_line_),
                                          asio::buffer(step.data.data(), step.data.size()),
                                          asio::buffer(kCrlf, 2)))) {
          co_return false;
        }
        continue;
      }
      if (step.status == http::ChunkedDecoder::Status::done) break;
      break;  // need_more
    }
    body_bytes_read_ += used;
    if (decoder_.done()) {
      if (from_in) {
        body_from_in_ = used;
      } else {
        body_from_in_ = client_buffered() - request_.head_size;
        leftover_.assign(data + used, len - used);  // the next pipelined request, read along with the body
      }
      request_body_done_ = true;
      co_return co_await write_upstream(bufs(asio::buffer(kLastChunk, sizeof kLastChunk - 1)));
    }
    if (!co_await send_continue()) {
      client_gone_ = true;
      co_return false;
    }
    body_streamed_ = true;
    from_in = false;
    arm(worker_.options().header_timeout, Guard::client);
    auto [ec, n] = co_await client_.async_read_some(asio::buffer(up_.data(), up_.size()), nothrow);
    disarm();
    if (ec || n == 0) {
      client_gone_ = true;
      close_after_ = true;
      co_return false;
    }
    data = up_.data();
    len = n;
  }
}

awaitable<Session::Failure> Session::read_response_head(Attempt& a) {
  a.up_end = 0;
  // The route's read timeout bounds each response head as a whole, from the end of the request: an origin
  // trickling a head cannot hold the client forever. A complete interim response (100, 102 Processing, 103)
  // is progress and restarts it, so an origin doing long work can keep the request alive with a 102 every
  // so often, as with nginx's per-read proxy_read_timeout; only a silent or trickling origin gets the 504.
  // Body reads (relay_response) are bounded per read, as nginx's proxy_read_timeout, so slow streams work.
  // A request written whole without waiting ended when it was sent (sent_at): no second clock read.
  Clock::time_point head_deadline = a.request_sent_at != Clock::time_point{}
                                        ? base::deadline_after(a.request_sent_at, a.timeout->read)
                                        : deadline_in(a.timeout->read);
  while (true) {
    if (a.up_end == up_.size()) {
      if (up_.size() >= limits_.max_head_size) co_return Failure::bad_response;  // head over the limit
      up_.resize(std::min(up_.size() * 2, limits_.max_head_size));
    }
    size_t n = co_await read_upstream(a.up_end, up_.size() - a.up_end, head_deadline);
    if (n == 0) {
      bool was_timeout = timed_out_;
      timed_out_ = false;
      if (was_timeout) co_return Failure::timeout;
      co_return a.up_end == 0 ? Failure::reset : Failure::bad_response;
    }
    a.up_end += n;
    while (true) {
      http::ParseResult r = http::parse_response(up_.data(), a.up_end, request_.method, limits_, response_);
      if (r.status == http::ParseStatus::incomplete) break;
      if (r.status == http::ParseStatus::error) co_return Failure::bad_response;
      if (response_.status >= 200) co_return Failure::none;
      if (response_.status == 101) {
        // A switch only answers an upgrade Portico forwarded; anything else is the origin out of step.
        co_return a.upgrade ? Failure::none : Failure::bad_response;
      }
      // Other 1xx (100, 102, 103): Portico already handled Expect; drop the interim response.
      std::memmove(up_.data(), up_.data() + response_.head_size, a.up_end - response_.head_size);
      a.up_end -= response_.head_size;
      head_deadline = deadline_in(a.timeout->read);
      if (a.up_end == 0) break;
    }
  }
}

awaitable<bool> Session::send_replaced_body(Attempt& a, bool http10) {
  // The origin's body is not read: its connection cannot carry another request.
  a.reusable = false;
  close_after_ = close_after_ || http10;
  ClientResponseParams cp;
  cp.body = OutFraming::content_length;
  cp.close = close_after_;
  cp.http10 = http10;
  plugins::ResponseEdits& edits = plugin_context().response;
  const int status = edits.status != 0 ? edits.status : response_.status;
  if (!edits.has_body || is_bodiless_status(status)) {
    edits.has_body = true;  // framed by the head writer: Content-Length 0, or none for a bodiless status
    edits.body.clear();
  }
  cp.edits = &edits;
  write_response_head(response_, cp);
  const std::string& body = edits.body;
  const bool head_only = request_.method == http::Method::HEAD;
  co_return co_await write_client(
      bufs(asio::buffer(head_out_), asio::buffer(head_only ? std::string_view() : body)));
}

awaitable<bool> Session::relay_response(Attempt& a) {
  bool http10 = request_.version_minor == 0;
  OutFraming out = OutFraming::none;
  switch (response_.framing) {
    case http::BodyFraming::none:
      out = OutFraming::none;
      break;
    case http::BodyFraming::content_length:
      out = OutFraming::content_length;
      break;
    case http::BodyFraming::chunked:
    case http::BodyFraming::until_close:
      out = http10 ? OutFraming::until_close : OutFraming::chunked;
      break;
  }
  if (response_.framing == http::BodyFraming::until_close) a.reusable = false;
  if (!response_.keep_alive) a.reusable = false;
  if (!request_body_done_) close_after_ = true;  // the client's body was not read to its end
  if (worker_.draining() || out == OutFraming::until_close) close_after_ = true;
  ClientResponseParams cp;
  if (!pipeline_.empty()) {
    plugins::ResponseInfo info;
    info.status = response_.status;
    info.upstream = &response_;
    pipeline_.run_response(plugin_context(), info);
    const plugins::ResponseEdits& edits = plugin_context().response;
    if (!edits.empty()) cp.edits = &edits;
    // A new status of the other kind (one that has a body vs 1xx/204/304, which have none) cannot keep the
    // origin's framing: relaying a 200's body after a 204, or waiting for a 304's Content-Length after a 200,
    // would desynchronise the client. The response is then sent like a replaced (here: empty) body.
    const bool status_kind_changed =
        edits.status != 0 && is_bodiless_status(edits.status) != is_bodiless_status(response_.status);
    if (edits.has_body || status_kind_changed) co_return co_await send_replaced_body(a, http10);
  }
  cp.body = out;
  cp.close = close_after_;
  cp.http10 = http10;
  write_response_head(response_, cp);

  const char* body = up_.data() + response_.head_size;
  size_t buffered = a.up_end - response_.head_size;
  double read_timeout = a.timeout->read;

  if (response_.framing == http::BodyFraming::none ||
      (response_.framing == http::BodyFraming::content_length)) {
    uint64_t length = response_.framing == http::BodyFraming::none ? 0 : response_.content_length;
    size_t first = static_cast<size_t>(std::min<uint64_t>(buffered, length));
    if (buffered > first) a.reusable = false;  // bytes after the response: the origin is out of step
    if (!co_await write_client(bufs(asio::buffer(head_out_), asio::buffer(body, first)))) co_return false;
    uint64_t remaining = length - first;
    while (remaining > 0) {
      size_t n = co_await read_upstream(0, static_cast<size_t>(std::min<uint64_t>(remaining, up_.size())),
                                        read_timeout);
      if (n == 0) {
        timed_out_ = false;
        a.reusable = false;
        co_return false;  // truncated: the client sees the connection close before the declared length
      }
      if (!co_await write_client(bufs(asio::buffer(up_.data(), n)))) co_return false;
      remaining -= n;
    }
    co_return true;
  }

  if (!co_await write_client(bufs(asio::buffer(head_out_)))) co_return false;
  bool chunked_out = out == OutFraming::chunked;
  if (response_.framing == http::BodyFraming::until_close) {
    if (buffered > 0) {
      std::memmove(up_.data(), body, buffered);
    }
    size_t n = buffered;
    while (true) {
      if (n > 0 && !co_await write_client_body(std::string_view(up_.data(), n), chunked_out)) co_return false;
      n = co_await read_upstream(0, up_.size(), read_timeout);
      if (n == 0) {
        if (timed_out_) {
          timed_out_ = false;
          co_return false;
        }
        break;  // the origin's close ends the body
      }
    }
    if (chunked_out) co_return co_await write_client(bufs(asio::buffer(kLastChunk, sizeof kLastChunk - 1)));
    co_return true;
  }

  // Chunked from the origin: decode and re-frame (chunked to HTTP/1.1 clients, raw until close to HTTP/1.0).
  decoder_.reset();
  std::memmove(up_.data(), body, buffered);
  size_t len = buffered;
  while (true) {
    std::string_view input(up_.data(), len);
    size_t used = 0;
    while (true) {
      http::ChunkedDecoder::Step step = decoder_.next(input.substr(used));
      used += step.consumed;
      if (step.status == http::ChunkedDecoder::Status::error) {
        a.reusable = false;
        co_return false;
      }
      if (step.status == http::ChunkedDecoder::Status::data) {
        if (!co_await write_client_body(step.data, chunked_out)) co_return false;
        continue;
      }
      break;
    }
    if (decoder_.done()) {
      if (used < len) a.reusable = false;
      if (chunked_out) co_return co_await write_client(bufs(asio::buffer(kLastChunk, sizeof kLastChunk - 1)));
      co_return true;
    }
    len = co_await read_upstream(0, up_.size(), read_timeout);
    if (len == 0) {
      timed_out_ = false;
      a.reusable = false;
      co_return false;
    }
  }
}

template <typename From, typename To>
awaitable<void> Session::pump(From& from, To& to, char* buffer, size_t size, double idle_timeout) {
  while (true) {
    // Either direction's traffic keeps the tunnel alive; silence both ways for idle_timeout closes both ends.
    arm(idle_timeout, Guard::tunnel);
    auto [rec, n] = co_await from.async_read_some(asio::buffer(buffer, size), nothrow);
    if (rec || n == 0) break;
    auto [wec, written] = co_await asio::async_write(to, asio::buffer(buffer, n), nothrow);
    if (wec) break;
    if (static_cast<void*>(&to) == static_cast<void*>(&client_)) bytes_sent_ += written;
  }
  // One side finished: pass the half-close on; the other direction ends on its own. Over TLS this is a TCP
  // half-close without close_notify (a TLS shutdown would wait for the peer's).
  boost::system::error_code ec;
  to.lowest_layer().shutdown(asio::ip::tcp::socket::shutdown_send, ec);
}

awaitable<void> Session::tunnel(Attempt& a) {
  ClientResponseParams cp;
  cp.upgrade = true;
  write_client_response_head(head_out_, response_, cp);
  // Frames the origin sent right behind its 101 go out with the head; frames the client sent right behind
  // its request go to the origin first.
  size_t early = a.up_end - response_.head_size;
  if (!co_await write_client(
          bufs(asio::buffer(head_out_), asio::buffer(up_.data() + response_.head_size, early))))
    co_return;
  size_t pending = client_buffered() - request_.head_size;
  if (pending > 0 &&
      !co_await write_upstream(bufs(asio::buffer(in_.data() + in_begin_ + request_.head_size, pending)))) {
    co_return;
  }
  body_from_in_ = pending;  // forwarded: not bytes the client sent past its request (client_may_still_send)
  request_body_done_ = true;
  double idle = a.timeout->read;  // as APISIX: proxy_read_timeout bounds a silent WebSocket
  // The client's direction gets its own buffer: in_ still holds the request head the access log reads.
  std::vector<char> from_client(16 * 1024);
  if (upstream_->tls) {  // wss: the tunnel runs over the upstream's TLS layer
    auto& up = *upstream_->tls;
    co_await (pump(client_, up, from_client.data(), from_client.size(), idle) &&
              pump(up, client_, up_.data(), up_.size(), idle));
  } else {
    co_await (pump(client_, upstream_->socket, from_client.data(), from_client.size(), idle) &&
              pump(upstream_->socket, client_, up_.data(), up_.size(), idle));
  }
  disarm();
  timed_out_ = false;
}

}  // namespace portico::proxy
