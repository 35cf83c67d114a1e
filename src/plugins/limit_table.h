// LimitTable: the local (in-process) state of the rate-limit plugins, shared by every worker: one entry per
// (namespace, key), a namespace being one plugin configuration on one route, or one limit-count `group`.
// It plays the part of APISIX's lua_shared_dict (plugin-limit-count, plugin-limit-req, plugin-limit-conn).
//
// Memory is bounded: a fixed number of slots, allocated at construction, in 64 stripes each guarded by its
// own mutex (a request locks one stripe for a few arithmetic operations; workers rarely contend). An entry
// lives in one of kWindow slots after its hash. An entry whose expiry has passed is free for reuse. When
// every candidate slot holds a live entry, the one closest to its expiry is evicted (its counter starts
// over, so the limit admits more for that key, never fewer), as a shared dict evicts its least recently
// used entries when full; an entry marked pinned (a limit-conn count in use) is never evicted, and when all
// candidates are pinned update() fails (the plugin answers 500, or lets the request through with
// allow_degradation, as APISIX does when its dict reports "no memory").
//
// The slots are allocated on first use (a process whose routes have no limits pays nothing). Slots keep
// their key's storage: a key reusing a slot allocates only when it is longer than any before.
// Any thread.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace portico::plugins {

class LimitTable {
 public:
  static constexpr size_t kStripes = 64;
  static constexpr size_t kWindow = 8;

  struct Entry {
    uint64_t ns = 0;
    std::string key;
    int64_t expires_ms = 0;  // live while > now; INT64_MAX while pinned
    uint32_t gen = 0;        // bumped whenever the slot gets a new entry (LimitTable::Handle)
    // The plugin's state: limit-count (count, window start), sliding (previous, current, window start),
    // limit-req (excess, last), limit-conn (connections).
    int64_t a = 0, b = 0, c = 0;
  };
  // Names an entry across calls (limit-conn's lease): stale once the slot was given to another entry.
  struct Handle {
    uint32_t slot = 0;
    uint32_t gen = 0;
  };

  // At least `capacity` slots (rounded up to a multiple of kStripes * kWindow).
  explicit LimitTable(size_t capacity);

  // Calls fn(entry, fresh) under the stripe's lock for the entry of (ns, key), made fresh (fields zero) when
  // there was none or it had expired. fn sets the entry's expiry. False (fn not called) when the table is
  // full of pinned entries there. `handle` (optional) receives the entry's handle.
  template <class Fn>
  bool update(uint64_t ns, std::string_view key, int64_t now_ms, Fn&& fn, Handle* handle = nullptr);

  // Calls fn(entry) under the lock when `h` still names its entry.
  template <class Fn>
  void with(Handle h, Fn&& fn);

  size_t capacity() const { return per_stripe_ * kStripes; }
  uint64_t evictions() const { return evictions_.load(std::memory_order_relaxed); }

 private:
  struct alignas(64) Stripe {
    std::mutex mu;
  };
  void allocate();
  size_t per_stripe_;
  std::once_flag allocated_;
  std::vector<Entry> slots_;
  std::unique_ptr<Stripe[]> stripes_;
  std::atomic<uint64_t> evictions_{0};
};

uint64_t limit_hash(uint64_t ns, std::string_view key);

template <class Fn>
bool LimitTable::update(uint64_t ns, std::string_view key, int64_t now_ms, Fn&& fn, Handle* handle) {
  const uint64_t h = limit_hash(ns, key);
  const size_t stripe = h % kStripes;
  const size_t base = stripe * per_stripe_;
  const size_t start = (h >> 6) % per_stripe_;
  std::call_once(allocated_, [this] { allocate(); });
  std::lock_guard lock(stripes_[stripe].mu);
  Entry* free_slot = nullptr;
  Entry* victim = nullptr;
  for (size_t n = 0; n < kWindow; ++n) {
    Entry& e = slots_[base + (start + n) % per_stripe_];
    const bool live = e.expires_ms > now_ms;
    if (live && e.ns == ns && e.key == key) {
      if (handle != nullptr) *handle = {static_cast<uint32_t>(&e - slots_.data()), e.gen};
      fn(e, false);
      return true;
    }
    if (!live) {
      if (free_slot == nullptr) free_slot = &e;
    } else if (e.expires_ms != INT64_MAX && (victim == nullptr || e.expires_ms < victim->expires_ms)) {
      victim = &e;
    }
  }
  Entry* e = free_slot;
  if (e == nullptr) {
    if (victim == nullptr) return false;
    evictions_.fetch_add(1, std::memory_order_relaxed);
    e = victim;
  }
  e->ns = ns;
  e->key.assign(key);
  e->gen++;
  e->a = e->b = e->c = 0;
  e->expires_ms = now_ms + 1;
  if (handle != nullptr) *handle = {static_cast<uint32_t>(e - slots_.data()), e->gen};
  fn(*e, true);
  return true;
}

template <class Fn>
void LimitTable::with(Handle h, Fn&& fn) {
  if (h.slot >= capacity()) return;  // a handle is only made once the slots exist
  std::lock_guard lock(stripes_[h.slot / per_stripe_].mu);
  Entry& e = slots_[h.slot];
  if (e.gen == h.gen) fn(e);
}

}  // namespace portico::plugins
