// Private to src/upstream: the monotonic clock shared by the health state (cool-downs) and the balancers
// (eligibility expiry, EWMA decay), with an offset that tests advance instead of sleeping.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>

namespace portico::upstream::clock {

inline std::atomic<int64_t> g_test_offset_ns{0};

// steady_clock in nanoseconds (plus the test offset, normally 0).
inline int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
             .count() +
         g_test_offset_ns.load(std::memory_order_relaxed);
}

// Tests only: moves now_ns() forward, for every thread.
inline void advance_for_testing(std::chrono::nanoseconds by) {
  g_test_offset_ns.fetch_add(by.count(), std::memory_order_relaxed);
}

}  // namespace portico::upstream::clock
