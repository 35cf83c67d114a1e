// Private to src/upstream: the 64-bit hash of consistent hashing. It must give the same value in every
// process, on every build and platform, so that all data planes map a key to the same node: never replace it
// with std::hash, and treat any change as a breaking change (tests pin known values).
//
// hash64(s) = fmix64(FNV-1a-64(s)): FNV-1a (offset basis 0xcbf29ce484222325, prime 0x100000001b3) over the
// bytes, then the MurmurHash3 64-bit finaliser, which spreads FNV's weak high bits over the whole word.
#pragma once

#include <cstdint>
#include <string_view>

namespace portico::upstream {

constexpr uint64_t fnv1a64(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 0x100000001b3ull;
  }
  return h;
}

constexpr uint64_t fmix64(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdull;
  k ^= k >> 33;
  k *= 0xc4ceb9fe1a85ec53ull;
  k ^= k >> 33;
  return k;
}

constexpr uint64_t hash64(std::string_view s) {
  return fmix64(fnv1a64(s));
}

}  // namespace portico::upstream
