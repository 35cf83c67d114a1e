// Request id generators (request_ids.h).
#include "plugins/request_ids.h"

#include <sys/random.h>

#include <array>
#include <cstring>
#include <random>

namespace portico::plugins::ids {

namespace {

uint64_t rotl(uint64_t x, int k) {
  return (x << k) | (x >> (64 - k));
}

// xoshiro256** (Blackman and Vigna), seeded with 32 bytes from the OS.
struct Xoshiro {
  uint64_t s[4];

  Xoshiro() {
    uint8_t seed[sizeof s];
    size_t got = 0;
    while (got < sizeof seed) {
      ssize_t n = getrandom(seed + got, sizeof seed - got, 0);
      if (n <= 0) break;
      got += static_cast<size_t>(n);
    }
    if (got < sizeof seed) {  // no getrandom (old kernel, seccomp): the library's entropy source
      std::random_device rd;
      for (auto& b : seed) b = static_cast<uint8_t>(rd());
    }
    std::memcpy(s, seed, sizeof s);
    if ((s[0] | s[1] | s[2] | s[3]) == 0) s[0] = 1;  // the all-zero state is a fixed point
  }

  uint64_t next() {
    const uint64_t result = rotl(s[1] * 5, 7) * 9;
    const uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
  }
};

constexpr char kHex[] = "0123456789abcdef";
constexpr char kUrlAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-";
constexpr char kBase62[] = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
constexpr uint64_t kKsuidEpoch = 1400000000;

}  // namespace

uint64_t random64() {
  thread_local Xoshiro rng;
  return rng.next();
}

void uuid_v4(std::string& out) {
  uint64_t hi = random64(), lo = random64();
  hi = (hi & ~(0xfULL << 12)) | (0x4ULL << 12);  // version 4 (bits 48..51 of the 128-bit value)
  lo = (lo & ~(0x3ULL << 62)) | (0x2ULL << 62);  // variant 10xx
  char buf[36];
  size_t o = 0;
  auto hex = [&](uint64_t v, int nibbles) {
    for (int i = nibbles - 1; i >= 0; --i) buf[o++] = kHex[(v >> (4 * i)) & 15];
  };
  hex(hi >> 32, 8);
  buf[o++] = '-';
  hex(hi >> 16, 4);
  buf[o++] = '-';
  hex(hi, 4);
  buf[o++] = '-';
  hex(lo >> 48, 4);
  buf[o++] = '-';
  hex(lo, 12);
  out.append(buf, sizeof buf);
}

void nanoid(std::string& out) {
  // 21 characters of 6 bits: 126 bits from two draws.
  uint64_t bits[2] = {random64(), random64()};
  for (int i = 0; i < 21; ++i) {
    const uint64_t word = bits[i / 10];
    out += kUrlAlphabet[(word >> (6 * (i % 10))) & 63];
  }
}

void range_id(std::string_view char_set, size_t length, std::string& out) {
  if (char_set.empty()) return;
  for (size_t i = 0; i < length; ++i) out += char_set[random64() % char_set.size()];
}

void ksuid(uint64_t unix_seconds, std::string& out) {
  // The 160-bit payload as five big-endian 32-bit words, converted to base 62 by repeated division.
  std::array<uint32_t, 5> words;
  words[0] = static_cast<uint32_t>(unix_seconds > kKsuidEpoch ? unix_seconds - kKsuidEpoch : 0);
  const uint64_t a = random64(), b = random64();
  words[1] = static_cast<uint32_t>(a >> 32);
  words[2] = static_cast<uint32_t>(a);
  words[3] = static_cast<uint32_t>(b >> 32);
  words[4] = static_cast<uint32_t>(b);
  char digits[27];
  for (int i = 26; i >= 0; --i) {
    uint64_t rem = 0;
    for (uint32_t& w : words) {
      const uint64_t cur = (rem << 32) | w;
      w = static_cast<uint32_t>(cur / 62);
      rem = cur % 62;
    }
    digits[i] = kBase62[rem];
  }
  out.append(digits, sizeof digits);
}

}  // namespace portico::plugins::ids
