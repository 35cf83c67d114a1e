// libFuzzer target for parse_request (and normalize_path on what it accepts).
//
// Input: byte 0 is a control byte (bit 7: small limits; all bits seed the split points), the rest is the
// message. The message is parsed whole and as several prefixes (each copied to its own allocation, so ASan
// sees any read past the prefix). Invariants checked:
//   - complete: head_size <= len and ends with CRLF CRLF; every view lies inside the head; only CRLF line
//     ends; no NUL; token field names, no CTL but HTAB in values, a clean request-target; limits respected;
//     at most one Host and one all-digit Content-Length; Transfer-Encoding only with chunked framing;
//     framing, content_length, keep_alive and Host consistent;
//   - a prefix shorter than head_size is incomplete; a prefix at or past it parses identically;
//   - an error on a prefix is the same error on the whole (the parser never changes its mind);
//   - error statuses are one of 400 414 417 431 501 505, with a reason;
//   - normalize_path of an accepted origin-form path is absent of dot segments and idempotent.
#include <cctype>
#include <cstring>
#include <memory>
#include <string>

#include "fuzz_common.h"
#include "http/parser.h"
#include "http/path.h"

namespace {

using namespace portico::http;
using portico::fuzz::inside;

bool is_tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(a[i])) != std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  return true;
}

bool has_dot_segment(std::string_view p) {
  for (size_t i = 0; i < p.size(); ++i) {
    if (p[i] != '/') continue;
    size_t j = i + 1;
    if (j < p.size() && p[j] == '.') ++j;
    if (j < p.size() && p[j] == '.') ++j;
    if (j > i + 1 && (j == p.size() || p[j] == '/')) return true;
  }
  return false;
}

void check_path(std::string_view path) {
  std::string out;
  const PathStatus s = normalize_path(path, out);
  if (s != PathStatus::normalized) return;
  FUZZ_CHECK(!out.empty() && out[0] == '/');
  FUZZ_CHECK(out.size() <= path.size());
  FUZZ_CHECK(!has_dot_segment(out));
  std::string again;
  FUZZ_CHECK(normalize_path(out, again) == PathStatus::unchanged);
}

void check_complete(const RequestHead& h, const char* buf, size_t len, const ParseLimits& limits) {
  FUZZ_CHECK(h.head_size >= 4 && h.head_size <= len && h.head_size <= limits.max_head_size);
  FUZZ_CHECK(std::memcmp(buf + h.head_size - 4, "\r\n\r\n", 4) == 0);
  FUZZ_CHECK(portico::fuzz::only_crlf(buf, h.head_size));
  FUZZ_CHECK(std::memchr(buf, '\0', h.head_size) == nullptr);
  const size_t n = h.head_size;
  FUZZ_CHECK(!h.method_text.empty() && inside(h.method_text, buf, n));
  FUZZ_CHECK(!h.target.empty() && inside(h.target, buf, n) && h.target.size() <= limits.max_target_size);
  FUZZ_CHECK(inside(h.path, buf, n) || (h.path == "/" && h.target[0] != '/'));
  FUZZ_CHECK(inside(h.query, buf, n) && inside(h.host, buf, n) && inside(h.host_header, buf, n));
  FUZZ_CHECK(h.version_minor <= 1);
  FUZZ_CHECK(h.header_count <= limits.max_headers && h.header_count <= kMaxHeaders);
  for (char c : h.target) FUZZ_CHECK(static_cast<unsigned char>(c) > 0x20 && c != 0x7f && c != '#');
  int hosts = 0, lengths = 0;
  for (uint16_t i = 0; i < h.header_count; ++i) {
    const Header& f = h.headers[i];
    FUZZ_CHECK(!f.name.empty() && inside(f.name, buf, n) && inside(f.value, buf, n));
    for (char c : f.name) FUZZ_CHECK(is_tchar(c));
    for (char c : f.value) FUZZ_CHECK(c == '\t' || (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f));
    if (!f.value.empty()) {
      FUZZ_CHECK(f.value.front() != ' ' && f.value.front() != '\t');
      FUZZ_CHECK(f.value.back() != ' ' && f.value.back() != '\t');
    }
    if (iequals(f.name, "host")) ++hosts;
    if (iequals(f.name, "content-length")) {
      ++lengths;
      FUZZ_CHECK(!f.value.empty() && f.value.find_first_not_of("0123456789") == std::string_view::npos);
    }
    if (iequals(f.name, "transfer-encoding")) FUZZ_CHECK(h.framing == BodyFraming::chunked);
  }
  FUZZ_CHECK(hosts <= 1 && lengths <= 1);
  switch (h.framing) {
    case BodyFraming::none:
      FUZZ_CHECK(h.content_length == 0);
      break;
    case BodyFraming::content_length:
      FUZZ_CHECK(h.content_length > 0);
      FUZZ_CHECK(h.find("transfer-encoding").empty());
      break;
    case BodyFraming::chunked:
      FUZZ_CHECK(h.content_length == 0 && h.version_minor == 1);
      break;
    case BodyFraming::until_close:
      FUZZ_CHECK(false);  // requests never read until close
  }
  bool found_cl = false, found_te = false;
  h.find("content-length", &found_cl);
  h.find("transfer-encoding", &found_te);
  FUZZ_CHECK(!(found_cl && found_te));
  if (h.connection & kConnClose) FUZZ_CHECK(!h.keep_alive);
  if (h.version_minor == 1) {
    bool found_host = false;
    h.find("host", &found_host);
    FUZZ_CHECK(found_host);
  }
  if (h.upgrade) FUZZ_CHECK((h.connection & kConnUpgrade) != 0 && h.connection_lists("upgrade"));
  if (h.method == Method::CONNECT) FUZZ_CHECK(!h.host.empty() && h.path.empty());
  if (h.target[0] == '/') check_path(h.path);
}

