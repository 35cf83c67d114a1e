// Strict HTTP/1.x head parsers and chunked decoder; see parser.h for the contract and README.md for the
// rules.
//
// The head parsers make one left-to-right pass over the buffer. They stop at the first byte that makes the
// message invalid (so garbage is rejected before the head is complete) and answer `incomplete` when they run
// out of bytes before the empty line. Nothing is allocated: headers are stored as views into the buffer.
#include "http/parser.h"

#include <cstring>
#include <limits>

#include "http/chars.h"

namespace portico::http {

namespace {

using detail::find_ctl;
using detail::find_target_special;
using detail::for_each_list_element;
using detail::hex_value;
using detail::iequals;
using detail::is_digit;
using detail::is_field_byte;
using detail::is_ows;
using detail::is_qdtext;
using detail::is_tchar;
using detail::is_token;
using detail::is_unreserved;

// Content-Length values above this are rejected: they do not fit a signed 64-bit offset downstream.
constexpr uint64_t kMaxContentLength = static_cast<uint64_t>(std::numeric_limits<int64_t>::max());

// Path reported for an absolute-form target with an empty path ("http://h" or "http://h?q"): RFC 9110 4.2.3
// makes it equivalent to "/". The only view in a parsed head that does not point into the receive buffer.
constexpr std::string_view kRootPath = "/";

Method method_from_text(std::string_view m) {
  switch (m.size()) {
    case 3:
      if (m == "GET") return Method::GET;
      if (m == "PUT") return Method::PUT;
      break;
    case 4:
      if (m == "HEAD") return Method::HEAD;
      if (m == "POST") return Method::POST;
      break;
    case 5:
      if (m == "PATCH") return Method::PATCH;
      if (m == "TRACE") return Method::TRACE;
      break;
    case 6:
      if (m == "DELETE") return Method::DELETE;
      break;
    case 7:
      if (m == "CONNECT") return Method::CONNECT;
      if (m == "OPTIONS") return Method::OPTIONS;
      break;
    default:
      break;
  }
  return Method::OTHER;  // methods are case-sensitive (RFC 9110 9.1): "get" is an extension method
}

// `name` is a token and `lower` a lower-case literal of letters and '-': OR-ing 0x20 folds only letters here
// ('-' | 0x20 == '-', and no other tchar maps onto a letter or '-').
bool token_equals_lower(std::string_view name, std::string_view lower) {
  if (name.size() != lower.size()) return false;
  for (size_t i = 0; i < name.size(); ++i)
    if (static_cast<char>(name[i] | 0x20) != lower[i]) return false;
  return true;
}

enum class Field : uint8_t { other, content_length, transfer_encoding, host, connection, expect, upgrade };

Field classify_field(std::string_view name) {
  switch (name.size()) {
    case 4:
      if (token_equals_lower(name, "host")) return Field::host;
      break;
    case 6:
      if (token_equals_lower(name, "expect")) return Field::expect;
      break;
    case 7:
      if (token_equals_lower(name, "upgrade")) return Field::upgrade;
      break;
    case 10:
      if (token_equals_lower(name, "connection")) return Field::connection;
      break;
    case 14:
      if (token_equals_lower(name, "content-length")) return Field::content_length;
      break;
    case 17:
      if (token_equals_lower(name, "transfer-encoding")) return Field::transfer_encoding;
      break;
    default:
      break;
  }
  return Field::other;
}

bool valid_ipv4(std::string_view s) {
  int octets = 0;
  size_t i = 0;
  while (true) {
    const size_t start = i;
    unsigned v = 0;
    while (i < s.size() && is_digit(s[i]) && i - start < 3) v = v * 10 + static_cast<unsigned>(s[i++] - '0');
    const size_t digits = i - start;
    if (digits == 0 || v > 255 || (digits > 1 && s[start] == '0')) return false;  // no octal-looking octets
    if (++octets == 4) return i == s.size();
    if (i == s.size() || s[i] != '.') return false;
    ++i;
  }
}

// RFC 3986 3.2.2 IPv6address (no zone identifier).
bool valid_ipv6(std::string_view s) {
  const size_t n = s.size();
  if (n < 2) return false;
  int groups = 0;
  bool compressed = false;
  size_t i = 0;
  if (s[0] == ':') {
    if (s[1] != ':') return false;
    compressed = true;
    i = 2;
    if (i == n) return true;
  }
  while (true) {
    const size_t start = i;
    while (i < n && hex_value(s[i]) >= 0 && i - start < 5) ++i;
    if (i < n && s[i] == '.') {  // embedded IPv4 as the last 32 bits
      if (!valid_ipv4(s.substr(start))) return false;
      groups += 2;
      break;
    }
    const size_t digits = i - start;
    if (digits == 0 || digits > 4) return false;
    ++groups;
    if (i == n) break;
    if (s[i] != ':') return false;
    if (++i == n) return false;  // a trailing single ':'
    if (s[i] == ':') {
      if (compressed) return false;
      compressed = true;
      if (++i == n) break;
    }
  }
  return compressed ? groups < 8 : groups == 8;
}

// Parses uri-host [ ":" port ] as used in Host and in request-target authorities. The host is an IPv6
// literal in brackets (returned without them) or a name made of unreserved characters only: percent-escapes
// and sub-delims, legal in a URI reg-name but never in a real host name, are rejected because a router and an
// origin may read them differently. `port` is -1 when absent; an empty port ("host:") is rejected.
bool parse_host_port(std::string_view a, std::string_view& host, int32_t& port) {
  size_t i = 0;
  port = -1;
  if (!a.empty() && a[0] == '[') {
    const size_t close = a.find(']');
    if (close == std::string_view::npos) return false;
    host = a.substr(1, close - 1);
    if (!valid_ipv6(host)) return false;
    i = close + 1;
  } else {
    while (i < a.size() && is_unreserved(a[i])) ++i;
    host = a.substr(0, i);
  }
  if (i == a.size()) return true;
  if (a[i] != ':' || host.empty()) return false;
  ++i;
  const size_t digits = a.size() - i;
  if (digits == 0 || digits > 5) return false;
  int32_t v = 0;
  for (; i < a.size(); ++i) {
    if (!is_digit(a[i])) return false;
    v = v * 10 + (a[i] - '0');
  }
  if (v == 0 || v > 65535) return false;
  port = v;
  return true;
}

// Transfer-Encoding list state, accumulated over every Transfer-Encoding field of a head (RFC 9112 6.1).
struct TransferCodings {
  bool present = false;
  bool invalid = false;       // an element that is not a bare token: empty, quoted, parameters, inner space
  bool unknown = false;       // a coding other than chunked
  bool last_chunked = false;  // the final coding so far is chunked
  uint8_t chunked = 0;        // how many times chunked was listed (saturating)

