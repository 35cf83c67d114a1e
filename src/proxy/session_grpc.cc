// Upstream side of a session for scheme grpc / grpcs (docs/grpc.md): the same request path as HTTP/1.1
// (routing, plugins, balancing, retries, access log, metrics run in session.cc and forward()), with one try
// going over an HTTP/2 stream of the worker's H2UpstreamPool instead of an HTTP/1.1 exchange.
//
// The request head the node receives is the one the HTTP/1.1 path would send (write_upstream_request_head:
// hop-by-hop and Connection-named fields dropped, X-Forwarded-*, plugin edits), parsed back by Portico's
// strict parser and turned into HTTP/2 fields, so both paths forward exactly the same fields. The body
// streams with backpressure (at most H2UpstreamStream::kSendHighWater bytes wait for the node's window) from
// a pump coroutine that runs beside the response relay (session_grpc_body.cc). The response relays head,
// DATA and trailers, the DATA re-opening the node's window only as the client takes it.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <charconv>

#include "base/log.h"
#include "http/parser.h"
#include "http2/grpc.h"
#include "proxy/session.h"
#include "proxy/session_attempt.h"
#include "proxy/worker.h"
#include "snapshot/snapshot.h"

namespace portico::proxy {

namespace asio = boost::asio;
using asio::awaitable;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// Fields HTTP/2 forbids (RFC 9113 8.2.2) or that :authority replaces. The head writer already dropped the
// hop-by-hop ones; these are the ones it re-states for HTTP/1.1 framing.
bool not_for_h2(std::string_view lower_name) {
  return lower_name == "host" || lower_name == "connection" || lower_name == "transfer-encoding" ||
         lower_name == "keep-alive" || lower_name == "proxy-connection" || lower_name == "upgrade" ||
         lower_name == "te";
}

}  // namespace

bool Session::is_grpc_request() const {
  return http2::grpc::is_grpc_content_type(request_.find("content-type"));
}

bool Session::h2_request_fields(Attempt& a, http2::Fields& fields) {
  UpstreamRequestParams p = upstream_request_params(a);
  p.body = OutFraming::none;
  write_upstream_request_head(head_out_, request_, p);
  http::RequestHead parsed;
  http::ParseLimits limits = limits_;
  limits.max_head_size = std::max(limits.max_head_size, head_out_.size());
  http::ParseResult r = http::parse_request(head_out_.data(), head_out_.size(), limits, parsed);
  if (r.status != http::ParseStatus::complete) return false;  // a plugin edit made it invalid
  fields.clear();
  fields.push_back({":method", std::string(parsed.method_text)});
  fields.push_back({":scheme", a.upstream->https ? std::string("https") : std::string("http")});
  fields.push_back({":authority", std::string(parsed.host_header)});
  fields.push_back({":path", std::string(parsed.target)});
  const bool web = grpc_web_call();
  for (uint16_t i = 0; i < parsed.header_count; ++i) {
    std::string name = lower(parsed.headers[i].name);
    if (not_for_h2(name)) continue;
    if (name == "content-length" && request_.framing != http::BodyFraming::content_length) continue;
    if (web && name == "content-length" && grpc_web_text()) continue;  // the decoded body is shorter
    if (web && name == "content-type") {
      fields.push_back({std::move(name), "application/grpc"});  // a gRPC-Web call goes as gRPC
      continue;
    }
    fields.push_back({std::move(name), std::string(parsed.headers[i].value)});
  }
  // gRPC requires it (PROTOCOL-HTTP2.md), and it is the only TE HTTP/2 allows.
  fields.push_back({"te", "trailers"});
  return true;
}