// Offsets of the views relative to their buffer, so two parses of copies can be compared.
bool same_head(const RequestHead& a, const char* abuf, const RequestHead& b, const char* bbuf) {
  auto same = [&](std::string_view x, std::string_view y) {
    if (x.size() != y.size()) return false;
    if (x.empty()) return true;
    if (x == "/" && (x.data() < abuf || x.data() >= abuf + a.head_size)) return y == "/";
    return x.data() - abuf == y.data() - bbuf;
  };
  if (a.head_size != b.head_size || a.header_count != b.header_count || a.framing != b.framing ||
      a.content_length != b.content_length || a.keep_alive != b.keep_alive || a.connection != b.connection ||
      a.version_minor != b.version_minor || a.method != b.method || a.expect_continue != b.expect_continue ||
      a.upgrade != b.upgrade)
    return false;
  if (!same(a.method_text, b.method_text) || !same(a.target, b.target) || !same(a.path, b.path) ||
      !same(a.query, b.query) || !same(a.host, b.host) || !same(a.host_header, b.host_header))
    return false;
  for (uint16_t i = 0; i < a.header_count; ++i)
    if (!same(a.headers[i].name, b.headers[i].name) || !same(a.headers[i].value, b.headers[i].value))
      return false;
  return true;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t control = data[0];
  const char* msg = reinterpret_cast<const char*>(data + 1);
  const size_t len = size - 1;
  const ParseLimits limits = (control & 0x80) ? ParseLimits{200, 40, 6} : ParseLimits{};

  static RequestHead full;  // static: 4 KiB of headers, and reuse is how the proxy uses it
  const ParseResult r = parse_request(msg, len, limits, full);
  switch (r.status) {
    case ParseStatus::complete:
      FUZZ_CHECK(r.error_status == 0);
      check_complete(full, msg, len, limits);
      break;
    case ParseStatus::error:
      FUZZ_CHECK(r.error_status == 400 || r.error_status == 414 || r.error_status == 417 ||
                 r.error_status == 431 || r.error_status == 501 || r.error_status == 505);
      FUZZ_CHECK(r.error_reason != nullptr && r.error_reason[0] != '\0');
      break;
    case ParseStatus::incomplete:
      FUZZ_CHECK(r.error_status == 0 && len < limits.max_head_size);
      break;
  }

  portico::fuzz::Rng rng(control);
  static RequestHead part;
  const int splits = len == 0 ? 0 : 6;
  for (int i = 0; i < splits; ++i) {
    size_t k = rng.below(len + 1);
    if (i == 0 && r.status == ParseStatus::complete) k = full.head_size;      // exactly the head
    if (i == 1 && r.status == ParseStatus::complete) k = full.head_size - 1;  // one byte short
    std::unique_ptr<char[]> copy(new char[k == 0 ? 1 : k]);
    if (k != 0) std::memcpy(copy.get(), msg, k);
    const ParseResult p = parse_request(copy.get(), k, limits, part);
    if (r.status == ParseStatus::complete) {
      if (k < full.head_size) {
        FUZZ_CHECK(p.status == ParseStatus::incomplete);
      } else {
        FUZZ_CHECK(p.status == ParseStatus::complete);
        FUZZ_CHECK(same_head(full, msg, part, copy.get()));
      }
    } else if (p.status == ParseStatus::error) {
      FUZZ_CHECK(r.status == ParseStatus::error && p.error_status == r.error_status);
    } else {
      FUZZ_CHECK(p.status == ParseStatus::incomplete);
    }
  }
  return 0;
}
