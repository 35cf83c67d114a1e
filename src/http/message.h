// Parsed HTTP/1.x message heads. Every string_view points into the caller's receive buffer, which must stay
// unchanged while the head is in use. A head object is reused across requests of a connection (reset by the
// parser), so parsing allocates nothing.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace portico::http {

enum class Method : uint8_t { GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH, OTHER };

// RFC 9110 9.2.2: methods whose repetition has the same effect; only these are retried after a response
// failure.
constexpr bool is_idempotent(Method m) {
  return m == Method::GET || m == Method::HEAD || m == Method::PUT || m == Method::DELETE ||
         m == Method::OPTIONS || m == Method::TRACE;
}

struct Header {
  std::string_view name;   // as received (case preserved)
  std::string_view value;  // leading/trailing OWS removed
};

constexpr size_t kMaxHeaders = 128;

enum class BodyFraming : uint8_t {
  none,            // no body (or Content-Length: 0)
  content_length,  // exactly `content_length` bytes
  chunked,         // Transfer-Encoding: chunked (final coding)
  until_close,     // responses only: body ends when the server closes
};

// Bit set of the Connection-header options and hop-by-hop headers seen, so the forwarder can drop them
// without rescanning.
enum ConnectionFlags : uint32_t {
  kConnClose = 1u << 0,      // Connection: close
  kConnKeepAlive = 1u << 1,  // Connection: keep-alive
  kConnUpgrade = 1u << 2,    // Connection: upgrade
  kConnOther = 1u << 3,      // Connection lists other tokens: headers named there must be dropped too
};

// Room for a head's fields, deliberately left uninitialized: a Session holds two heads, built per connection
// and per HTTP/2 stream, and zero-filling their 2 x 4 KiB was ~3% of an HTTP/2 request's instructions. Only
// the first `header_count` slots of a MessageHead hold fields; the parser writes a slot before counting it.
class HeaderSlots {
 public:
  HeaderSlots() {}  // NOLINT: user-provided on purpose, so default-initialization leaves the slots alone
  Header& operator[](size_t i) { return slots_[i]; }
  const Header& operator[](size_t i) const { return slots_[i]; }
  Header* data() { return slots_; }
  const Header* data() const { return slots_; }
  static constexpr size_t size() { return kMaxHeaders; }

 private:
  union {
    Header slots_[kMaxHeaders];
  };
};

struct MessageHead {
  uint8_t version_minor = 1;  // HTTP/1.<minor>; major is always 1
  HeaderSlots headers;
  uint16_t header_count = 0;
  BodyFraming framing = BodyFraming::none;
  uint64_t content_length = 0;  // with framing == content_length
  uint32_t connection = 0;      // ConnectionFlags
  bool keep_alive = true;       // per version and Connection header
  size_t head_size = 0;         // bytes of the head including the final CRLFCRLF

  // Back to an empty head (no fields), without touching the slots.
  void reset_message() {
    version_minor = 1;
    header_count = 0;
    framing = BodyFraming::none;
    content_length = 0;
    connection = 0;
    keep_alive = true;
    head_size = 0;
  }
  // Returns the first header named `name` (ASCII case-insensitive), or an empty view with found = false.
  std::string_view find(std::string_view name, bool* found = nullptr) const;
  // True if `name` is listed as a token in any Connection header (case-insensitive).
  bool connection_lists(std::string_view name) const;
};

struct RequestHead : MessageHead {
  Method method = Method::GET;
  std::string_view method_text;
  std::string_view target;  // raw request-target (origin-form "/p?q", absolute-form, "*" or authority-form)
  std::string_view path;    // origin-form: before '?'; absolute-form: the path part of the URI (a static "/"
                            // when the URI has an empty path); empty for authority-form and "*"
  std::string_view query;   // after '?', without it; empty if none
  std::string_view host;    // Host header value (or the absolute-form authority), without port, lower-case
                            // is NOT guaranteed: compare case-insensitively
  std::string_view host_header;  // Host header value exactly as received (may include ":port")
  bool expect_continue = false;  // Expect: 100-continue
  bool upgrade = false;          // Upgrade header present with Connection: upgrade
};

struct ResponseHead : MessageHead {
  uint16_t status = 0;
  std::string_view reason;

  void reset() {
    reset_message();
    status = 0;
    reason = {};
  }
};

}  // namespace portico::http
