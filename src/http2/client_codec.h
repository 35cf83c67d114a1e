// ClientCodec: the client side of one HTTP/2 connection to an upstream node, sans I/O. It wraps an
// nghttp2 client session: the caller feeds the bytes it read (feed), takes the bytes to write (take_output),
// submits requests and their bodies, and reads each stream's response (head, DATA, trailers, close) from the
// stream's state. No sockets, no timers, no threads: the proxy layer (proxy/h2_upstream.h) drives it on one
// worker, and the unit tests drive it against an in-process nghttp2 server session.
//
// Ownership: the codec owns every stream's state from submit_request until forget(); pointers returned by
// stream() stay valid until then. One thread at a time (the worker's); not reentrant: never call the codec
// from inside another of its calls.
//
// Bounds: the DATA buffered for a stream is at most the window Portico grants it (limits.stream_window):
// automatic WINDOW_UPDATEs are off and the window is re-opened only as the caller consume()s, so a slow
// client of a fast node holds at most one window per stream, and a node sending beyond it breaks flow
// control (a connection error nghttp2 reports). Response header lists are bounded (decoded size, as
// SETTINGS_MAX_HEADER_LIST_SIZE, and field count) and so is the number of CONTINUATION frames. HTTP messaging
// checks stay on (http2/README.md): a malformed response is a stream error, never delivered.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http/message.h"
#include "http2/field.h"

struct nghttp2_session;

namespace portico::http2 {

struct ClientLimits {
  // Window granted per stream, and so the DATA buffered per stream (nginx grpc_buffer_size is 4 KiB with
  // its own 64 KiB window; HAProxy's tune.h2.initial-window-size defaults to 65535).
  uint32_t stream_window = 256 * 1024;
  // Window for the whole connection (all its streams' unconsumed DATA).
  uint32_t connection_window = 4 * 1024 * 1024;
  // Decoded size of a response's header list, name + value + 32 per field as RFC 9113 6.5.2 counts (nginx
  // large_client_header_buffers-like 32 KiB for grpc; HAProxy tune.bufsize 16 KiB).
  uint32_t max_header_list = 64 * 1024;
  // Fields per header block (head or trailers), pseudo-headers aside: the proxy relays a head as an
  // HTTP/1.1 head of at most http::kMaxHeaders fields, one of them possibly its own Content-Length (HAProxy's
  // tune.http.maxhdr is 101; nginx has no count, only buffer sizes).
  size_t max_header_count = http::kMaxHeaders - 1;
  // CONTINUATION frames per header block (nghttp2's default is 8; CVE-2024-27316 floods).
  size_t max_continuations = 8;
  // Streams assumed before the node's SETTINGS arrive (RFC 9113 recommends at least 100).
  uint32_t initial_max_streams = 100;
};

// Error codes of RFC 9113 7 the callers look at.
constexpr uint32_t kNoError = 0x0;
constexpr uint32_t kProtocolError = 0x1;
constexpr uint32_t kInternalError = 0x2;
constexpr uint32_t kRefusedStream = 0x7;
constexpr uint32_t kCancel = 0x8;

// What the codec knows of one request/response exchange. Read-only to the caller.
struct ClientStream {
  int32_t id = 0;
  // Response side.
  bool head_ready = false;  // the final (non-1xx) response head arrived: status + head
  int status = 0;
  Fields head;
  std::string data;  // received DATA not yet consume()d; never more than limits.stream_window
  bool trailers_ready = false;
  Fields trailers;
  bool remote_ended = false;  // END_STREAM received (the response is complete)
  bool closed = false;        // the stream is closed (ended, reset by either side, or the connection died)
  uint32_t error_code = kNoError;  // RST_STREAM's code (or the connection's error) when closed uncleanly
  // The node did not process this request (REFUSED_STREAM, or above a GOAWAY's last stream id): it may be
  // retried elsewhere even if not idempotent (RFC 9113 8.7).
  bool unprocessed = false;
  // The head or trailers went over limits.max_header_list or max_header_count (the stream was reset).
  bool header_overflow = false;

