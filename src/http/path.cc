// Request-path normalization (RFC 3986 6.2.2.2 and 5.2.4); see path.h.
#include "http/path.h"

#include <cstring>

#include "http/chars.h"

namespace portico::http {

namespace {

// Decoded value of the escape at path[i] ('%'), or -1 if it is malformed (truncated or not hex).
int escape_value(std::string_view path, size_t i) {
  if (path.size() - i < 3) return -1;
  const int hi = detail::hex_value(path[i + 1]);
  const int lo = detail::hex_value(path[i + 2]);
  if (hi < 0 || lo < 0) return -1;
  return hi * 16 + lo;
}

// True if the segment starting at path[i] (just after a '/') is "." or "..".
bool dot_segment_at(std::string_view path, size_t i) {
  size_t j = i;
  if (j < path.size() && path[j] == '.') ++j;
  if (j < path.size() && path[j] == '.') ++j;
  return j > i && (j == path.size() || path[j] == '/');
}

// Removes "." and ".." segments from `s` (which starts with '/') in place. Works segment by segment with a
// write position that never passes the read position.
void remove_dot_segments(std::string& s) {
  char* const d = s.data();
  const size_t n = s.size();
  size_t w = 0;  // output is d[0, w): "" or "/seg/seg..."
  size_t r = 1;  // start of the current input segment (after its '/')
  while (true) {
    const char* slash = static_cast<const char*>(std::memchr(d + r, '/', n - r));
    const size_t k = slash != nullptr ? static_cast<size_t>(slash - d) : n;
    const size_t len = k - r;
    const bool last = k == n;
    const bool dot = len == 1 && d[r] == '.';
    const bool dotdot = len == 2 && d[r] == '.' && d[r + 1] == '.';
    if (dotdot) {  // drop the last output segment and its '/'
      while (w > 0 && d[w - 1] != '/') --w;
      if (w > 0) --w;
    }
    if (dot || dotdot) {
      if (last) d[w++] = '/';  // "/a/." and "/a/b/.." end with a slash
    } else {
      d[w++] = '/';
      std::memmove(d + w, d + r, len);
      w += len;
    }
    if (last) break;
    r = k + 1;
  }
  s.resize(w);
}

}  // namespace

PathStatus normalize_path(std::string_view path, std::string& out) {
  if (path.empty() || path[0] != '/') return PathStatus::invalid;

  // Fast scan: only '%' and "/." can require work. Most paths have neither and return here.
  bool change = false;
  for (size_t i = 0; i < path.size(); ++i) {
    const char c = path[i];
    if (c == '%') {
      const int v = escape_value(path, i);
      if (v <= 0) return PathStatus::invalid;  // malformed escape or %00
      if (detail::is_unreserved(static_cast<char>(v))) change = true;
      i += 2;
    } else if (c == '/' && dot_segment_at(path, i + 1)) {
      change = true;
    }
  }
  if (!change) return PathStatus::unchanged;

  // Decode escapes of unreserved characters (RFC 3986 6.2.2.2); others, including %2F, stay as they are.
  out.clear();
  out.reserve(path.size());
  for (size_t i = 0; i < path.size(); ++i) {
    const char c = path[i];
    if (c == '%') {
      const char v = static_cast<char>(escape_value(path, i));
      if (detail::is_unreserved(v)) {
        out.push_back(v);
      } else {
        out.append(path.data() + i, 3);
      }
      i += 2;
    } else {
      out.push_back(c);
    }
  }
  remove_dot_segments(out);
  return PathStatus::normalized;
}

}  // namespace portico::http