  void add(std::string_view value) {
    present = true;
    for_each_list_element(value, [this](std::string_view e) {
      if (!is_token(e)) {
        invalid = true;
        return false;
      }
      if (iequals(e, "chunked")) {
        if (chunked < 255) ++chunked;
        last_chunked = true;
      } else {
        unknown = true;
        last_chunked = false;
      }
      return true;
    });
  }
};

struct ContentLength {
  bool present = false;
  uint64_t value = 0;
};

struct RequestFields {
  ContentLength cl;
  TransferCodings te;
  bool seen_host = false;
  std::string_view host_name;
  int32_t host_port = -1;
  bool expect_continue = false;
  bool expect_other = false;
  bool upgrade = false;
};

struct ResponseFields {
  ContentLength cl;
  TransferCodings te;
};

class HeadParser {
 public:
  HeadParser(const char* data, size_t len, const ParseLimits& limits, bool response)
      : begin_(data),
        p_(data),
        clamped_(len >= limits.max_head_size),
        response_(response),
        max_target_(limits.max_target_size),
        max_headers_(limits.max_headers < kMaxHeaders ? limits.max_headers : kMaxHeaders) {
    end_ = data + (clamped_ ? limits.max_head_size : len);
  }

  const ParseResult& result() const { return result_; }

  void request(RequestHead& out) {
    RequestFields f;
    if (!request_line(out)) return;
    if (!fields(out, [&](std::string_view name, std::string_view value) {
          return request_field(out, f, name, value);
        }))
      return;
    finish_request(out, f);
  }

  void response(ResponseHead& out, Method request_method) {
    ResponseFields f;
    if (!status_line(out)) return;
    if (!fields(out, [&](std::string_view name, std::string_view value) {
          return response_field(out, f, name, value);
        }))
      return;
    finish_response(out, f, request_method);
  }

 private:
  // Both return false so that callers can `return fail(...)` / `return more()`.
  bool fail(uint16_t status, const char* reason) {
    result_ = ParseResult{ParseStatus::error, response_ ? uint16_t{502} : status, reason};
    return false;
  }
  bool more() {
    // Running out of bytes at the size limit means the head cannot fit.
    if (clamped_) return fail(431, "message head too large");
    result_ = ParseResult{ParseStatus::incomplete, 0, ""};
    return false;
  }
  bool complete() {
    result_ = ParseResult{ParseStatus::complete, 0, ""};
    return true;
  }

