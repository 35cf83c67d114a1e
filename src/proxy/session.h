// A Session is one client connection on one worker: a coroutine that reads request heads, routes them on the
// worker's current snapshot, forwards each request to an upstream node and relays the response, for as
// long as the connection stays keep-alive. It is the request path; read handle_request() from the top.
//
// Ownership: the worker's accept loop (or an H2Connection, for a stream) creates it as a shared_ptr; the
// request coroutine and the watchdog's pending timer wait each hold a reference, so it lives until both have
// ended. Worker thread only.
#pragma once

#include <array>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/time.h"
#include "config/model.h"
#include "http/message.h"
#include "http/parser.h"
#include "http2/client_codec.h"
#include "http2/grpc_web.h"
#include "plugins/context.h"
#include "plugins/pipeline.h"
#include "proxy/client_stream.h"
#include "proxy/h2_upstream.h"
#include "proxy/head_writer.h"
#include "proxy/upstream_pool.h"
#include "router/ip_address.h"
#include "router/router.h"

namespace portico::snapshot {
struct RouteRuntime;
struct SplitTarget;
struct UpstreamRuntime;
struct Snapshot;
}  // namespace portico::snapshot

namespace portico::tls {
class ServerContext;
}

namespace portico::proxy {

class Worker;
struct PinnedSnapshot;
class H2Connection;
struct ConnectionInfo;
struct StreamIo;

class Session : public std::enable_shared_from_this<Session> {
 public:
  // `tls`: the listener's TLS context when the connection came from the TLS listener, else null.
  // `peer`: the client's address as accept returned it (null: asked of the socket).
  Session(Worker& worker, boost::asio::ip::tcp::socket socket, tls::ServerContext* tls = nullptr,
          const boost::asio::ip::tcp::endpoint* peer = nullptr);
  // Stream mode: one HTTP/2 request stream. `head` holds the request as an HTTP/1.1 head in its first
  // `head_size` bytes (h2_connection.cc) and becomes the input buffer (a buffer of the worker's head cache);
  // the body and the response go through `stream`. One request, then the session ends. Not tracked by the
  // worker as a connection: its H2Connection is.
  // `io`: moved from (StreamIo, h2_connection.h).
  Session(Worker& worker, std::shared_ptr<H2Stream> stream, const ConnectionInfo& connection,
          std::vector<char> head, size_t head_size, StreamIo& io);
  ~Session();

  void start();
  // Drain: an idle connection (between requests) is closed now; a busy one closes after its response; a
  // lingering one (see linger()) gets at most kLingerWhileDraining more.
  void on_drain();
  void force_close();

 private:
  // What both kinds of session share: timers, parse limits, the plugin context's worker.
  Session(Worker& worker, ClientStream client);

  // Which socket a running deadline guards. A passed deadline closes the guarded socket, except `head`: the
  // pending read of a request head is cancelled so that the session can still answer 408.
  enum class Guard : uint8_t { none, client, head, upstream, tunnel /* both */ };

  // Why an exchange with one node did not produce a response for the client.
  enum class Failure : uint8_t {
    none,
    connect,
    connect_timeout,
    timeout,
    send,
    reset,
    bad_response,
    bad_status,
    client,
    tls_verify,  // the node's certificate did not verify: a configuration problem, not a node failure
    // Nothing reached the node's application and the node is not sick: its graceful GOAWAY or REFUSED_STREAM
    // (RFC 9113 8.7), or the worker's HTTP/2 pool at its connection cap. Retried like a failed connect, never
    // counted against the node (balancer, passive checks, connect-error metrics).
    refused
  };

  struct Attempt;  // state of one try against one node (session_exchange.cc)

  // Up to three buffers written with one gather write (head, body, framing); unused ones stay empty.
  using Buffers = std::array<boost::asio::const_buffer, 3>;
  static Buffers bufs(boost::asio::const_buffer a, boost::asio::const_buffer b = {},
                      boost::asio::const_buffer c = {}) {
    return Buffers{a, b, c};
  }