awaitable<Session::Failure> Session::try_h2_node(Attempt& a) {
  const config::Upstream& spec = a.upstream->spec;
  std::string_view sni;
  if (a.upstream->https) sni = tls_server_name(a);
  H2Target t;
  t.key = h2_pool_key(a.node->pool_key, a.upstream->tls.get(), sni);
  t.tls = a.upstream->tls;
  t.tls_required = a.upstream->https;
  t.sni = std::string(sni);
  // The call's deadline runs from the moment its request arrived, across connects and tries (a retry gets
  // what is left, not a new grpc-timeout); every wait below, the connect included, is capped by it.
  const std::string_view grpc_timeout = request_.find("grpc-timeout");
  grpc_deadline_ = http2::grpc::parse_timeout(grpc_timeout)
                       ? deadline_after(request_start_, http2::grpc::effective_timeout(
                                                            grpc_timeout, http2::grpc::kMaxTimeoutSeconds))
                       : Clock::time_point::max();
  const Clock::time_point now = Clock::now();
  if (now >= grpc_deadline_) co_return Failure::timeout;
  t.connect_timeout = a.timeout->connect;
  if (grpc_deadline_ != Clock::time_point::max()) {
    t.connect_timeout =
        std::min(t.connect_timeout, std::chrono::duration<double>(grpc_deadline_ - now).count());
  }
  t.idle_timeout = spec.keepalive_pool.size > 0 ? spec.keepalive_pool.idle_timeout : 0;
  t.send_timeout = a.timeout->send;
  if (a.node->address.empty()) co_return Failure::connect;
  boost::system::error_code ec;
  auto address = asio::ip::make_address(a.node->address, ec);
  if (ec) co_return Failure::connect;
  t.endpoint = asio::ip::tcp::endpoint(address, a.node->spec.port);

  http2::Fields fields;
  if (!h2_request_fields(a, fields)) co_return Failure::bad_response;
  if (grpc_deadline_ != Clock::time_point::max()) {
    // The node learns what is left of the call (Envoy's router does the same): its own deadline then ends
    // no later than Portico's, so its handler is not left running for a caller that already gave up.
    const auto left = std::chrono::duration_cast<std::chrono::nanoseconds>(grpc_deadline_ - Clock::now());
    if (left.count() <= 0) co_return Failure::timeout;  // DEADLINE_EXCEEDED: nothing left to send the node
    for (http2::Field& f : fields) {
      if (f.name == "grpc-timeout") f.value = http2::grpc::encode_timeout(left);
    }
  }
  const bool has_body = request_.framing != http::BodyFraming::none;
  H2OpenError error = H2OpenError::none;
  h2up_ = co_await worker_.h2_pool().open(t, fields, !has_body, error);
  if (!h2up_) {
    switch (error) {
      case H2OpenError::connect_timeout:
        co_return Failure::connect_timeout;
      case H2OpenError::tls_verify:
        co_return Failure::tls_verify;
      case H2OpenError::busy:
        co_return Failure::refused;
      default:
        co_return Failure::connect;
    }
  }
  a.sent_at = Clock::now();
  upstream_send_timeout_ = a.timeout->send;
  // The body streams beside the response (session_grpc_body.cc): a bidirectional call's node may answer
  // each message before the next one comes. The response head waits the route's read timeout from the
  // body's end, within the call's deadline; a streaming response's later reads each get the read timeout,
  // within it too (docs/grpc.md).
  if (has_body) {
    // A "100 Continue" the pump sent could interleave with the relay's writes: it goes now, before the pump
    // starts, or not at all when body bytes already came (RFC 9110 10.1.1 lets a server omit it then).
    if (client_buffered() > request_.head_size) {
      continue_sent_ = true;
    } else if (!co_await send_continue()) {
      client_gone_ = true;
      close_after_ = true;
      h2up_.reset();
      co_return Failure::client;
    }
    start_h2_pump();
  }
  H2UpstreamStream::Wait w = co_await wait_h2_response(true, a.timeout->read);
  if (w != H2UpstreamStream::Wait::ready) {
    co_await stop_h2_pump();
    const http2::ClientStream& s = h2up_->state();
    if (client_error_ || client_gone_) {
      h2up_.reset();  // RST_STREAM CANCEL
      co_return Failure::client;
    }
    // Not processed by the node (REFUSED_STREAM, above a GOAWAY's last stream id): nothing reached its
    // application, so the request may go to another node like after a failed connect, if its body can be
    // sent again (all of it so far is in the replay buffer).
    const bool unprocessed =
        w == H2UpstreamStream::Wait::closed && s.unprocessed && !h2_body_.replay_overflow;
    const bool overflow = s.header_overflow;  // too large or too many fields: the node's answer is invalid
    h2up_.reset();
    if (overflow) co_return Failure::bad_response;
    if (w == H2UpstreamStream::Wait::timeout) co_return Failure::timeout;
    if (w == H2UpstreamStream::Wait::interrupted) co_return Failure::client;
    co_return unprocessed ? Failure::refused : Failure::reset;
  }
  upstream_status_ = h2up_->state().status;
  bool ok = co_await relay_h2_response(a);
  upstream_seconds_ = std::chrono::duration<double>(Clock::now() - a.sent_at).count();
  // The response ended (or failed) while the client may still be sending: the rest of its body goes
  // nowhere, and an HTTP/1.1 connection cannot be reused with it unread.
  co_await stop_h2_pump();
  if (!request_body_done_) close_after_ = true;
  h2up_.reset();
  response_.header_count = 0;  // its views pointed into the stream's fields
  if (!ok) close_after_ = true;
  co_return Failure::none;
}

