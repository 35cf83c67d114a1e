// Private to src/http: character classes (RFC 9110 5.6.2, RFC 3986 2.3) and the vectorised scanners used by
// the parsers. Not part of the subsystem's interface; other subsystems must not include it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

namespace portico::http::detail {

enum CharClass : uint8_t {
  kTchar = 1u << 0,       // token character (RFC 9110 5.6.2)
  kFieldByte = 1u << 1,   // allowed inside a field value: HTAB, SP, VCHAR, obs-text (RFC 9110 5.5)
  kHex = 1u << 2,         // HEXDIG, either case
  kUnreserved = 1u << 3,  // ALPHA DIGIT - . _ ~ (RFC 3986 2.3)
  kQdtext = 1u << 4,      // quoted-string content: HTAB SP ! #-[ ]-~ obs-text (RFC 9110 5.6.4)
};

constexpr std::array<uint8_t, 256> make_char_classes() {
  std::array<uint8_t, 256> t{};
  for (int c = 0; c < 256; ++c) {
    uint8_t v = 0;
    const bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
    const bool digit = c >= '0' && c <= '9';
    bool tchar = alpha || digit;
    for (char s : std::string_view("!#$%&'*+-.^_`|~")) tchar = tchar || c == s;
    if (tchar) v |= kTchar;
    if (c == '\t' || (c >= 0x20 && c != 0x7f)) v |= kFieldByte;
    if (digit || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')) v |= kHex;
    if (alpha || digit || c == '-' || c == '.' || c == '_' || c == '~') v |= kUnreserved;
    if (c == '\t' || c == ' ' || c == 0x21 || (c >= 0x23 && c <= 0x5b) || (c >= 0x5d && c <= 0x7e) ||
        c >= 0x80)
      v |= kQdtext;
    t[static_cast<size_t>(c)] = v;
  }
  return t;
}

inline constexpr std::array<uint8_t, 256> kCharClasses = make_char_classes();

inline bool has_class(char c, uint8_t cls) {
  return (kCharClasses[static_cast<unsigned char>(c)] & cls) != 0;
}
inline bool is_tchar(char c) {
  return has_class(c, kTchar);
}
inline bool is_field_byte(char c) {
  return has_class(c, kFieldByte);
}
inline bool is_unreserved(char c) {
  return has_class(c, kUnreserved);
}
inline bool is_qdtext(char c) {
  return has_class(c, kQdtext);
}
inline bool is_digit(char c) {
  return static_cast<unsigned char>(c - '0') < 10;
}
inline bool is_ows(char c) {
  return c == ' ' || c == '\t';
}

// Value of a hex digit, or -1.
inline int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  const char l = static_cast<char>(c | 0x20);
  if (l >= 'a' && l <= 'f') return l - 'a' + 10;
  return -1;
}

inline char ascii_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + ('a' - 'A')) : c;
}

// ASCII case-insensitive equality.
inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i)
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  return true;
}

// True if `s` is a non-empty token.
inline bool is_token(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s)
    if (!is_tchar(c)) return false;
  return true;
}

// Strips leading and trailing SP/HTAB.
inline std::string_view trim_ows(std::string_view s) {
  size_t b = 0, e = s.size();
  while (b < e && is_ows(s[b])) ++b;
  while (e > b && is_ows(s[e - 1])) --e;
  return s.substr(b, e - b);
}

// Calls f(element) for each comma-separated element of a list (RFC 9110 5.6.1), with OWS trimmed. Empty
// elements are passed too; the caller decides whether they are acceptable. Stops early when f returns false.
template <typename F>
bool for_each_list_element(std::string_view list, F&& f) {
  size_t start = 0;
  while (true) {
    const size_t comma = list.find(',', start);
    const std::string_view element = trim_ows(
        list.substr(start, comma == std::string_view::npos ? std::string_view::npos : comma - start));
    if (!f(element)) return false;
    if (comma == std::string_view::npos) return true;
    start = comma + 1;
  }
}

// First byte in [p, end) that is a CTL (0x00-0x1f) or DEL, else `end`. Field values, reason phrases and
// chunk data boundaries are found with it: ordinary value bytes never stop it, HTAB does (rare in values).
inline const char* find_ctl(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i k1f = _mm_set1_epi8(0x1f);
  const __m128i k7f = _mm_set1_epi8(0x7f);
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    const __m128i ctl = _mm_cmpeq_epi8(_mm_min_epu8(v, k1f), v);  // v <= 0x1f (unsigned)
    const __m128i del = _mm_cmpeq_epi8(v, k7f);
    const int mask = _mm_movemask_epi8(_mm_or_si128(ctl, del));
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  while (p < end) {
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c < 0x20 || c == 0x7f) return p;
    ++p;
  }
  return end;
}

// First byte in [p, end) that can end or needs attention in a request-target: CTL, SP, DEL, '#', '?'.
inline const char* find_target_special(const char* p, const char* end) {
#if defined(__SSE2__)
  const __m128i k20 = _mm_set1_epi8(0x20);
  const __m128i k7f = _mm_set1_epi8(0x7f);
  const __m128i hash = _mm_set1_epi8('#');
  const __m128i question = _mm_set1_epi8('?');
  while (end - p >= 16) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    __m128i m = _mm_cmpeq_epi8(_mm_min_epu8(v, k20), v);  // v <= 0x20 (unsigned)
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, k7f));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, hash));
    m = _mm_or_si128(m, _mm_cmpeq_epi8(v, question));
    const int mask = _mm_movemask_epi8(m);
    if (mask != 0) return p + __builtin_ctz(static_cast<unsigned>(mask));
    p += 16;
  }
#endif
  while (p < end) {
    const unsigned char c = static_cast<unsigned char>(*p);
    if (c <= 0x20 || c == 0x7f || c == '#' || c == '?') return p;
    ++p;
  }
  return end;
}

}  // namespace portico::http::detail
