// ServerCodec: the server side of one HTTP/2 connection, sans I/O. Bytes received from the client go in
// (receive), events come out through a Handler (a validated request head, body data, end of stream, stream
// closed), and submissions (response head, body data, trailers, 1xx, RST_STREAM, GOAWAY) become bytes to send
// (produce). It wraps an nghttp2 server session with HTTP messaging checks on (connection-specific fields,
// pseudo-headers, upper-case names, CR/LF/NUL and content-length against DATA are nghttp2's), and adds
// Portico's own bounds: decoded header list size and header count, live streams counted until their owner is
// done with them (rapid reset), resets before a response, control frames per second, requests per connection.
//
// Ownership: the owner (proxy::H2Connection) owns the codec and the Handler outlives it. Handler callbacks
// run inside receive() or the submission that caused them. Not thread-safe: one worker thread only.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http2/field.h"

struct nghttp2_session;

namespace portico::http2 {

// Per-connection limits. Defaults follow nginx and HAProxy where they have one (src/http2/README.md).
struct ServerLimits {
  uint32_t max_concurrent_streams = 128;      // nginx http2_max_concurrent_streams 128, HAProxy 100
  uint32_t max_header_list_size = 64 * 1024;  // decoded (name + value + 32 each): --max-header-size
  uint32_t max_header_count = 100;            // HAProxy tune.http.maxhdr 101; http::kMaxHeaders is 128
  int32_t initial_window_size = 256 * 1024;   // per request body (nginx http2_body_preread_size 64 KiB)
  int32_t connection_window_size = 1 << 20;   // all request bodies of the connection together
  size_t max_continuations = 8;               // CONTINUATION frames per header block (nghttp2 default 8)
  uint64_t stream_reset_burst = 1000;         // nghttp2's stream reset rate limit (its defaults)
  uint64_t stream_reset_rate = 33;            // ... per second
  size_t max_settings = 32;                   // entries in one SETTINGS frame (nghttp2 default 32)
  size_t max_outbound_ack = 1000;             // queued PING/SETTINGS ACKs (nghttp2 default 1000)
  uint32_t max_control_frames_per_second =
      1000;  // PING, SETTINGS, PRIORITY, RST_STREAM, empty DATA (not WINDOW_UPDATE)
  // Early resets (the client's RST_STREAM before the response started, and Portico's/nghttp2's RST_STREAM
  // for a client's stream error: CVE-2025-8671 "MadeYouReset") per second, beyond half the requests of that
  // second: a busy channel cancelling many RPCs on deadlines stays well inside it, a reset flood does not.
  uint32_t max_early_resets_per_second = 200;
  uint32_t max_requests = 1000;  // nginx keepalive_requests 1000: then a graceful GOAWAY
};

// A request head that passed nghttp2's checks and Portico's (:authority vs host, cookie crumbs joined).
struct Request {
  std::string method;
  std::string scheme;
  std::string authority;  // :authority, else the host field, else empty
  std::string path;       // empty for CONNECT
  std::vector<Field>
      fields;  // regular fields in order, without host; cookie crumbs joined with "; " at the end
  bool end_stream = false;  // no body follows
  bool has_content_length = false;
  uint64_t content_length = 0;
};

class ServerCodec {
 public:
  class Handler {
   public:
    virtual ~Handler() = default;
    // A complete, validated request head on a new stream. The owner must call stream_finished(id) once it
    // is done with the stream (until then the stream counts against max_concurrent_streams).
    virtual void on_request(int32_t id, Request& request) = 0;
    // Request body bytes; the owner calls consume(id, n) as it uses them (that opens the window again).
    virtual void on_data(int32_t id, std::string_view data) = 0;
    virtual void on_end_stream(int32_t id) = 0;
    // The stream is closed (error_code: 0 after a complete exchange, else the RST_STREAM code, either way).
    virtual void on_stream_close(int32_t id, uint32_t error_code) = 0;
  };

  ServerCodec(const ServerLimits& limits, Handler& handler);
  ~ServerCodec();
  ServerCodec(const ServerCodec&) = delete;
  ServerCodec& operator=(const ServerCodec&) = delete;

  // Feeds received bytes. False: a connection error; a GOAWAY (goaway_code()) is queued: flush, then close.
  bool receive(std::string_view bytes);
  // Appends bytes to send to `out` until it holds at least `max` bytes or nothing is pending.
  void produce(std::string& out, size_t max);
  bool want_write() const;
  // False once the connection is over (both sides said GOAWAY and no stream is left, or a fatal error).
  bool want_read() const;
  bool failed() const { return failed_; }
  uint32_t goaway_code() const { return goaway_code_; }
  // True once the client's connection preface and first SETTINGS frame were received.
  bool preface_received() const { return settings_received_; }
  // True while a header block is incomplete (HEADERS without END_HEADERS seen).
  bool in_header_block() const { return in_header_block_; }