awaitable<bool> Session::relay_h2_response(Attempt& a) {
  const http2::ClientStream& s = h2up_->state();
  // The node's head as an HTTP/1.1 response head (views into the stream's fields, alive as long as h2up_), so
  // the plugins' response phase and the head writer see it like any other.
  http::ResponseHead& head = response_;
  head.reset();
  head.status = static_cast<uint16_t>(s.status);
  head.framing = http::BodyFraming::chunked;
  for (const http2::Field& f : s.head) {
    if (f.name == "content-length") continue;  // re-framed
    if (head.header_count == http::kMaxHeaders) co_return false;
    head.headers[head.header_count++] = http::Header{f.name, f.value};
  }
  const bool http10 = request_.version_minor == 0;
  const bool grpc_response = http2::grpc::is_grpc_content_type(head.find("content-type"));
  const bool web = grpc_web_call() && grpc_response;  // a node that answers gRPC-Web itself is relayed as is
  if (!request_body_done_) close_after_ = true;
  if (worker_.draining()) close_after_ = true;
  ClientResponseParams cp;
  if (!pipeline_.empty()) {
    plugins::ResponseInfo info;
    info.status = head.status;
    info.upstream = &head;
    pipeline_.run_response(plugin_context(), info);
    // Header and status edits apply; a replaced body does not (a gRPC body is framed messages).
    if (!plugin_context().response.empty()) cp.edits = &plugin_context().response;
    if (plugin_context().response.has_body) plugin_context().response.has_body = false;
  }
  // A head that ended the stream (gRPC's trailers-only response: the status is in the head) is relayed as
  // one: an empty body by Content-Length, which an HTTP/2 client receives as a single HEADERS with
  // END_STREAM. Relayed chunked, the client would see DATA after a status and fail the call.
  bool headers_only = s.remote_ended && s.data.empty() && !s.trailers_ready;
  // gRPC-Web: a trailers-only answer without a status gets APISIX's grpc-status 2 in a trailer frame, which
  // needs a body (end_grpc_web below, as for a node that ends a streamed response without one).
  bool web_no_status = false;
  if (web && headers_only) {
    web_no_status = true;
    for (const http2::Field& f : s.head) web_no_status = web_no_status && f.name != "grpc-status";
    headers_only = !web_no_status;
  }
  if (headers_only) {
    if (head.header_count == http::kMaxHeaders) co_return false;
    head.framing = http::BodyFraming::content_length;
    head.content_length = 0;
    head.headers[head.header_count++] = http::Header{"content-length", "0"};
    cp.body = OutFraming::content_length;
  } else {
    cp.body = http10 ? OutFraming::until_close : OutFraming::chunked;
    if (http10) close_after_ = true;
  }
  cp.close = close_after_;
  cp.http10 = http10;
  write_client_response_head(head_out_, head, cp);
  if (!co_await write_client(bufs(asio::buffer(head_out_)))) {
    h2up_->reset();
    co_return false;
  }
  if (headers_only) co_return true;
  const bool chunked = !http10;
  if (web_no_status) co_return co_await end_grpc_web(http2::Fields(), chunked);
  while (true) {
    H2UpstreamStream::Wait w = co_await wait_h2_response(false, a.timeout->read);
    if (w == H2UpstreamStream::Wait::ready) {
      if (!s.data.empty()) {
        const size_t n = s.data.size();
        if (!(web ? co_await write_grpc_web_body(s.data, chunked)
                  : co_await write_client_body(s.data, chunked))) {
          h2up_->reset();
          co_return false;
        }
        h2_pump_.activity = Clock::now();  // the call is not idle (the pump's client read guard)
        h2up_->consume(n);
        continue;
      }
      // END_STREAM: the trailers (HTTP/1.1: a chunked trailer section; gRPC-Web: a frame in the body).
      if (web) co_return co_await end_grpc_web(s.trailers, chunked);
      if (!chunked) co_return true;
      co_return co_await write_client_trailers(s.trailers);
    }
    // Reset by the node, its connection lost, a deadline. A gRPC response ends with a status the client
    // understands (UNAVAILABLE, or DEADLINE_EXCEEDED), as trailers after the messages already relayed; any
    // other response is cut (HTTP/2: RST_STREAM; HTTP/1.1: no last chunk).
    h2up_->reset();
    if (web && grpc_web_.bad_body) {
      // The -text body turned out not to be base64 after the node answered: the call ends with the status
      // Portico answers before (docs/grpc.md), in the trailer frame, rather than a cut response.
      close_after_ = true;
      const http2::Fields bad{{"grpc-status", std::to_string(http2::grpc::kInternal)},
                              {"grpc-message", std::string("invalid base64 request body")}};
      co_return co_await end_grpc_web(bad, chunked);
    }
    if (w == H2UpstreamStream::Wait::interrupted || !grpc_response || (!chunked && !web)) co_return false;
    const bool expired = w == H2UpstreamStream::Wait::timeout && Clock::now() >= grpc_deadline_;
    const int code = expired ? http2::grpc::kDeadlineExceeded : http2::grpc::kUnavailable;
    const http2::Fields status{
        {"grpc-status", std::to_string(code)},
        {"grpc-message", expired ? std::string("deadline exceeded")
                                 : std::string("upstream ended the call without a status")}};
    if (!(web ? co_await end_grpc_web(status, chunked) : co_await write_client_trailers(status)))
      co_return false;
    close_after_ = true;  // the node's stream failed: start afresh
    co_return true;
  }
}

