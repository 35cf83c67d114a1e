// Private to src/router: a fast non-cryptographic string hash and a flat open-addressing table keyed by
// (tag, string). Only the router's build step inserts; requests only probe, so an attacker can lengthen a
// probe only as far as the clusters the configuration itself created (no hash flooding through requests).
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

inline uint64_t hash_bytes(std::string_view s) { return hash_bytes(s.data(), s.size()); }

// Combines a string hash with a small integer tag (the host group of an exact path).
inline uint64_t hash_with_tag(uint64_t h, uint32_t tag) { return fold_mul(h ^ kH3, kH1 + tag); }

// Open-addressing table (linear probing, load <= 1/2) from (tag, string) to a (value, count) pair. Keys are
// copied into the table's own arena. One 32-byte slot per entry, two per cache line.
class FlatTable {
 public:
  struct Slot {
    uint64_t hash;
    uint32_t key_off;
    uint32_t key_len;
    uint32_t tag;
    uint32_t value;
    uint32_t count;  // 0 marks an empty slot
    uint32_t unused;
  };

  // Sizes the table for `n` entries; must be called before insert().
  void reserve(size_t n) {
    size_t cap = 8;
    while (cap < n * 2) cap <<= 1;
    slots_.assign(cap, Slot{0, 0, 0, 0, 0, 0, 0});
    mask_ = cap - 1;
  }

  // Keys must be unique per tag (the builder groups duplicates first); count must be >= 1.
  void insert(uint64_t hash, std::string_view key, uint32_t tag, uint32_t value, uint32_t count) {
    size_t i = hash & mask_;
    while (slots_[i].count != 0) i = (i + 1) & mask_;
    Slot& s = slots_[i];
    s.hash = hash;
    s.key_off = static_cast<uint32_t>(keys_.size());
    s.key_len = static_cast<uint32_t>(key.size());
    s.tag = tag;
    s.value = value;
    s.count = count;
    keys_.append(key);
  }

  const Slot* find(uint64_t hash, const char* key, size_t len, uint32_t tag) const {
    if (slots_.empty()) return nullptr;
    size_t i = hash & mask_;
    for (;;) {
      const Slot& s = slots_[i];
      if (s.count == 0) return nullptr;
      if (s.hash == hash && s.tag == tag && s.key_len == len &&
          std::memcmp(keys_.data() + s.key_off, key, len) == 0) {
        return &s;
      }
      i = (i + 1) & mask_;
    }
  }

  void shrink() { keys_.shrink_to_fit(); }
  bool empty() const { return slots_.empty(); }
  size_t memory_bytes() const { return slots_.capacity() * sizeof(Slot) + keys_.capacity(); }

 private:
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  std::string keys_;
};

}  // namespace portico::router::detail
