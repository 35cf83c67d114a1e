// H2Stream: one HTTP/2 request stream as its Session sees it, the seam between the Session's ClientStream
// and the H2Connection's codec. The Session reads and writes HTTP/1.1 bytes, exactly as on a socket:
// - reads yield the request body: Content-Length bodies as received (the last byte is held back until
//   END_STREAM, so a body that disagrees with its content-length is never complete upstream: nghttp2 resets
//   the stream and the read fails), bodies without one as chunked framing (the head says so);
// - the relay's final head comes as structure (start_response: head_writer's filter applied to the origin's
//   parsed head, submitted as HEADERS without text in between); any other head (1xx, Portico's own answers,
//   gRPC's) is written as HTTP/1.1 text, which the stream parses back with Portico's own strict parser
//   (http::parse_response) into HEADERS (the same filter, lower-case names, no framing fields) or 1xx; the
//   body bytes after a head become DATA (chunked framing decoded), then END_STREAM. A write completes once
//   the codec holds at most kMaxQueued bytes for the stream and kMaxConnectionQueued for the connection;
//   while the connection is over its bound a write's bytes are not even taken (they stay in the Session's
//   buffer). A client that does not open its window stalls the Sessions; the connection's stall deadline
//   (--send-timeout without progress) then ends it.
//
// Ownership: shared by the Session's ClientStream and nobody else; it keeps its H2Connection alive. The
// connection knows it by raw pointer until it is destroyed. Worker thread only. Completions are posted, never
// run inside the call that caused them.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/system/error_code.hpp>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "http/message.h"
#include "http/parser.h"
#include "http2/field.h"

namespace portico::proxy {

class H2Connection;
class Session;
struct ClientResponseParams;

class H2Stream {
 public:
  // A move-only completion handler, type-erased (Boost 1.81's any_completion_handler re-wraps itself
  // when moved from an lvalue, recursing without end).
  class Handler {
   public:
    Handler() = default;
    template <typename H>
    requires(!std::is_same_v<std::decay_t<H>, Handler>) explicit Handler(H&& h)
        : impl_(std::make_unique<Impl<std::decay_t<H>>>(std::forward<H>(h))) {}
    explicit operator bool() const { return static_cast<bool>(impl_); }
    void operator()(boost::system::error_code ec, size_t n) {
      std::unique_ptr<Base> impl = std::move(impl_);
      impl->call(ec, n);
    }

   private:
    struct Base {
      virtual ~Base() = default;
      virtual void call(boost::system::error_code ec, size_t n) = 0;
    };
    template <typename H>
    struct Impl final : Base {
      explicit Impl(H&& h) : handler(std::move(h)) {}
      void call(boost::system::error_code ec, size_t n) override { std::move(handler)(ec, n); }
      H handler;
    };
    std::unique_ptr<Base> impl_;
  };
  static constexpr size_t kMaxQueued = 64 * 1024;  // response bytes queued in the codec per stream
  // ... and on the whole connection: a Session that wrote its last bytes ends and frees its stream slot
  // while its bytes may still wait for the client's window, so the per-stream bound alone would let a client
  // that opens no window pile up 128 x 64 KiB per round of streams. A write waits while the connection
  // holds more than this (nginx's comparable bound is its output buffers per connection).
  static constexpr size_t kMaxConnectionQueued = 1 << 20;

  struct Body {
    bool ended = false;    // END_STREAM came with the head: no body
    bool chunked = false;  // no content-length: reads yield chunked framing
    bool has_content_length = false;
    uint64_t content_length = 0;
  };
  H2Stream(std::shared_ptr<H2Connection> connection, int32_t id, bool head_request, Body body);
  ~H2Stream();
  H2Stream(const H2Stream&) = delete;
  H2Stream& operator=(const H2Stream&) = delete;