  bool crlf(const char* what_bare_lf, const char* what_other) {
    if (p_ == end_) return more();
    if (*p_ != '\r') return fail(400, *p_ == '\n' ? what_bare_lf : what_other);
    if (p_ + 1 == end_) return more();
    if (p_[1] != '\n') return fail(400, "bare CR");
    p_ += 2;
    return true;
  }

  // HTTP-version = "HTTP/" DIGIT "." DIGIT (RFC 9112 2.3), case-sensitive. Only 1.0 and 1.1 are served;
  // another well-formed version is 505, anything else 400. Prefixes that could still become valid wait.
  bool version(uint8_t& minor) {
    static constexpr char kPattern[] = "HTTP/#.#";
    const size_t avail = static_cast<size_t>(end_ - p_);
    const size_t n = avail < 8 ? avail : 8;
    for (size_t i = 0; i < n; ++i) {
      const bool ok = kPattern[i] == '#' ? is_digit(p_[i]) : p_[i] == kPattern[i];
      if (!ok) return fail(400, "malformed HTTP version");
    }
    if (n < 8) return more();
    if (p_[5] != '1' || (p_[7] != '0' && p_[7] != '1')) return fail(505, "HTTP version not supported");
    minor = static_cast<uint8_t>(p_[7] - '0');
    p_ += 8;
    return true;
  }

  // request-line = method SP request-target SP HTTP-version CRLF (RFC 9112 3).
  bool request_line(RequestHead& out) {
    // RFC 9112 2.2: empty lines before the request-line are ignored; they count in head_size.
    while (true) {
      if (p_ == end_) return more();
      if (*p_ == '\n') return fail(400, "bare LF before request-line");
      if (*p_ != '\r') break;
      if (p_ + 1 == end_) return more();
      if (p_[1] != '\n') return fail(400, "bare CR before request-line");
      p_ += 2;
    }

    const char* method = p_;
    while (p_ < end_ && is_tchar(*p_)) ++p_;
    if (p_ == end_) return more();
    if (p_ == method) return fail(400, "invalid method");
    if (*p_ != ' ') return fail(400, "invalid method or separator after method");
    out.method_text = std::string_view(method, static_cast<size_t>(p_ - method));
    out.method = method_from_text(out.method_text);
    ++p_;

    // request-target: no CTL, SP, DEL or '#' (a fragment is never part of a request-target, RFC 9112 3.2).
    // The scan is bounded by the target limit so an over-long target is answered without reading it all.
    const char* target = p_;
    const char* question = nullptr;
    const size_t avail = static_cast<size_t>(end_ - p_);
    const char* scan_end = avail > max_target_ ? p_ + max_target_ + 1 : end_;
    while (true) {
      p_ = find_target_special(p_, scan_end);
      if (p_ == scan_end || *p_ != '?') break;
      if (question == nullptr) question = p_;
      ++p_;
    }
    if (static_cast<size_t>(p_ - target) > max_target_) return fail(414, "request-target too long");
    // The head limit cut the target short: it is the target that is too long, whatever the target limit.
    if (p_ == end_ && clamped_) return fail(414, "request-target too long");
    if (p_ == end_) return more();
    if (*p_ != ' ') {
      if (*p_ == '#') return fail(400, "fragment in request-target");
      if (*p_ == '\r' || *p_ == '\n') return fail(400, "missing HTTP version");
      return fail(400, "invalid character in request-target");
    }
    if (p_ == target) return fail(400, "empty request-target or double SP");
    out.target = std::string_view(target, static_cast<size_t>(p_ - target));
    ++p_;

    if (!version(out.version_minor)) return false;
    if (!crlf("bare LF after request-line", "junk after HTTP version")) return false;
    return classify_target(out, question);
  }