  boost::asio::awaitable<void> run();
  // The watchdog: closes (or, for a request head, cancels) what a passed deadline_ guards. Waits on timer_
  // until alive_ is false, holding `self`.
  void watch(std::shared_ptr<Session> self);
  // The TLS handshake, under --tls-handshake-timeout, with the certificates of the worker's newest snapshot.
  // False: close (counted and logged at debug, never per connection above that).
  boost::asio::awaitable<bool> tls_handshake();
  // The connection speaks HTTP/2 (ALPN h2, or the h2c preface): an H2Connection serves it from here on;
  // `initial` holds the bytes already read.
  boost::asio::awaitable<void> serve_h2(std::string_view initial);
  // Lingering close (nginx's lingering_close, RFC 9112 9.6): after the last response, half-close and read
  // and drop what the client still sends, within time and byte bounds, so that closing with its bytes unread
  // does not send a reset that destroys the response before the client read it.
  bool client_may_still_send();
  boost::asio::awaitable<void> linger();

  // Reads until a complete request head is buffered. False: close the connection (EOF, error, or an error
  // response was already sent).
  boost::asio::awaitable<bool> read_request_head();
  // Routes and serves the parsed request. False: close the connection after it.
  boost::asio::awaitable<bool> handle_request();
  // Tries nodes of the route's upstream until one answers or the tries run out.
  // `target`: the route's own upstream, or the one its traffic-split chose (RouteRuntime::target_for).
  boost::asio::awaitable<bool> forward(const snapshot::RouteRuntime& route, snapshot::SplitTarget target);
  boost::asio::awaitable<Failure> try_node(Attempt& attempt);
  boost::asio::awaitable<bool> send_request(Attempt& attempt);
  boost::asio::awaitable<bool> send_chunked_body();
  boost::asio::awaitable<bool> send_continue();
  boost::asio::awaitable<Failure> read_response_head(Attempt& attempt);
  boost::asio::awaitable<bool> relay_response(Attempt& attempt);
  // A plugin replaced the response body: the origin's head (with the plugins' edits) and the new body.
  boost::asio::awaitable<bool> send_replaced_body(Attempt& attempt, bool http10);
  // After a 101 to a WebSocket upgrade: bytes both ways until either side closes.
  boost::asio::awaitable<void> tunnel(Attempt& attempt);
  // One direction of a tunnel; either side may be the upstream's TLS layer (session_exchange.cc only).
  template <typename From, typename To>
  boost::asio::awaitable<void> pump(From& from, To& to, char* buffer, size_t size, double idle_timeout);
  // scheme https: the TLS handshake on the just-connected upstream_ (bounded by the connect timeout),
  // offering the worker's session for `key`. A failed verification fails like a refused connect.
  boost::asio::awaitable<Failure> start_tls(Attempt& attempt, const std::string& key, std::string_view sni);
  // The TLS name for a node of an https/grpcs upstream (SNI and the name verified); sets a.name_per_node.
  std::string_view tls_server_name(Attempt& attempt) const;
  // scheme grpc / grpcs (session_grpc.cc): one try over an HTTP/2 stream of the worker's H2UpstreamPool.
  boost::asio::awaitable<Failure> try_h2_node(Attempt& attempt);
  bool h2_request_fields(Attempt& attempt, http2::Fields& fields);
  boost::asio::awaitable<bool> send_h2_body();
  // The next piece of the request body, decoded (a view valid until the next call): 1 a piece, 0 the end,
  // -1 an error (client_error_ / client_gone_ set). Resumable across tries (h2_body_).
  boost::asio::awaitable<int> next_h2_body_piece(std::string_view& piece);
  // The body pump of a grpc try (session_grpc_body.cc): send_h2_body as a second coroutine beside the
  // response relay, so a bidirectional call flows both ways. start_h2_pump spawns it; stop_h2_pump ends it
  // (if still running) and returns once it has, which every try does before dropping h2up_. The pump is
  // the client's only reader meanwhile; the relay its only writer (a "100 Continue" is sent before it
  // starts).
  void start_h2_pump();
  boost::asio::awaitable<void> run_h2_pump(std::shared_ptr<Session> self);
  boost::asio::awaitable<void> stop_h2_pump();
  // One read of request body bytes from the client into up_ under the pump's idle guard (not the session's
  // watchdog, which the relay's writes use meanwhile). 0: failed (client_gone_ set unless stopping).
  boost::asio::awaitable<size_t> read_h2_body(size_t want);
  void guard_h2_pump_read();
  // The node's head (`head`) or next DATA: the read timeout counts from the later of the call and the end
  // of the request body, so a client still streaming its body is bounded by the call's deadline only.
  boost::asio::awaitable<H2UpstreamStream::Wait> wait_h2_response(bool head, double read_timeout);
  boost::asio::awaitable<bool> relay_h2_response(Attempt& attempt);
  // HTTP/1.1 clients: the trailers as a chunked trailer section (with the last chunk).
  boost::asio::awaitable<bool> write_client_trailers(const http2::Fields& trailers);
  // The request is gRPC (content-type application/grpc...): Portico answers it with gRPC statuses.
  bool is_grpc_request() const;
  // Portico's own answer to a gRPC request: a trailers-only response (docs/grpc.md has the mapping).
  boost::asio::awaitable<bool> send_grpc_error(int status, std::string_view message, bool close);
  // gRPC-Web (session_grpc_web.cc): a call the grpc-web plugin accepted is translated on the grpc try (the
  // body de-base64'd for -text, the response re-framed with the trailer frame) and Portico's own errors for
  // it are grpc-web shaped (trailers-only, the plugins' CORS headers).
  bool grpc_web_call() const;
  bool grpc_web_text() const {  // grpc_web_call() is true only once the plugin context exists
    return grpc_web_call() && plugin_ctx_->grpc_web == plugins::GrpcWeb::text;
  }
  // A -text body piece decoded in place (`piece` then views grpc_web_.decoded). False: not base64.
  bool decode_grpc_web_piece(std::string_view& piece);
  boost::asio::awaitable<bool> write_grpc_web_body(std::string_view data, bool chunked);
  // The trailer frame for `trailers` (APISIX's grpc-status 2 when the node sent none), then the body's end.
  boost::asio::awaitable<bool> end_grpc_web(const http2::Fields& trailers, bool chunked);
  boost::asio::awaitable<bool> send_grpc_web_error(int status, std::string_view message, bool close);
  // The Host the origin receives (pass_host, or a plugin's edit); also the SNI over TLS.
  std::string_view upstream_host(const Attempt& attempt) const;
  // What every upstream request head carries, whatever the node's protocol: target, Host, the plugins'
  // edits, the client's address and scheme (the connection's, for an HTTP/2 stream too). Framing is the
  // caller's.
  UpstreamRequestParams upstream_request_params(const Attempt& attempt) const;
  boost::asio::awaitable<bool> write_upstream(Buffers buffers);
  // Reads from the upstream into up_[offset, offset+max), giving up at `deadline`. Returns bytes read; 0 on
  // EOF, error or timeout (then timed_out_ is set).
  boost::asio::awaitable<size_t> read_upstream(size_t offset, size_t max, Clock::time_point deadline);
  boost::asio::awaitable<size_t> read_upstream(size_t offset, size_t max, double timeout) {
    return read_upstream(offset, max, deadline_in(timeout));
  }

