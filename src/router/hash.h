// Private to src/router: a fast non-cryptographic string hash and a flat open-addressing table keyed by
// (tag, string). Only the router's build step inserts; requests only probe, so a request can at worst walk
// the probe clusters the configuration itself created (no hash flooding through requests).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace portico::router::detail {

inline constexpr uint32_t kNone = 0xFFFFFFFFu;

inline uint64_t load64(const char* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// Byte equality for the short keys of the tables. A plain loop: libc's memcmp may load whole vectors
// beyond `n`, which pulls an extra cache line into a lookup that should touch one.
inline bool bytes_equal(const char* a, const char* b, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

// 64x64 -> 128 multiply folded to 64 bits: the core mixing step.
inline uint64_t fold_mul(uint64_t a, uint64_t b) {
  unsigned __int128 r = static_cast<unsigned __int128>(a) * b;
  return static_cast<uint64_t>(r) ^ static_cast<uint64_t>(r >> 64);
}

inline constexpr uint64_t kH0 = 0x9e3779b97f4a7c15ull;
inline constexpr uint64_t kH1 = 0xc2b2ae3d27d4eb4full;
inline constexpr uint64_t kH2 = 0x165667b19e3779f9ull;
inline constexpr uint64_t kH3 = 0xd6e8feb86659fd93ull;

// Hash of a byte string, 16 bytes per step.
inline uint64_t hash_bytes(const char* p, size_t n) {
  uint64_t h = kH0 ^ (n * kH1);
  size_t left = n;
  while (left > 16) {
    h = fold_mul(load64(p) ^ kH1, load64(p + 8) ^ h);
    p += 16;
    left -= 16;
  }
  uint64_t a, b;
  if (left >= 8) {
    a = load64(p);
    b = load64(p + left - 8);  // overlaps `a` when left < 16
  } else if (left >= 4) {
    uint32_t x, y;
    std::memcpy(&x, p, 4);
    std::memcpy(&y, p + left - 4, 4);
    a = x;
    b = y;
  } else if (left > 0) {
    a = (static_cast<uint64_t>(static_cast<uint8_t>(p[0])) << 16) |
        (static_cast<uint64_t>(static_cast<uint8_t>(p[left >> 1])) << 8) | static_cast<uint8_t>(p[left - 1]);
    b = 0;
  } else {
    a = b = 0;
  }
  h = fold_mul(a ^ kH2, b ^ h);
  return fold_mul(h ^ kH3, kH0 ^ n);
}

inline uint64_t hash_bytes(std::string_view s) {
  return hash_bytes(s.data(), s.size());
}

// Combines a string hash with a small integer tag (a host group, a tree node).
inline uint64_t hash_with_tag(uint64_t h, uint32_t tag) {
  return fold_mul(h ^ kH3, kH1 + tag);
}

// Hash table from (tag, string) to a Payload, built once and then only probed. Two arrays:
//  - an open-addressing index (linear probing, load <= 1/2) of 8-byte entries: 32 bits of the hash and the
//    entry's position; eight per cache line, so a probe, hit or miss, nearly always reads one line of it;
//  - the entries, densely packed, one 64-byte cache line each: the full hash, the payload and, when they fit,
//    the key bytes (longer keys are compared in a separate arena).
// A hit therefore costs two cache lines (index, entry) and a miss one. Comparing a long key in the arena is
// off the critical path in practice: the CPU runs ahead on the predicted outcome.
template <class Payload>
class FlatMap {
 public:
  static constexpr size_t kHeader = 24;
  static_assert(sizeof(Payload) + kHeader <= 64, "payload too large for a one-line entry");
  static constexpr size_t kInline = 64 - kHeader - sizeof(Payload);

  struct alignas(64) Slot {
    uint64_t hash;
    uint32_t tag;
    uint32_t key_len;
    uint32_t key_off;  // into keys_, when key_len > kInline
    Payload payload;
    char key[kInline > 0 ? kInline : 1];
  };
  static_assert(sizeof(Slot) == 64);

  // Sizes the table for `n` entries; must be called before insert().
  void reserve(size_t n) {
    size_t cap = 16;
    while (cap < n * 2) cap <<= 1;
    index_.assign(cap, 0);
    mask_ = cap - 1;
    slots_.clear();
    slots_.reserve(n);
  }

  // Keys must be unique per tag, and at most the reserved number inserted; returns the new payload.
  Payload& insert(uint64_t hash, std::string_view key, uint32_t tag) {
    size_t i = hash & mask_;
    while (index_[i] != 0) i = (i + 1) & mask_;
    index_[i] = (hash & 0xFFFFFFFF00000000ull) | static_cast<uint32_t>(slots_.size() + 1);
    Slot& s = slots_.emplace_back();
    s.hash = hash;
    s.tag = tag;
    s.key_len = static_cast<uint32_t>(key.size());
    if (key.size() <= kInline) {
      std::memcpy(s.key, key.data(), key.size());
    } else {
      s.key_off = static_cast<uint32_t>(keys_.size());
      keys_.append(key);
    }
    return s.payload;
  }

  const Payload* find(uint64_t hash, const char* key, size_t len, uint32_t tag) const {
    if (index_.empty()) return nullptr;
    const uint64_t high = hash & 0xFFFFFFFF00000000ull;
    size_t i = hash & mask_;
    for (;;) {
      uint64_t e = index_[i];
      if (e == 0) return nullptr;
      if ((e & 0xFFFFFFFF00000000ull) == high) {
        const Slot& s = slots_[static_cast<uint32_t>(e) - 1];
        if (s.hash == hash && s.tag == tag && s.key_len == len &&
            (len <= kInline ? bytes_equal(s.key, key, len)
                            : std::memcmp(keys_.data() + s.key_off, key, len) == 0)) {
          return &s.payload;
        }
      }
      i = (i + 1) & mask_;
    }
  }

  // Starts loading the index line a find() with this hash would read first.
  void prefetch(uint64_t hash) const {
    if (!index_.empty()) __builtin_prefetch(&index_[hash & mask_]);
  }

  void shrink() {
    keys_.shrink_to_fit();
    slots_.shrink_to_fit();
  }
  size_t memory_bytes() const {
    return index_.capacity() * sizeof(uint64_t) + slots_.capacity() * sizeof(Slot) + keys_.capacity();
  }

 private:
  std::vector<uint64_t> index_;
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  std::string keys_;
};

}  // namespace portico::router::detail