  // RFC 9112 3.2: origin-form, absolute-form, authority-form (CONNECT only), asterisk-form (OPTIONS only).
  bool classify_target(RequestHead& out, const char* question) {
    const std::string_view t = out.target;
    if (t[0] == '/') {
      if (out.method == Method::CONNECT) return fail(400, "CONNECT requires authority-form");
      split_path(out, t, question);
      return true;
    }
    if (t == "*") {
      if (out.method != Method::OPTIONS) return fail(400, "asterisk-form is only allowed with OPTIONS");
      return true;
    }
    if (out.method == Method::CONNECT) {  // authority-form = uri-host ":" port
      if (!parse_host_port(t, target_host_, target_port_) || target_host_.empty() || target_port_ < 0)
        return fail(400, "invalid CONNECT authority");
      has_authority_ = true;
      default_port_ = -1;  // the Host field must repeat the port
      return true;
    }
    // absolute-form: only http and https with an authority ("scheme://authority[/path][?query]").
    size_t i = 0;
    while (i < t.size() && (detail::is_unreserved(t[i]) || t[i] == '+') && t[i] != '_' && t[i] != '~') ++i;
    const std::string_view scheme = t.substr(0, i);
    if (scheme.empty() || t.substr(i, 3) != "://") return fail(400, "invalid request-target");
    if (iequals(scheme, "http")) {
      default_port_ = 80;
    } else if (iequals(scheme, "https")) {
      default_port_ = 443;
    } else {
      return fail(400, "unsupported scheme in absolute-form");
    }
    const std::string_view rest = t.substr(i + 3);
    const size_t auth_end = rest.find_first_of("/?");
    const std::string_view authority = rest.substr(0, auth_end);
    if (authority.find('@') != std::string_view::npos) return fail(400, "userinfo in request-target");
    if (!parse_host_port(authority, target_host_, target_port_) || target_host_.empty())
      return fail(400, "invalid authority in request-target");
    has_authority_ = true;
    const std::string_view tail =
        auth_end == std::string_view::npos ? std::string_view() : rest.substr(auth_end);
    if (tail.empty() || tail[0] == '?') {
      out.path = kRootPath;
      if (!tail.empty()) out.query = tail.substr(1);
    } else {
      split_path(out, tail, question);
    }
    return true;
  }

  // Splits "path[?query]" at the first '?' of the request-target (found during the scan).
  static void split_path(RequestHead& out, std::string_view s, const char* question) {
    if (question == nullptr) {
      out.path = s;
      return;
    }
    const size_t q = static_cast<size_t>(question - s.data());
    out.path = s.substr(0, q);
    out.query = s.substr(q + 1);
  }

  // status-line = HTTP-version SP status-code SP [ reason-phrase ] CRLF (RFC 9112 4). For interoperability
  // the SP after the status code may be missing when the reason is empty ("HTTP/1.1 200\r\n").
  bool status_line(ResponseHead& out) {
    if (!version(out.version_minor)) return false;
    if (p_ == end_) return more();
    if (*p_ != ' ') return fail(502, "expected SP after HTTP version");
    ++p_;
    uint16_t status = 0;
    for (int i = 0; i < 3; ++i, ++p_) {
      if (p_ == end_) return more();
      if (!is_digit(*p_)) return fail(502, "invalid status code");
      status = static_cast<uint16_t>(status * 10 + (*p_ - '0'));
    }
    if (status < 100 || status > 599) return fail(502, "status code out of range");
    out.status = status;
    if (p_ == end_) return more();
    if (*p_ == ' ') {
      const char* reason = ++p_;
      while (true) {  // reason-phrase = 1*( HTAB / SP / VCHAR / obs-text )
        p_ = find_ctl(p_, end_);
        if (p_ == end_) return more();
        if (*p_ != '\t') break;
        ++p_;
      }
      out.reason = std::string_view(reason, static_cast<size_t>(p_ - reason));
    }
    return crlf("bare LF after status-line", "invalid character in status-line");
  }