awaitable<bool> Session::write_client_trailers(const http2::Fields& trailers) {
  std::string& out = chunk_line_;
  if (H2Stream* stream = client_.h2()) {
    // HTTP/2 client: END_STREAM carries them (HEADERS), sent when the translation sees the last chunk.
    stream->set_trailers(trailers);
    out = "0\r\n\r\n";
    co_return co_await write_client(bufs(asio::buffer(out)));
  }
  out = "0\r\n";
  for (const http2::Field& f : trailers) {
    out += f.name;
    out += ": ";
    out += f.value;
    out += "\r\n";
  }
  out += "\r\n";
  co_return co_await write_client(bufs(asio::buffer(out)));
}

awaitable<bool> Session::send_grpc_error(int status, std::string_view message, bool close) {
  // DEADLINE_EXCEEDED only when the call's own deadline passed; a connect or read timeout of the route is a
  // node failing to answer in time (UNAVAILABLE, as every other status maps by the gRPC document).
  const bool expired = status == 504 && Clock::now() >= grpc_deadline_;
  const int code = expired ? http2::grpc::kDeadlineExceeded : http2::grpc::status_for_http(status);
  const std::string encoded = http2::grpc::percent_encode(message);
  std::string& out = head_out_;
  out = request_.version_minor == 0 ? "HTTP/1.0 200 OK\r\n" : "HTTP/1.1 200 OK\r\n";
  out += "Server: portico\r\nContent-Type: application/grpc\r\ngrpc-status: ";
  out += std::to_string(code);
  out += "\r\n";
  if (!encoded.empty()) {
    out += "grpc-message: ";
    out += encoded;
    out += "\r\n";
  }
  out += "Content-Length: 0\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  bool ok = co_await write_client(bufs(asio::buffer(out)));
  co_return ok && !close;
}

}  // namespace portico::proxy