  // --- submissions (the owner calls produce() afterwards) ---
  // `end_stream`: no body (a HEAD response, 204, 304, or an empty one).
  bool submit_response(int32_t id, int status, const std::vector<Field>& fields, bool end_stream);
  // The same from views (the proxy's per-connection head scratch): no copy of the fields before nghttp2's.
  bool submit_response(int32_t id, int status, const FieldView* fields, size_t count, bool end_stream);
  bool submit_informational(int32_t id, int status, const std::vector<Field>& fields);
  // Queues response body bytes (copied); queued(id) says how many are not framed yet (the owner's
  // backpressure: flow control stops framing when the client's window is closed).
  void submit_data(int32_t id, std::string_view data);
  // The body is complete: END_STREAM after the queued bytes (or trailers, when given).
  void submit_end(int32_t id, const std::vector<Field>* trailers = nullptr);
  size_t queued(int32_t id) const;
  // Response bytes queued on all streams, including streams whose owner has finished (their bytes wait for
  // the client's window with no Session behind them): the owner's per-connection bound.
  size_t queued_total() const { return queued_total_; }
  // Response body bytes framed as DATA since the connection began: the owner's progress clock (a client
  // that answers PINGs and opens streams but no window makes none).
  uint64_t data_framed() const { return data_framed_; }
  void reset(int32_t id, uint32_t error_code);
  // Request body bytes used: WINDOW_UPDATE as they are consumed, never ahead of it.
  void consume(int32_t id, size_t n);
  // The owner is done with the stream: it no longer counts as live.
  void stream_finished(int32_t id);
  // GOAWAY with the last stream id 2^31-1: the client stops opening streams (graceful shutdown, step one),
  // followed by a PING whose ACK (notice_acknowledged) shows one round trip has passed: streams the client
  // opened before it saw the notice have arrived by then.
  void shutdown_notice();
  bool notice_acknowledged() const { return notice_acked_; }
  // The final GOAWAY, with the last stream id processed; streams above it are refused.
  void goaway(uint32_t error_code);
  // Ends the connection now: GOAWAY with `error_code`, nothing else is sent (a client that opens no window).
  void terminate(uint32_t error_code) { fail(error_code); }
  bool goaway_sent() const { return final_goaway_; }
  size_t live_streams() const { return live_; }
  // Streams nghttp2 still has open (including ones the owner already finished).
  size_t open_streams() const;

  // nghttp2 callbacks (server_codec.cc); public only so the C trampolines can reach them.
  int on_begin_frame(const void* hd);
  int on_begin_headers(const void* frame);
  int on_header(const void* frame, std::string_view name, std::string_view value);
  int on_frame_recv(const void* frame);
  int on_data_chunk(int32_t id, const uint8_t* data, size_t len);
  int on_close(int32_t id, uint32_t error_code);
  long read_data(int32_t id, uint8_t* buf, size_t length, uint32_t* flags);
  void on_end_stream_sent(int32_t id);
  void on_rst_sent(uint32_t error_code);
  void on_error_goaway_sent(uint32_t code) {
    failed_ = true;
    final_goaway_ = true;
    if (goaway_code_ == 0) goaway_code_ = code;
  }

 private:
  struct Stream {
    Request request;
    uint32_t header_bytes = 0;
    uint32_t header_count = 0;
    std::string cookie;
    int reject = 0;           // 431: header list too large; -1: stream error (PROTOCOL_ERROR)
    bool delivered = false;   // on_request was called: the owner calls stream_finished
    bool finished = false;    // the owner called stream_finished
    bool slot_freed = false;  // no longer counted in live_ (completed on the wire before its session ended)
    bool closed = false;      // nghttp2 closed it
    bool responded = false;   // a response head was submitted
    bool deferred = false;    // the data source waits for submit_data
    bool end = false;         // submit_end called
    bool has_trailers = false;
    bool remote_ended = false;     // the client's END_STREAM arrived
    bool end_sent = false;         // our END_STREAM went out
    bool reset_after_end = false;  // RST_STREAM NO_ERROR once END_STREAM went out
    std::vector<Field> trailers;
    std::string out;  // queued response body bytes [out_begin, size)
    size_t out_begin = 0;
    size_t unconsumed = 0;  // request body bytes received and not consumed yet
  };
  Stream* find(int32_t id);
  void maybe_erase(int32_t id);
  // Counts one event in a one-second window; false once `limit` is exceeded.
  struct Window {  // counts per second (base::coarse_monotonic)
    std::chrono::nanoseconds start{0};
    uint32_t count = 0;
    bool add(uint32_t limit);
  };
  void fail(uint32_t code);
  // Fills nva_ (reused across submissions) with `status` (unless empty) and the fields.
  void make_nva(std::string_view status, const std::vector<Field>& fields);
  void make_nva(std::string_view status, const FieldView* fields, size_t count);

  ServerLimits limits_;
  Handler& handler_;
  nghttp2_session* session_ = nullptr;
  std::unordered_map<int32_t, Stream> streams_;
  size_t live_ = 0;
  size_t queued_total_ = 0;
  uint64_t data_framed_ = 0;
  uint32_t requests_ = 0;
  Window control_;
  // Early resets against requests, in one-second windows.
  struct ResetBudget {  // per second (base::coarse_monotonic)
    std::chrono::nanoseconds start{0};
    uint32_t requests = 0;
    uint32_t resets = 0;
    void roll();
  };
  bool add_reset();  // false once over the budget
  ResetBudget resets_;
  bool reset_flood_ = false;  // found in the send callback: fail() once mem_send returns
  bool failed_ = false;
  bool final_goaway_ = false;
  bool settings_received_ = false;
  bool in_header_block_ = false;
  bool notice_sent_ = false;
  bool notice_acked_ = false;
  uint32_t goaway_code_ = 0;
  uint32_t pending_calm_ = 0;    // set in a callback: the GOAWAY code to end the connection with
  struct NvList;                 // std::vector<nghttp2_nv> (server_codec.cc)
  std::unique_ptr<NvList> nva_;  // make_nva's output, its capacity kept
};

}  // namespace portico::http2
