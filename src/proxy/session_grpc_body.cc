// The request body of a grpc / grpcs try (session_grpc.cc has the rest): read from the client, decoded, and
// written to the node's HTTP/2 stream by a pump coroutine that runs beside the response relay, so that a
// bidirectional call flows both ways at once (a client that waits for a reply before sending on, a node
// that answers before the body ends). Each direction keeps its own backpressure and deadlines:
// - client -> node: a write waits while H2UpstreamStream::kSendHighWater bytes are unframed, within the
//   route's send timeout and the call's deadline; a client read is bounded by the pump's own guard
//   (header_timeout without a byte either way, as Envoy's stream idle timeout counts both directions),
//   never by the session's watchdog, which the relay's writes to the client use meanwhile;
// - node -> client: the relay (relay_h2_response), whose read timeout counts from the end of the body.
// The relay stops the pump once the response ended or failed, and waits for it before the stream goes.
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/use_awaitable.hpp>

#include "proxy/session.h"
#include "proxy/worker.h"

namespace portico::proxy {

namespace asio = boost::asio;
using asio::awaitable;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

void Session::start_h2_pump() {
  H2Pump& p = h2_pump_;
  if (!p.guard) {
    p.guard = std::make_unique<asio::steady_timer>(worker_.context());
    p.done = std::make_unique<asio::steady_timer>(worker_.context());
  }
  p.running = true;
  p.stopping = false;
  p.activity = Clock::now();
  p.done->expires_at(Clock::time_point::max());
  asio::co_spawn(worker_.context(), run_h2_pump(shared_from_this()), asio::detached);
}

awaitable<void> Session::run_h2_pump(std::shared_ptr<Session> self) {
  bool ok = false;
  try {
    ok = co_await send_h2_body();
  } catch (const std::exception&) {
    ok = false;  // (allocation failure) the relay must still learn that the pump ended
  }
  H2Pump& p = h2_pump_;
  p.running = false;
  p.ended_at = Clock::now();
  p.done->cancel();
  // The client failed (gone, stalled, an invalid or too large body): the call ends; wake the relay.
  if (!ok && !p.stopping && (client_error_ || client_gone_) && h2up_) h2up_->interrupt();
  self.reset();
}

awaitable<void> Session::stop_h2_pump() {
  H2Pump& p = h2_pump_;
  if (!p.running) co_return;
  p.stopping = true;
  if (h2up_) h2up_->interrupt();  // a write waiting for the node's window
  if (p.reading) {
    boost::system::error_code ec;
    client_.cancel(ec);  // a read waiting for the client (the relay is done with the client by now)
  }
  while (p.running) co_await p.done->async_wait(nothrow);
}

void Session::guard_h2_pump_read() {
  const double idle = worker_.options().header_timeout;
  H2Pump& p = h2_pump_;
  p.guard->expires_at(deadline_after(p.activity, idle));
  p.guard->async_wait([self = shared_from_this(), gen = p.guard_gen, idle](boost::system::error_code ec) {
    H2Pump& q = self->h2_pump_;
    if (ec || gen != q.guard_gen) return;
    // The relay moved bytes meanwhile: the call is not idle.
    if (Clock::now() < deadline_after(q.activity, idle)) {
      self->guard_h2_pump_read();
      return;
    }
    self->timed_out_ = true;
    self->client_.close(ec);
  });
}

awaitable<size_t> Session::read_h2_body(size_t want) {
  H2Pump& p = h2_pump_;
  if (p.stopping) co_return 0;
  p.activity = Clock::now();
  guard_h2_pump_read();
  p.reading = true;
  auto [ec, n] = co_await client_.async_read_some(asio::buffer(up_.data(), want), nothrow);
  p.reading = false;
  ++p.guard_gen;
  p.guard->cancel();
  if (ec || n == 0) {
    if (!p.stopping) client_gone_ = true;
    close_after_ = true;
    co_return 0;
  }
  p.activity = Clock::now();
  co_return n;
}

awaitable<H2UpstreamStream::Wait> Session::wait_h2_response(bool head, double read_timeout) {
  const Clock::time_point start = Clock::now();
  while (true) {
    const H2Pump& p = h2_pump_;
    const Clock::time_point from = p.running ? Clock::now() : std::max(start, p.ended_at);
    const Clock::time_point deadline = std::min(deadline_after(from, read_timeout), grpc_deadline_);
    H2UpstreamStream::Wait w =
        head ? co_await h2up_->wait_head(deadline) : co_await h2up_->wait_data(deadline);
    if (w != H2UpstreamStream::Wait::timeout) co_return w;
    const Clock::time_point now = Clock::now();
    if (now >= grpc_deadline_) co_return w;
    // The body still streams (or ended less than the read timeout ago): not the node's delay.
    if (!p.running && now >= deadline_after(std::max(start, p.ended_at), read_timeout)) co_return w;
  }
}

awaitable<int> Session::next_h2_body_piece(std::string_view& piece) {
  H2Body& b = h2_body_;
  if (request_body_done_ && b.started) co_return 0;
  const size_t head = request_.head_size;
  if (!b.started) {
    b.started = true;
    b.data = in_.data() + in_begin_ + head;
    b.len = client_buffered() - head;
    b.used = 0;
    b.from_in = true;
    body_bytes_read_ = 0;
    if (request_.framing == http::BodyFraming::content_length) {
      b.left = request_.content_length;
      const size_t first = static_cast<size_t>(std::min<uint64_t>(b.len, b.left));
      body_from_in_ = first;
      body_bytes_read_ = first;
      b.left -= first;
      request_body_done_ = b.left == 0;
      if (first > 0) {
        piece = std::string_view(b.data, first);
        co_return 1;
      }
    } else {
      decoder_.reset();
      request_body_done_ = false;
    }
  }
  if (request_.framing == http::BodyFraming::content_length) {
    if (b.left == 0) {
      request_body_done_ = true;
      co_return 0;
    }
    if (!co_await send_continue()) {
      client_gone_ = true;
      co_return -1;
    }
    body_streamed_ = true;
    const size_t want = static_cast<size_t>(std::min<uint64_t>(b.left, up_.size()));
    const size_t n = co_await read_h2_body(want);
    if (n == 0) co_return -1;
    body_bytes_read_ += n;
    b.left -= n;
    request_body_done_ = b.left == 0;
    piece = std::string_view(up_.data(), n);
    co_return 1;
  }
  // Chunked (an HTTP/1.1 client without Content-Length, or an HTTP/2 client's body: h2_stream.h): decoded.
  while (true) {
    http::ChunkedDecoder::Step step = decoder_.next(std::string_view(b.data + b.used, b.len - b.used));
    b.used += step.consumed;
    body_bytes_read_ += step.consumed;
    switch (step.status) {
      case http::ChunkedDecoder::Status::error:
        client_error_ = 400;
        close_after_ = true;
        co_return -1;
      case http::ChunkedDecoder::Status::data:
        b.total += step.data.size();
        if (max_body_ >= 0 && b.total > static_cast<uint64_t>(max_body_)) {
          client_error_ = 413;
          close_after_ = true;
          co_return -1;
        }
        piece = step.data;
        co_return 1;
      case http::ChunkedDecoder::Status::done:
        if (b.from_in) {
          body_from_in_ = b.used;
        } else {
          body_from_in_ = client_buffered() - head;
          leftover_.assign(b.data + b.used, b.len - b.used);  // the next pipelined request
        }
        request_body_done_ = true;
        co_return 0;
      case http::ChunkedDecoder::Status::need_more:
        break;
    }
    if (!co_await send_continue()) {
      client_gone_ = true;
      co_return -1;
    }
    body_streamed_ = true;
    b.from_in = false;
    const size_t n = co_await read_h2_body(up_.size());
    if (n == 0) co_return -1;
    b.data = up_.data();
    b.len = n;
    b.used = 0;
  }
}

awaitable<bool> Session::send_h2_body() {
  H2Body& b = h2_body_;
  auto deadline = [&] { return std::min(deadline_in(upstream_send_timeout_), grpc_deadline_); };
  const bool text = grpc_web_text();  // a gRPC-Web -text body: base64, decoded as it streams
  if (!b.started) {
    grpc_web_.decoder.reset();
    grpc_web_.bad_body = false;
  }
  // A retry first sends again what earlier tries took from the client.
  if (!b.replay.empty() && !co_await h2up_->write(b.replay, deadline())) co_return false;
  while (true) {
    std::string_view piece;
    if (h2_pump_.stopping) co_return false;
    int r = co_await next_h2_body_piece(piece);
    if (r < 0) co_return false;
    if (r == 0 && text && !grpc_web_.decoder.complete()) r = -2;
    if (r == 1 && text && !decode_grpc_web_piece(piece)) r = -2;
    if (r == -2) {
      client_error_ = 400;  // not base64: the call cannot go on
      grpc_web_.bad_body = true;
      close_after_ = true;
      co_return false;
    }
    if (r == 0) break;
    if (piece.empty()) continue;  // less than a quantum so far
    // Kept for a retry on another node while it is small (Envoy keeps a retry buffer the same way); a body
    // larger than that cannot be replayed, and a refused stream is then an error like any other.
    if (!b.replay_overflow) {
      if (b.replay.size() + piece.size() <= kH2ReplayLimit) {
        b.replay.append(piece);
      } else {
        b.replay_overflow = true;
        std::string().swap(b.replay);
      }
    }
    if (h2_pump_.stopping || !co_await h2up_->write(piece, deadline())) co_return false;
  }
  co_return !h2_pump_.stopping && h2up_->finish();
}

}  // namespace portico::proxy
