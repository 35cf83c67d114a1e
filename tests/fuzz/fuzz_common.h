// Shared helpers for the HTTP fuzz targets: an always-on invariant check (independent of NDEBUG), a small
// deterministic PRNG for split points, and buffer-membership tests for string views.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>

#define FUZZ_CHECK(cond)                                                                      \
  do {                                                                                        \
    if (!(cond)) {                                                                            \
      std::fprintf(stderr, "fuzz invariant failed: %s (%s:%d)\n", #cond, __FILE__, __LINE__); \
      std::abort();                                                                           \
    }                                                                                         \
  } while (0)

namespace portico::fuzz {

// xorshift64*: split points must be a pure function of the input so crashes reproduce.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed * 0x9E3779B97F4A7C15ull + 1) {}
  uint64_t next() {
    s_ ^= s_ >> 12;
    s_ ^= s_ << 25;
    s_ ^= s_ >> 27;
    return s_ * 0x2545F4914F6CDD1Dull;
  }
  size_t below(size_t n) { return n == 0 ? 0 : static_cast<size_t>(next() % n); }

 private:
  uint64_t s_;
};

// An empty view may point anywhere; a non-empty one must lie within [base, base + len).
inline bool inside(std::string_view v, const char* base, size_t len) {
  if (v.empty()) return true;
  return v.data() >= base && v.data() + v.size() <= base + len;
}

// True if every CR in [p, p + n) is followed by LF and every LF preceded by CR.
inline bool only_crlf(const char* p, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (p[i] == '\r' && (i + 1 == n || p[i + 1] != '\n')) return false;
    if (p[i] == '\n' && (i == 0 || p[i - 1] != '\r')) return false;
  }
  return true;
}

}  // namespace portico::fuzz