  // field-line = field-name ":" OWS field-value OWS CRLF, repeated until an empty line (RFC 9112 5).
  // on_field(name, value) returns false after calling fail().
  template <typename OnField>
  bool fields(MessageHead& out, OnField&& on_field) {
    while (true) {
      if (p_ == end_) return more();
      if (*p_ == '\r') {
        if (p_ + 1 == end_) return more();
        if (p_[1] != '\n') return fail(400, "bare CR in header section");
        p_ += 2;
        out.head_size = static_cast<size_t>(p_ - begin_);
        return true;
      }
      if (*p_ == '\n') return fail(400, "bare LF in header section");
      // RFC 9112 5.2 (obs-fold) and 2.2 (whitespace between the start-line and the first field): reject.
      if (is_ows(*p_)) return fail(400, "obsolete line folding");

      const char* name = p_;
      while (p_ < end_ && is_tchar(*p_)) ++p_;
      if (p_ == end_) return more();
      if (*p_ != ':') {
        if (is_ows(*p_)) return fail(400, "whitespace between field name and colon");
        if (*p_ == '\r' || *p_ == '\n') return fail(400, "field line without colon");
        return fail(400, "invalid character in field name");
      }
      if (p_ == name) return fail(400, "empty field name");
      const std::string_view field_name(name, static_cast<size_t>(p_ - name));
      ++p_;
      while (p_ < end_ && is_ows(*p_)) ++p_;

      const char* value = p_;
      while (true) {
        p_ = find_ctl(p_, end_);
        if (p_ == end_) return more();
        if (*p_ != '\t') break;
        ++p_;
      }
      if (*p_ != '\r')
        return fail(400, *p_ == '\n' ? "bare LF in field line" : "control character in field value");
      if (p_ + 1 == end_) return more();
      if (p_[1] != '\n') return fail(400, "bare CR in field value");
      const char* value_end = p_;
      while (value_end > value && is_ows(value_end[-1])) --value_end;
      p_ += 2;

      if (out.header_count >= max_headers_) return fail(431, "too many header fields");
      const std::string_view field_value(value, static_cast<size_t>(value_end - value));
      out.headers[out.header_count++] = Header{field_name, field_value};
      if (!on_field(field_name, field_value)) return false;
    }
  }

  // Content-Length = 1*DIGIT (RFC 9110 8.6). Lists ("5, 5") and repeated fields are rejected even when the
  // values agree: the RFC lets a recipient merge them, but a peer that does not would frame differently.
  bool content_length(ContentLength& cl, std::string_view value) {
    if (cl.present) return fail(400, "multiple Content-Length fields");
    cl.present = true;
    if (value.empty()) return fail(400, "empty Content-Length");
    uint64_t v = 0;
    for (char c : value) {
      if (!is_digit(c)) {
        return fail(400, c == ',' ? "Content-Length with several values" : "invalid Content-Length");
      }
      const uint64_t d = static_cast<uint64_t>(c - '0');
      if (v > (kMaxContentLength - d) / 10) return fail(400, "Content-Length too large");
      v = v * 10 + d;
    }
    cl.value = v;
    return true;
  }

  // Connection = #connection-option (RFC 9110 7.6.1). Empty list elements are ignored as the RFC requires;
  // an element that is not a token is rejected. A request naming Content-Length, Transfer-Encoding or Host
  // is rejected too: a proxy honouring the option drops the field, so the next hop would frame (the body
  // becomes a second request) or route the message differently from how it was received. RFC 9110 7.6.1
  // forbids senders to list fields meant for all recipients. A response naming them is accepted: Portico
  // frames it by what it parsed and never drops its framing (see proxy/head_writer.cc).
  bool connection(MessageHead& out, std::string_view value) {
    bool names_framing = false;
    const bool ok = for_each_list_element(value, [&](std::string_view e) {
      if (e.empty()) return true;
      if (!is_token(e)) return false;
      if (iequals(e, "close")) {
        out.connection |= kConnClose;
      } else if (iequals(e, "keep-alive")) {
        out.connection |= kConnKeepAlive;
      } else if (iequals(e, "upgrade")) {
        out.connection |= kConnUpgrade;
      } else {
        out.connection |= kConnOther;
        if (!response_ && is_end_to_end_framing(e)) {
          names_framing = true;
          return false;
        }
      }
      return true;
    });
    if (names_framing) return fail(400, "Connection names Content-Length, Transfer-Encoding or Host");
    return ok || fail(400, "invalid Connection field");
  }

  static bool is_end_to_end_framing(std::string_view name) {
    const Field f = classify_field(name);
    return f == Field::content_length || f == Field::transfer_encoding || f == Field::host;
  }

  bool request_field(RequestHead& out, RequestFields& f, std::string_view name, std::string_view value) {
    switch (classify_field(name)) {
      case Field::content_length:
        return content_length(f.cl, value);
      case Field::transfer_encoding:
        f.te.add(value);
        return true;
      case Field::host:  // RFC 9112 3.2: exactly one Host with a valid value
        if (f.seen_host) return fail(400, "multiple Host fields");
        f.seen_host = true;
        out.host_header = value;
        if (!parse_host_port(value, f.host_name, f.host_port)) return fail(400, "invalid Host");
        return true;
      case Field::connection:
        return connection(out, value);
      case Field::expect:  // RFC 9110 10.1.1: 100-continue is the only expectation defined
        if (iequals(value, "100-continue")) {
          f.expect_continue = true;
        } else {
          f.expect_other = true;
        }
        return true;
      case Field::upgrade:
        f.upgrade = true;
        return true;
      case Field::other:
        break;
    }
    return true;
  }