  // Request side.
  std::string out;  // body bytes submitted and not yet framed into DATA
  size_t out_offset = 0;
  bool out_end = false;  // the caller finished the body (out_trailers, if any, follow the DATA)
  Fields out_trailers;
  bool out_done = false;  // END_STREAM was framed
  bool deferred = false;  // nghttp2 waits for body bytes (resume on the next send)

  bool changed = false;  // in the codec's changed list (internal)
  size_t out_pending() const { return out.size() - out_offset; }
};

class ClientCodec {
 public:
  explicit ClientCodec(const ClientLimits& limits = {});
  ~ClientCodec();
  ClientCodec(const ClientCodec&) = delete;
  ClientCodec& operator=(const ClientCodec&) = delete;

  // Bytes received from the node. False on a connection error (the peer broke the protocol, or a limit):
  // every open stream is then closed with `error_code` and take_output() holds the GOAWAY to send.
  bool feed(const char* data, size_t size);
  // Frames ready to write (the preface and SETTINGS first). Appends to `out`; false if nothing was added.
  bool take_output(std::string& out);
  bool want_output() const;

  // Starts a request: `fields` are the pseudo-headers (:method, :scheme, :authority, :path) then the
  // regular fields, names lower case. `end_stream`: no body follows. Returns the stream id, or -1 when
  // nghttp2 refuses it (fields invalid, the stream ids ran out, the connection is going away).
  int32_t submit_request(const Fields& fields, bool end_stream);
  // Queues body bytes (the caller bounds them by out_pending(): backpressure). False if the stream is gone.
  bool send_data(int32_t id, std::string_view data);
  // Ends the body, with trailers when `trailers` is not empty.
  bool end_stream(int32_t id, const Fields& trailers = {});
  // RST_STREAM (CANCEL when the client went away or a deadline passed).
  void reset(int32_t id, uint32_t error_code = kCancel);
  // The caller has taken `n` bytes of s.data: drops them and re-opens the window by as much.
  void consume(int32_t id, size_t n);
  // Drops the stream's state (resetting the stream if it is still open); returns its unconsumed DATA's
  // share of the connection window.
  void forget(int32_t id);

  ClientStream* stream(int32_t id);
  // Streams whose state changed since the last call (head, data, trailers, close, body drained).
  std::vector<int32_t> take_changed();

  // Graceful close by Portico: GOAWAY (NO_ERROR); open streams finish.
  void shutdown();
  // The transport ended (EOF, read/write error, timeout): every open stream is closed with `error_code`.
  void transport_closed(uint32_t error_code = kInternalError);

  // Connection state.
  bool alive() const;  // can still read or write
  bool goaway_received() const { return goaway_received_; }
  int32_t goaway_last_stream() const { return goaway_last_stream_; }
  uint32_t connection_error() const { return connection_error_; }
  // SETTINGS_MAX_CONCURRENT_STREAMS the node announced (limits.initial_max_streams before its SETTINGS).
  uint32_t peer_max_streams() const;
  bool settings_received() const { return settings_received_; }
  size_t open_streams() const { return open_streams_; }  // submitted and not yet closed
  size_t known_streams() const { return streams_.size(); }

  const ClientLimits& limits() const { return limits_; }

 private:
  struct Callbacks;  // the nghttp2 callbacks (client_codec.cc)
  friend struct Callbacks;

  void mark(ClientStream& s);
  void fail_all(uint32_t error_code);

  ClientLimits limits_;
  nghttp2_session* session_ = nullptr;
  std::unordered_map<int32_t, std::unique_ptr<ClientStream>> streams_;
  std::vector<int32_t> changed_;
  size_t open_streams_ = 0;
  // The header block being received (blocks are never interleaved: RFC 9113 6.10).
  size_t header_bytes_ = 0;
  int block_status_ = 0;
  Fields block_;
  size_t pending_connection_consume_ = 0;  // DATA of forgotten streams, re-opened after mem_recv
  bool goaway_received_ = false;
  int32_t goaway_last_stream_ = INT32_MAX;
  uint32_t connection_error_ = kNoError;
  bool settings_received_ = false;
  bool dead_ = false;
};

}  // namespace portico::http2
