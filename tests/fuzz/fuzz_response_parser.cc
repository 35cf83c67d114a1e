// libFuzzer target for parse_response.
//
// Input: byte 0 is a control byte (bits 0-3: the request method; bit 7: small limits; all bits seed the
// split points), the rest is the response head. Invariants checked:
//   - complete: head_size <= len, ends with CRLF CRLF, only CRLF line ends, views inside the head,
//     status 100-599, framing consistent with the method and status (RFC 9112 6.3), until_close never
//     keeps the connection alive, content_length > 0 exactly with content_length framing;
//   - errors are always 502 with a reason;
//   - prefixes are incomplete before head_size and identical at or after it; a prefix error is the same
//     error on the whole input.
#include <cstring>
#include <memory>

#include "fuzz_common.h"
#include "http/parser.h"

namespace {

using namespace portico::http;
using portico::fuzz::inside;

constexpr Method kMethods[] = {Method::GET,     Method::HEAD,    Method::POST,  Method::PUT,   Method::DELETE,
                               Method::CONNECT, Method::OPTIONS, Method::TRACE, Method::PATCH, Method::OTHER};

void check_complete(const ResponseHead& h, Method m, const char* buf, size_t len, const ParseLimits& limits) {
  FUZZ_CHECK(h.head_size >= 4 && h.head_size <= len && h.head_size <= limits.max_head_size);
  FUZZ_CHECK(std::memcmp(buf + h.head_size - 4, "\r\n\r\n", 4) == 0);
  FUZZ_CHECK(portico::fuzz::only_crlf(buf, h.head_size));
  FUZZ_CHECK(h.status >= 100 && h.status <= 599);
  FUZZ_CHECK(inside(h.reason, buf, h.head_size));
  FUZZ_CHECK(h.version_minor <= 1);
  FUZZ_CHECK(h.header_count <= limits.max_headers);
  for (uint16_t i = 0; i < h.header_count; ++i) {
    FUZZ_CHECK(!h.headers[i].name.empty() && inside(h.headers[i].name, buf, h.head_size));
    FUZZ_CHECK(inside(h.headers[i].value, buf, h.head_size));
  }
  const bool bodiless = m == Method::HEAD || h.status < 200 || h.status == 204 || h.status == 304 ||
                        (m == Method::CONNECT && h.status < 300);
  if (bodiless) FUZZ_CHECK(h.framing == BodyFraming::none);
  FUZZ_CHECK((h.framing == BodyFraming::content_length) == (h.content_length > 0));
  if (h.framing == BodyFraming::until_close) FUZZ_CHECK(!h.keep_alive);
  if (h.framing == BodyFraming::chunked) FUZZ_CHECK(h.version_minor == 1);
  bool cl = false, te = false;
  h.find("content-length", &cl);
  h.find("transfer-encoding", &te);
  FUZZ_CHECK(!(cl && te));
  if (h.connection & kConnClose) FUZZ_CHECK(!h.keep_alive);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t control = data[0];
  const Method method = kMethods[(control & 0x0f) % (sizeof kMethods / sizeof kMethods[0])];
  const char* msg = reinterpret_cast<const char*>(data + 1);
  const size_t len = size - 1;
  const ParseLimits limits = (control & 0x80) ? ParseLimits{160, 40, 5} : ParseLimits{};

  static ResponseHead full;
  const ParseResult r = parse_response(msg, len, method, limits, full);
  if (r.status == ParseStatus::complete) {
    FUZZ_CHECK(r.error_status == 0);
    check_complete(full, method, msg, len, limits);
  } else if (r.status == ParseStatus::error) {
    FUZZ_CHECK(r.error_status == 502 && r.error_reason != nullptr && r.error_reason[0] != '\0');
  } else {
    FUZZ_CHECK(r.error_status == 0 && len < limits.max_head_size);
  }

  portico::fuzz::Rng rng(control);
  static ResponseHead part;
  for (int i = 0; len != 0 && i < 6; ++i) {
    size_t k = rng.below(len + 1);
    if (i == 0 && r.status == ParseStatus::complete) k = full.head_size;
    if (i == 1 && r.status == ParseStatus::complete) k = full.head_size - 1;
    std::unique_ptr<char[]> copy(new char[k == 0 ? 1 : k]);
    if (k != 0) std::memcpy(copy.get(), msg, k);
    const ParseResult p = parse_response(copy.get(), k, method, limits, part);
    if (r.status == ParseStatus::complete) {
      if (k < full.head_size) {
        FUZZ_CHECK(p.status == ParseStatus::incomplete);
      } else {
        FUZZ_CHECK(p.status == ParseStatus::complete);
        FUZZ_CHECK(part.head_size == full.head_size && part.status == full.status &&
                   part.framing == full.framing && part.content_length == full.content_length &&
                   part.keep_alive == full.keep_alive && part.header_count == full.header_count &&
                   part.reason.size() == full.reason.size());
      }
    } else if (p.status == ParseStatus::error) {
      FUZZ_CHECK(r.status == ParseStatus::error);
    } else {
      FUZZ_CHECK(p.status == ParseStatus::incomplete);
    }
  }
  return 0;
}
