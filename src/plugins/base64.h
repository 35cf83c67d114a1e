// Private to src/plugins (jwt.cc, basic_credentials.cc, their tests and fuzz targets): strict base64.
// Header only; pure functions, any thread.
//
// One decoder for the auth parsers, strict so that every byte string has exactly one accepted encoding and
// nothing is skipped: a character outside the alphabet (whitespace included) is refused, as are a length of
// 4k+1 characters and non-zero unused bits in the last character. `standard` (RFC 4648 section 4, "+/")
// takes the padding as optional but, when present, it must be complete and last; `url` (section 5, "-_",
// as JWS uses it) takes no padding at all. nginx's decoder (APISIX's ngx.decode_base64) is looser: it
// ignores whatever follows the first '=' and does not check the unused bits.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace portico::plugins::b64 {

enum class Alphabet : uint8_t { standard, url };

inline int digit_value(char c, Alphabet alphabet) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == (alphabet == Alphabet::standard ? '+' : '-')) return 62;
  if (c == (alphabet == Alphabet::standard ? '/' : '_')) return 63;
  return -1;
}

// Decodes `in` into `out` (replaced). False, with `out` unspecified, when `in` is not strict base64.
inline bool decode(std::string_view in, Alphabet alphabet, std::string& out) {
  size_t padding = 0;
  if (alphabet == Alphabet::standard && !in.empty() && in.size() % 4 == 0) {
    while (padding < 2 && in.size() > padding && in[in.size() - 1 - padding] == '=') ++padding;
  }
  const std::string_view digits = in.substr(0, in.size() - padding);
  // 4k+1 digits carry 6 bits of a byte that does not exist; padding must complete the last quantum.
  if (digits.size() % 4 == 1) return false;
  if (padding != 0 && (digits.size() + padding) % 4 != 0) return false;
  out.clear();
  out.reserve(digits.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : digits) {
    const int v = digit_value(c, alphabet);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xFF));
      acc &= (1u << bits) - 1;
    }
  }
  return acc == 0;  // the unused low bits of the last digit: zero in the one canonical encoding
}

inline std::string encode(std::string_view in, Alphabet alphabet, bool pad) {
  const char* table = alphabet == Alphabet::standard
                          ? "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
                          : "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16 |
                       static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8 |
                       static_cast<unsigned char>(in[i + 2]);
    out.push_back(table[v >> 18]);
    out.push_back(table[(v >> 12) & 63]);
    out.push_back(table[(v >> 6) & 63]);
    out.push_back(table[v & 63]);
  }
  const size_t rest = in.size() - i;
  if (rest > 0) {
    uint32_t v = static_cast<uint32_t>(static_cast<unsigned char>(in[i])) << 16;
    if (rest == 2) v |= static_cast<uint32_t>(static_cast<unsigned char>(in[i + 1])) << 8;
    out.push_back(table[v >> 18]);
    out.push_back(table[(v >> 12) & 63]);
    if (rest == 2) out.push_back(table[(v >> 6) & 63]);
    if (pad) out.append(rest == 1 ? "==" : "=");
  }
  return out;
}

}  // namespace portico::plugins::b64