  // --- the Session's side (ClientStream) ---
  void async_read_some(boost::asio::mutable_buffer buffer, Handler handler);
  // Takes response bytes (all of them); then `handler` completes once the stream may take more.
  void write(std::string_view bytes);
  void async_wait_writable(size_t n, Handler handler);
  // write() of each of `pieces`, then what async_wait_writable would do if it could complete at once: true
  // when it could (`ec` set if the stream failed), so the caller goes on without a round through the event
  // loop; false when the caller must wait with async_wait_writable (the bytes are taken or parked).
  bool write_now(const std::string_view* pieces, size_t count, boost::system::error_code& ec);
  // The Session is done with the client: an incomplete response resets the stream.
  void close();
  void cancel();  // pending operations complete with operation_aborted
  // Trailers to send with END_STREAM once the (chunked) response body ends: gRPC's status
  // (proxy/session_grpc.cc). HTTP/1.1 bytes cannot carry them through the translation (chunked trailer
  // sections are dropped by the decoder), so they come through here; set before the last chunk is written.
  void set_trailers(std::vector<http2::Field> trailers) { trailers_ = std::move(trailers); }
  bool is_open() const { return !closed_ && !broken_; }
  // The final response head, handed over as structure rather than written as HTTP/1.1 text (the relay's
  // common case, session_exchange.cc): HEADERS from `response` as write_client_response_head would filter it
  // with `params`, then the body bytes written after it, framed as `params.body` says (chunked framing
  // decoded). Before any other byte of the response but a 1xx head.
  void start_response(const http::ResponseHead& response, const ClientResponseParams& params);
  // What went to the client: the response heads' fields (":status" and each name and value, as HPACK sees
  // them before compression), the DATA payload, the trailers' fields. Not the HTTP/1.1 framing the Session
  // wrote (the access log's and the plugins' bytes_sent of an HTTP/2 stream).
  uint64_t bytes_sent() const { return bytes_sent_; }

  // --- the connection's side ---
  void attach(std::weak_ptr<Session> session) { session_ = std::move(session); }
  int32_t id() const { return id_; }
  void on_data(std::string_view data);
  void on_end();
  // The stream closed in the codec (error_code 0: the exchange completed) or the connection went away.
  void on_closed(uint32_t error_code);
  // The codec framed queued bytes: a parked write may go on.
  void on_drained();
  bool write_parked() const { return static_cast<bool>(write_handler_); }

 private:
  void post(Handler handler, boost::system::error_code ec, size_t n);
  void try_read();
  void fail(uint32_t error_code);  // reset the stream (once), stop translating
  void translate(std::string_view bytes);
  void submit_head(std::vector<std::pair<std::string, std::string>> fields);
  // After a final head: how its body is sent (out_, out_left_). False: END_STREAM with the head.
  bool expect_body(int status, http::BodyFraming framing, uint64_t content_length);
  // Portico's own head with more fields than http::kMaxHeaders: parsed kMaxHeaders/2 field lines at a time
  // (same parser, same filter per slice); false if it is not a head Portico writes.
  bool parse_in_slices(std::vector<std::pair<std::string, std::string>>& fields);
  bool writable() const;

  std::shared_ptr<H2Connection> conn_;
  boost::asio::any_io_executor executor_;
  int32_t id_;
  bool head_request_;
  Body body_info_;

  // Request body: payload bytes received and not read yet.
  std::string body_;
  uint64_t body_read_ = 0;  // payload bytes handed to the Session
  bool body_end_ = false;   // END_STREAM received
  std::string framing_;     // chunk framing to hand out before more payload
  size_t framing_begin_ = 0;
  uint64_t chunk_left_ = 0;
  bool last_chunk_sent_ = false;
  Handler read_handler_;
  boost::asio::mutable_buffer read_buffer_;

  // Response translation.
  enum class Out : uint8_t { head, length, chunked, done };
  Out out_ = Out::head;
  std::string head_buf_;
  // The head parsed back from text (1xx, Portico's own answers); made on first use: a large object, and the
  // relay's final head comes as structure (start_response).
  std::unique_ptr<http::ResponseHead> response_;
  uint64_t out_left_ = 0;
  http::ChunkedDecoder decoder_;
  Handler write_handler_;
  size_t write_size_ = 0;
  std::vector<std::string_view> pending_;  // a parked write's pieces, in the Session's buffer

  std::vector<http2::Field> trailers_;  // set_trailers
  uint64_t bytes_sent_ = 0;
  bool closed_ = false;  // the codec closed the stream
  bool broken_ = false;  // reset by Portico, or the response could not be translated
  std::weak_ptr<Session> session_;
};

}  // namespace portico::proxy
