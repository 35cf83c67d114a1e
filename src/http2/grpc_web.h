// gRPC-Web (grpc/doc/PROTOCOL-WEB.md) as Portico translates it for the grpc-web plugin (docs/grpc.md): the
// content types APISIX accepts, base64 for the "-text" variants (a streaming decoder for request bodies, an
// encoder for response pieces), the trailer frame that carries a call's status in the response body, and a
// frame reader for the responses (tests, fuzzing). Sans I/O: bytes in, bytes out; the proxy drives it.
//
// Thread-safety: the functions are pure; a TextDecoder or FrameReader is one call's, used by one thread.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "http2/field.h"

namespace portico::http2::grpc_web {

enum class Encoding : uint8_t { none, binary, text };

// The four content types APISIX's grpc-web plugin accepts, compared exactly as its table lookup does:
// application/grpc-web and application/grpc-web+proto (binary), application/grpc-web-text and
// application/grpc-web-text+proto (base64). Anything else (parameters included) is none.
Encoding encoding_of(std::string_view content_type);

// Base64 of a -text request body, decoded as it streams. The input is a sequence of 4-character quanta of
// the standard alphabet; a quantum may end with padding ("xx==", "xxx="), and the next one then starts
// afresh (concatenated padded pieces decode like their concatenation, as PROTOCOL-WEB.md lets a client send
// them). Nothing else is accepted (no whitespace, no URL-safe alphabet). Stricter than APISIX's
// ngx.decode_base64, which takes an unpadded last quantum and ignores whatever follows the first '='
// (docs/grpc.md lists the deviation): an unpadded body is refused here, and later padded pieces decode.
class TextDecoder {
 public:
  // Appends what `in` completes to `out`. False on a byte outside the alphabet or misplaced padding (the
  // decoder then stays failed).
  bool feed(std::string_view in, std::string& out);
  // The input so far ends on a quantum boundary: the body may end here.
  bool complete() const { return !failed_ && have_ == 0; }
  void reset() { *this = TextDecoder(); }

 private:
  uint8_t quad_[4] = {0, 0, 0, 0};
  uint8_t have_ = 0;
  uint8_t pad_ = 0;  // '=' seen in the current quantum
  bool failed_ = false;
};

// Appends the padded base64 of `in` to `out`. Each response piece is encoded on its own (as APISIX and
// Envoy do), so a streamed message reaches the client without waiting for the next piece.
void append_base64(std::string_view in, std::string& out);

// Flag of the frame that carries the trailers (PROTOCOL-WEB.md: the MSB of the frame's first byte).
constexpr uint8_t kTrailerFlag = 0x80;

// Appends the trailer frame for `trailers`: 0x80, a 4-byte big-endian length, then "name:value\r\n" per
// field (APISIX's format: no space after the colon, names as the node sent them, lower case in HTTP/2).
void append_trailer_frame(const Fields& trailers, std::string& out);

// Reads gRPC-Web frames from a binary response body as it arrives (a client's view): data frames (flag
// bit 7 clear) and the trailer frame, whose lines it parses into fields. Frames longer than `max_frame`
// are refused.
class FrameReader {
 public:
  struct Frame {
    uint8_t flags = 0;
    std::string payload;
  };
  enum class Status : uint8_t { need_more, frame, error };

  explicit FrameReader(size_t max_frame = 4 * 1024 * 1024) : max_frame_(max_frame) {}
  // Takes bytes; `next` then yields the frames they complete.
  void feed(std::string_view in) { buffer_.append(in); }
  Status next(Frame& frame);

 private:
  size_t max_frame_;
  std::string buffer_;
  size_t used_ = 0;
};

// The fields of a trailer frame's payload ("name:value" lines separated by CRLF; a line without a colon,
// or a name that is not a token, is refused). Names are lower-cased; values trimmed of spaces and tabs.
bool parse_trailers(std::string_view payload, Fields& out);

}  // namespace portico::http2::grpc_web