  bool response_field(ResponseHead& out, ResponseFields& f, std::string_view name, std::string_view value) {
    switch (classify_field(name)) {
      case Field::content_length:
        return content_length(f.cl, value);
      case Field::transfer_encoding:
        f.te.add(value);
        return true;
      case Field::connection:
        return connection(out, value);
      default:
        return true;
    }
  }

  static bool keep_alive(const MessageHead& h) {
    if (h.connection & kConnClose) return false;
    return h.version_minor == 1 || (h.connection & kConnKeepAlive) != 0;
  }

  void finish_request(RequestHead& out, const RequestFields& f) {
    const bool v11 = out.version_minor == 1;
    if (v11 && !f.seen_host) {
      fail(400, "missing Host");
      return;
    }
    if (f.te.present) {  // RFC 9112 6.1 and 6.3
      if (!v11) {
        fail(400, "Transfer-Encoding in an HTTP/1.0 request");
      } else if (f.cl.present) {
        fail(400, "both Content-Length and Transfer-Encoding");
      } else if (f.te.invalid) {
        fail(400, "malformed Transfer-Encoding");
      } else if (f.te.chunked > 1) {
        fail(400, "chunked applied more than once");
      } else if (!f.te.last_chunked) {
        fail(400, "final transfer coding is not chunked");
      } else if (f.te.unknown) {
        fail(501, "unsupported transfer coding");
      } else {
        out.framing = BodyFraming::chunked;
      }
      if (result_.status == ParseStatus::error) return;
    } else if (f.cl.present && f.cl.value != 0) {
      out.framing = BodyFraming::content_length;
      out.content_length = f.cl.value;
    }

    if (has_authority_) {
      // RFC 9112 3.2.2: the target's authority is the host. A Host field naming another host (or port) is
      // rejected rather than ignored, so a router and an origin cannot disagree about the virtual host.
      out.host = target_host_;
      if (f.seen_host) {
        const int32_t target_port = target_port_ >= 0 ? target_port_ : default_port_;
        const int32_t host_port = f.host_port >= 0 ? f.host_port : default_port_;
        if (!iequals(target_host_, f.host_name) || target_port != host_port) {
          fail(400, "Host does not match the request-target authority");
          return;
        }
      }
    } else {
      out.host = f.host_name;
    }

    if (f.expect_other) {
      fail(417, "unsupported expectation");
      return;
    }
    // RFC 9110 10.1.1 and 7.8: 100-continue and Upgrade in an HTTP/1.0 request are ignored.
    out.expect_continue = f.expect_continue && v11;
    out.upgrade = f.upgrade && v11 && (out.connection & kConnUpgrade) != 0;
    out.keep_alive = keep_alive(out);
    complete();
  }

  void finish_response(ResponseHead& out, const ResponseFields& f, Method request_method) {
    const TransferCodings& te = f.te;
    if (te.present) {
      // RFC 9112 6.1: an HTTP/1.0 message with Transfer-Encoding has faulty framing.
      if (out.version_minor == 0) {
        fail(502, "Transfer-Encoding in an HTTP/1.0 response");
      } else if (f.cl.present) {
        fail(502, "both Content-Length and Transfer-Encoding");
      } else if (te.invalid) {
        fail(502, "malformed Transfer-Encoding");
      } else if (te.chunked > 1) {
        fail(502, "chunked applied more than once");
      }
      if (result_.status == ParseStatus::error) return;
    }
    const uint16_t s = out.status;
    const bool informational_or_204 = s < 200 || s == 204;
    if (informational_or_204 && (te.present || (f.cl.present && f.cl.value != 0))) {
      fail(502, "body framing in a 1xx or 204 response");  // RFC 9110 8.6, RFC 9112 6.1
      return;
    }
    // RFC 9112 6.3 rules 1-2: no content after HEAD, 1xx, 204, 304 and a 2xx to CONNECT.
    const bool bodiless = request_method == Method::HEAD || informational_or_204 || s == 304 ||
                          (request_method == Method::CONNECT && s >= 200 && s < 300);
    if (bodiless) {
      out.framing = BodyFraming::none;
    } else if (te.present) {  // rule 4: a final coding other than chunked is delimited by close
      out.framing = te.last_chunked ? BodyFraming::chunked : BodyFraming::until_close;
    } else if (f.cl.present) {
      out.framing = f.cl.value != 0 ? BodyFraming::content_length : BodyFraming::none;
      out.content_length = f.cl.value;
    } else {
      out.framing = BodyFraming::until_close;  // rule 8
    }
    out.keep_alive = out.framing != BodyFraming::until_close && keep_alive(out);
    complete();
  }