  // Runs the plugins' request phases for `route`, then waits out the delay they asked for. True: forward;
  // false: a plugin answered (the reply was sent, `keep` says whether the connection stays open), or the
  // connection was closed during the delay.
  boost::asio::awaitable<bool> run_plugins(const snapshot::Snapshot& snap,
                                           const snapshot::RouteRuntime& route, std::string_view path,
                                           bool& keep);
  // Sends the reply a plugin made, after the response phase.
  boost::asio::awaitable<bool> send_plugin_reply();

  // A request head refused before routing (400, 408, 414, 431, ...): counted, answered and logged; the
  // connection then closes (lingering: what the client still sends stays unread).
  boost::asio::awaitable<void> reject_head(int status, std::string_view reason);
  // Sends a Portico-generated response. Returns keep-alive (false when `close`).
  boost::asio::awaitable<bool> send_error(int status, std::string_view message, bool close);
  boost::asio::awaitable<bool> write_client(Buffers buffers);
  // The final response head into head_out_ (write_client_response_head), or, on an HTTP/2 stream, straight
  // to its HEADERS (H2Stream::start_response, head_out_ left empty): the bytes written after it are the body.
  void write_response_head(const http::ResponseHead& response, const ClientResponseParams& params);
  // A piece of response body, framed as one chunk when `chunked`.
  boost::asio::awaitable<bool> write_client_body(std::string_view data, bool chunked);

