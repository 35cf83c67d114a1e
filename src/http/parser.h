// Strict HTTP/1.1 head parsers (RFC 9112, RFC 9110) and the chunked body decoder.
//
// The head parsers are stateless functions over a buffer: call them again with more bytes when they answer
// `incomplete`. They reject, rather than guess, anything a peer could read two ways (request smuggling):
// both Content-Length and Transfer-Encoding, differing or malformed Content-Length, a transfer coding other
// than a final "chunked", whitespace before a colon, obs-fold, bare CR or LF, NUL and other CTLs, invalid
// token characters, a missing or repeated Host on HTTP/1.1, and malformed request or status lines.
// Pure functions: any thread may call them.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "http/message.h"

namespace portico::http {

struct ParseLimits {
  size_t max_head_size = 64 * 1024;     // request line + headers; above it: 431
  size_t max_target_size = 8 * 1024;    // request-target; above it: 414
  size_t max_headers = kMaxHeaders;     // header fields; above it: 431
};

enum class ParseStatus : uint8_t { complete, incomplete, error };

struct ParseResult {
  ParseStatus status = ParseStatus::incomplete;
  uint16_t error_status = 0;  // with error: the status to answer (400, 414, 431, 501, 505); 502 for responses
  const char* error_reason = "";  // static string, e.g. "Content-Length and Transfer-Encoding both present"
};

// Parses one request head from the start of `data`. On `complete`, `out.head_size` bytes were consumed.
// Leading empty lines (CRLF) before a request line are tolerated (RFC 9112 2.2) and counted in head_size.
// Errors answer 400, 414 (target over max_target_size), 417 (Expect other than 100-continue), 431 (too
// many fields, or no end of head within max_head_size), 501 (a transfer coding other than chunked) or 505.
// A prefix of a valid head is always `incomplete`; an error is reported as soon as the bytes decide it.
// On `incomplete` or `error` the contents of `out` are unspecified. Each call costs O(len).
ParseResult parse_request(const char* data, size_t len, const ParseLimits& limits, RequestHead& out);

// Parses one response head. `request_method` and the status decide whether a body follows (HEAD, 1xx, 204,
// 304 and a 2xx to CONNECT carry none). 1xx heads are returned as complete like any other; the caller skips
// them. Every error, including the limits, answers 502. `until_close` framing implies keep_alive = false.
ParseResult parse_response(const char* data, size_t len, Method request_method, const ParseLimits& limits,
                           ResponseHead& out);

// Incremental decoder for a chunked body (RFC 9112 7.1). Feed it bytes as they arrive; it reports the data
// spans (which point into the fed buffer) and where the body ends. Chunk extensions are validated and
// dropped; trailer fields are validated and dropped. Chunk sizes above 2^62 are an error.
class ChunkedDecoder {
 public:
  enum class Status : uint8_t { need_more, data, done, error };

  struct Step {
    Status status;
    size_t consumed;        // bytes of the input used by this step
    std::string_view data;  // with Status::data: body bytes (a sub-span of the input)
  };

  // Decodes from `in` until it has a data span to hand out, needs more input, finishes or fails.
  // Call repeatedly, advancing the input by `consumed`, until need_more/done/error. need_more consumes all
  // of `in`; done stops right after the final CRLF (later bytes belong to the next message); error stops
  // at the offending byte. done and error are sticky (consumed 0) until reset().
  Step next(std::string_view in);

  void reset() { *this = ChunkedDecoder(); }
  bool done() const { return state_ == State::done; }
  const char* error_reason() const { return error_; }

 private:
  enum class State : uint8_t {
    size, size_ows, ext, size_lf, data, data_cr, data_lf, trailer_start, trailer_line, trailer_lf,
    final_lf, done, error
  };
  State state_ = State::size;
  uint64_t remaining_ = 0;
  int size_digits_ = 0;
  uint8_t sub_ = 0;  // sub-state inside State::ext (extension grammar) and State::trailer_line (name/value)
  size_t line_bytes_ = 0;  // bytes in the current extension/trailer line, bounded
  size_t trailer_bytes_ = 0;
  const char* error_ = "";
};

// Canonical reason phrase for a status code ("OK", "Bad Request", ...); "Unknown" if none.
std::string_view reason_phrase(int status);

}  // namespace portico::http