  const char* const begin_;
  const char* p_;
  const char* end_;
  const bool clamped_;  // the buffer reaches max_head_size: running out of bytes means "too large"
  const bool response_;
  const size_t max_target_;
  const size_t max_headers_;
  ParseResult result_;
  // Authority from an absolute-form or authority-form request-target.
  bool has_authority_ = false;
  std::string_view target_host_;
  int32_t target_port_ = -1;
  int32_t default_port_ = -1;
};

}  // namespace

ParseResult parse_request(const char* data, size_t len, const ParseLimits& limits, RequestHead& out) {
  out.reset_message();
  out.method = Method::GET;
  out.method_text = {};
  out.target = {};
  out.path = {};
  out.query = {};
  out.host = {};
  out.host_header = {};
  out.expect_continue = false;
  out.upgrade = false;
  HeadParser parser(data, len, limits, /*response=*/false);
  parser.request(out);
  return parser.result();
}

ParseResult parse_response(const char* data, size_t len, Method request_method, const ParseLimits& limits,
                           ResponseHead& out) {
  out.reset();
  HeadParser parser(data, len, limits, /*response=*/true);
  parser.response(out, request_method);
  return parser.result();
}

// ---------------------------------------------------------------------------------------------------------
// ChunkedDecoder (RFC 9112 7.1)
//
//   chunked-body = *chunk last-chunk trailer-section CRLF
//   chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
//   chunk-ext    = *( BWS ";" BWS chunk-ext-name [ BWS "=" BWS chunk-ext-val ] )
//
// Whitespace in the size line is accepted only immediately before a ';' (see README.md).

namespace {

constexpr uint64_t kMaxChunkSize = uint64_t{1} << 62;
constexpr int kMaxChunkSizeDigits = 16;     // enough for 2^62 with no leading zeros to spare
constexpr size_t kMaxChunkLine = 4096;      // size line with extensions and its CR (not the LF)
constexpr size_t kMaxTrailerBytes = 16384;  // whole trailer section including CRLFs

// Sub-states of State::ext (chunk extensions) and State::trailer_line.
enum ExtState : uint8_t {
  kExtNameStart,   // after ';': a token must start
  kExtName,        // in chunk-ext-name
  kExtValueStart,  // after '=': token or quoted-string must start
  kExtToken,       // in a token value
  kExtQuoted,      // inside a quoted-string
  kExtQuotedPair,  // after a backslash inside a quoted-string
  kExtAfterQuoted  // after the closing quote
};
enum TrailerState : uint8_t { kTrailerName, kTrailerValue };

}  // namespace

ChunkedDecoder::Step ChunkedDecoder::next(std::string_view in) {
  if (state_ == State::done) return Step{Status::done, 0, {}};
  if (state_ == State::error) return Step{Status::error, 0, {}};
  const char* const begin = in.data();
  const char* const end = begin + in.size();
  const char* p = begin;
  auto fail = [&](const char* why) {
    state_ = State::error;
    error_ = why;
    return Step{Status::error, static_cast<size_t>(p - begin), {}};
  };

  while (p < end) {
    if (state_ == State::data) {
      const size_t avail = static_cast<size_t>(end - p);
      const size_t n = remaining_ < avail ? static_cast<size_t>(remaining_) : avail;
      remaining_ -= n;
      if (remaining_ == 0) state_ = State::data_cr;
      const std::string_view span(p, n);
      p += n;
      return Step{Status::data, static_cast<size_t>(p - begin), span};
    }

    const char c = *p;
    switch (state_) {
      case State::size:
      case State::size_ows:
      case State::ext:
        if (++line_bytes_ > kMaxChunkLine) return fail("chunk size line too long");
        break;
      case State::trailer_start:
      case State::trailer_line:
      case State::trailer_lf:
      case State::final_lf:
        if (++trailer_bytes_ > kMaxTrailerBytes) return fail("trailer section too large");
        break;
      default:
        break;
    }

    switch (state_) {
      case State::size: {
        const int d = hex_value(c);
        if (d >= 0) {
          const uint64_t ud = static_cast<uint64_t>(d);
          if (++size_digits_ > kMaxChunkSizeDigits || remaining_ > (kMaxChunkSize - ud) / 16)
            return fail("chunk size too large");
          remaining_ = remaining_ * 16 + ud;
        } else if (size_digits_ == 0) {
          return fail("invalid chunk size");
        } else if (c == '\r') {
          state_ = State::size_lf;
        } else if (c == ';') {
          state_ = State::ext;
          sub_ = kExtNameStart;
        } else if (c == ' ' || c == '\t') {
          state_ = State::size_ows;
        } else if (c == '\n') {
          return fail("bare LF after chunk size");
        } else {
          return fail("invalid chunk size");
        }
        break;
      }

      case State::size_ows:  // BWS, only before ';'
        if (c == ';') {
          state_ = State::ext;
          sub_ = kExtNameStart;
        } else if (c != ' ' && c != '\t') {
          return fail("whitespace in chunk size line not followed by ';'");
        }
        break;

      case State::ext:
        switch (sub_) {
          case kExtNameStart:
            if (!is_tchar(c)) return fail("invalid chunk extension name");
            sub_ = kExtName;
            break;
          case kExtName:
          case kExtToken:
          case kExtAfterQuoted:
            if (c == '=' && sub_ == kExtName) {
              sub_ = kExtValueStart;
            } else if (is_tchar(c) && sub_ != kExtAfterQuoted) {
              // stay
            } else if (c == ';') {
              sub_ = kExtNameStart;
            } else if (c == ' ' || c == '\t') {
              state_ = State::size_ows;
            } else if (c == '\r') {
              state_ = State::size_lf;
            } else {
              return fail(c == '\n' ? "bare LF after chunk extension" : "invalid chunk extension");
            }
            break;
          case kExtValueStart:
            if (c == '"') {
              sub_ = kExtQuoted;
            } else if (is_tchar(c)) {
              sub_ = kExtToken;
            } else {
              return fail("invalid chunk extension value");
            }
            break;
          case kExtQuoted:
            if (c == '"') {
              sub_ = kExtAfterQuoted;
            } else if (c == '\\') {
              sub_ = kExtQuotedPair;
            } else if (!is_qdtext(c)) {
              return fail("invalid character in quoted chunk extension");
            }
            break;
          case kExtQuotedPair:  // quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text )
            if (!is_field_byte(c)) return fail("invalid quoted-pair in chunk extension");
            sub_ = kExtQuoted;
            break;
          default:
            return fail("internal chunk extension state");
        }
        break;

      case State::size_lf:
        if (c != '\n') return fail("bare CR after chunk size");
        line_bytes_ = 0;
        size_digits_ = 0;
        state_ = remaining_ == 0 ? State::trailer_start : State::data;
        break;

      case State::data_cr:
        if (c != '\r') return fail("missing CRLF after chunk data");
        state_ = State::data_lf;
        break;

      case State::data_lf:
        if (c != '\n') return fail("missing LF after chunk data");
        state_ = State::size;
        break;

      case State::trailer_start:
        if (c == '\r') {
          state_ = State::final_lf;
        } else if (is_tchar(c)) {
          state_ = State::trailer_line;
          sub_ = kTrailerName;
        } else if (c == ' ' || c == '\t') {
          return fail("obsolete line folding in trailer section");
        } else {
          return fail(c == '\n' ? "bare LF in trailer section" : "invalid trailer field name");
        }
        break;

      case State::trailer_line:
        if (sub_ == kTrailerName) {
          if (c == ':') {
            sub_ = kTrailerValue;
          } else if (!is_tchar(c)) {
            return fail(c == ' ' || c == '\t' ? "whitespace between trailer field name and colon"
                                              : "invalid trailer field name");
          }
        } else if (c == '\r') {
          state_ = State::trailer_lf;
        } else if (!is_field_byte(c)) {
          return fail(c == '\n' ? "bare LF in trailer field" : "control character in trailer field");
        }
        break;

      case State::trailer_lf:
        if (c != '\n') return fail("bare CR in trailer section");
        state_ = State::trailer_start;
        break;

      case State::final_lf:
        if (c != '\n') return fail("bare CR at end of chunked body");
        state_ = State::done;
        ++p;
        return Step{Status::done, static_cast<size_t>(p - begin), {}};

      case State::data:
      case State::done:
      case State::error:
        return fail("internal chunked decoder state");
    }
    ++p;
  }
  return Step{Status::need_more, static_cast<size_t>(p - begin), {}};
}

}  // namespace portico::http