  static Clock::time_point deadline_in(double seconds) { return base::deadline_in(seconds); }
  static Clock::time_point deadline_after(Clock::time_point from, double seconds) {
    return base::deadline_after(from, seconds);
  }
  // TLS listener (both codecs): false when the Host's ssl asks for a client certificate that this
  // connection's handshake (made for another SNI, or unverified) did not check, unless the ssl's
  // skip_mtls_uri_regex lets the path through (tls/request_check.h); the request is then answered 400.
  bool client_verified_for_host(const snapshot::Snapshot& snap) const;
  void arm(double seconds, Guard guard) { arm_until(deadline_in(seconds), guard); }
  void arm_until(Clock::time_point deadline, Guard guard);
  void disarm() { deadline_ = Clock::time_point::max(); }
  void consume_client(size_t n);
  size_t client_buffered() const { return in_end_ - in_begin_; }
  // Per-request log and metric fields: reset when a request starts (including one rejected before routing,
  // so a keep-alive connection's previous exchange does not leak into its record), reported when it ends.
  // request_start_ is set before: when the head was complete (read_request_head), or rejected.
  void start_request_bookkeeping();
  // `now`: the time it ends, when the caller has just read the clock (default: read here).
  void finish_request(int status, const snapshot::RouteRuntime* route, Clock::time_point now = {});

  Worker& worker_;
  ClientStream client_;
  tls::ServerContext* tls_ = nullptr;
  bool secure_ = false;               // the client connection is TLS (this one, or the HTTP/2 connection's)
  bool stream_mode_ = false;          // one HTTP/2 stream (the second constructor)
  bool h2c_possible_ = false;         // plain listener, --h2c on, nothing read yet that rules out the preface
  bool h2c_preface_ = false;          // the connection began with the HTTP/2 preface
  std::shared_ptr<H2Connection> h2_;  // the connection speaks HTTP/2
  bool tls_ready_ = false;            // the handshake completed: close_notify is due at the end
  std::string ssl_client_s_dn_;       // the client certificate's subject (mTLS), for plugins and the log
  const char* ssl_client_verify_ = "NONE";
  std::string tls_sni_;  // the handshake's SNI, lower case, without a trailing dot; empty when none was sent
  boost::asio::steady_timer timer_;
  // A plugin's delay (RequestContext::delay_seconds) or asynchronous step; made on first use (delay_timer()):
  // most requests never wait, and making a timer takes the io_context's service registry mutex.
  std::optional<boost::asio::steady_timer> delay_timer_;
  boost::asio::steady_timer& delay_timer();
  Clock::time_point deadline_ = Clock::time_point::max();
  Guard guard_ = Guard::none;
  bool timed_out_ = false;
  bool alive_ = true;
  bool idle_ = true;  // waiting for the first byte of a request (empty lines before it are not one)
  bool lingering_ = false;
  Clock::time_point linger_end_;  // the lingering close's overall deadline

  router::IpAddress client_ip_;
  char client_ip_text_[48] = {0};
  size_t client_ip_len_ = 0;

  // Client input: bytes [in_begin_, in_end_) of in_ are received and not yet consumed.
  std::vector<char> in_;
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
  // Upstream input, reused for every exchange.
  std::vector<char> up_;
  std::string head_out_;    // serialised head being sent (upstream request, or client response)
  std::string chunk_line_;  // "<hex>\r\n" framing for re-chunked bodies

  http::ParseLimits limits_;
  http::RequestHead request_;
  http::ResponseHead response_;
  std::string normalized_path_;
  std::string_view target_;     // origin-form target sent upstream: the received one, or rebuilt_target_
  std::string rebuilt_target_;  // normalized path + query, when the received target cannot be sent as is
  router::MatchRequest match_;  // what the router saw; also the source of consistent-hash keys
  std::shared_ptr<PinnedSnapshot> pinned_;
  std::unique_ptr<UpstreamConnection> upstream_;
  std::string tls_pool_key_;  // scheme https: the pool key of the node, context and SNI of this try
  std::unique_ptr<H2UpstreamStream> h2up_;                      // scheme grpc / grpcs: the stream of this try
  Clock::time_point grpc_deadline_ = Clock::time_point::max();  // the call's grpc-timeout, when it has one
  // The request body as the h2 tries read it: where the reader is, and what it took so far (up to
  // kH2ReplayLimit), which a retry sends again. Reset per request (start_request_bookkeeping).
  struct H2Body {
    bool started = false;
    const char* data = nullptr;  // input being decoded: in_ after the head, then up_
    size_t len = 0;
    size_t used = 0;
    bool from_in = true;
    uint64_t left = 0;   // Content-Length bytes not read yet
    uint64_t total = 0;  // chunked: payload bytes so far (max body size)
    std::string replay;
    bool replay_overflow = false;
  };
  static constexpr size_t kH2ReplayLimit = 64 * 1024;
  H2Body h2_body_;
  // The running body pump of a grpc try (start_h2_pump). Its timers are made on first use (most sessions
  // never proxy gRPC): `guard` bounds a client read, `done` is a condition cancelled when the pump ends.
  struct H2Pump {
    bool running = false;
    bool stopping = false;         // stop_h2_pump: a failed read is not the client's doing
    bool reading = false;          // a client read is pending
    Clock::time_point ended_at{};  // the request body's end (or the pump's failure)
    Clock::time_point activity{};  // last byte either way: the client read guard's idle measure
    uint64_t guard_gen = 0;        // a guard's expiry acts only for the read that armed it
    std::unique_ptr<boost::asio::steady_timer> guard;
    std::unique_ptr<boost::asio::steady_timer> done;
  };
  H2Pump h2_pump_;
  // A gRPC-Web call's translation state: the -text body decoder (reset when the body starts) and scratch
  // buffers, bounded by one body piece or one response DATA window (4/3 of it in base64). One buffer per
  // direction: the pump's write may wait for the node's window holding a view of `decoded` while the relay
  // fills `out`, so each is touched by one coroutine only.
  struct GrpcWebState {
    http2::grpc_web::TextDecoder decoder;
    std::string decoded;    // the request pump's (decode_grpc_web_piece)
    std::string out;        // the response relay's (write_grpc_web_body)
    std::string frame;      // the response relay's (end_grpc_web)
    bool bad_body = false;  // the -text body was not base64 (the 400's message)
  };
  GrpcWebState grpc_web_;

  // Per-request bookkeeping for logs and metrics.
  Clock::time_point request_start_;  // when its head was complete (an HTTP/2 stream's: when it started)
  double upstream_seconds_ = -1;
  int upstream_status_ = 0;
  std::string_view upstream_addr_;  // the node's pool key, in the pinned snapshot
  std::string_view upstream_ip_;    // the node's address, in the pinned snapshot
  uint64_t bytes_sent_ = 0;
  uint64_t body_bytes_read_ = 0;    // request body bytes taken from the client (as sent: chunk framing too)
  bool response_started_ = false;   // a byte of the response reached the client socket
  bool request_body_done_ = false;  // the client's request body was read to its end (not after a bad head)
  bool body_streamed_ = false;      // body bytes were read from the socket: the request cannot be replayed
  bool continue_sent_ = false;      // "100 Continue" already sent for this request
  bool close_after_ = false;
  bool wrote_inline_ = false;  // the last write_upstream completed without waiting (send_now)
  int64_t max_body_ = -1;      // the route's request body limit (-1: none)
  // Set when the client's body turns out invalid (400) or too large (413) while it streams: the request
  // ends with this status instead of an upstream error, and the connection closes.
  int client_error_ = 0;
  bool client_gone_ = false;  // the client closed or stalled while sending its body
  size_t body_from_in_ = 0;   // bytes of in_ after the head that belong to this request's body
  double upstream_send_timeout_ = 60;
  std::string leftover_;  // bytes read past a chunked body's end (the next pipelined request)
  http::ChunkedDecoder decoder_;

  // Wakes run_plugins when a plugin's asynchronous step completes (context.h Completion): the wait is on
  // delay_timer_, which completion cancels.
  struct PluginWaiter final : plugins::Waiter {
    explicit PluginWaiter(std::optional<boost::asio::steady_timer>& t) : timer(t) {}
    // Not made yet: nothing waits on it, and a cancel would not affect a later wait either.
    void wake() override {
      if (timer) timer->cancel();
    }
    std::optional<boost::asio::steady_timer>& timer;
  };
  PluginWaiter plugin_waiter_{delay_timer_};

  // The plugins of the current request (empty when its route and the global rules have none) and what they
  // see and change of it. Declared last: destroyed first, while pinned_ still holds the plugins its pending
  // I/O and leases refer to.
  plugins::Pipeline pipeline_;
  // Built by plugin_context() on the first request that needs it: a Session whose requests meet no plugin
  // (an HTTP/2 stream to a bare route) neither builds nor destroys its 760 bytes.
  std::optional<plugins::RequestContext> plugin_ctx_;
  plugins::RequestContext& plugin_context();
};

}  // namespace portico::proxy
