// Seconds as the project's options and config carry them (a double) to a steady-clock duration, for timers
// and deadlines. Header only; any thread.
#pragma once

#include <time.h>

#include <chrono>

namespace portico::base {

inline std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

// `seconds` after `from`, saturating: a timeout too large for the clock (a grpc-timeout of 99999999H) is
// "never", not an overflow into the past.
inline std::chrono::steady_clock::time_point deadline_after(std::chrono::steady_clock::time_point from,
                                                            double seconds) {
  constexpr double kNever = 1e9;  // ~31 years: far below the clock's range, far above any real timeout
  if (!(seconds < kNever)) return std::chrono::steady_clock::time_point::max();
  return from + base::seconds(seconds);
}

// steady_clock's time at the kernel's last tick, plus one tick: never earlier than steady_clock::now(), at
// most one tick (1-4 ms) later. CLOCK_MONOTONIC_COARSE is steady_clock's clock as of that tick and is read
// without the TSC; a proxied request computes about ten deadlines, and precise reads for them were ~2% of a
// worker's CPU (docs/benchmarks.md, THREADALLOC). For deadlines only: durations that are measured and
// reported (latencies) use steady_clock::now().
inline std::chrono::steady_clock::time_point deadline_clock() {
  static const std::chrono::nanoseconds tick = [] {
    timespec res{};
    clock_getres(CLOCK_MONOTONIC_COARSE, &res);
    return std::chrono::seconds(res.tv_sec) + std::chrono::nanoseconds(res.tv_nsec);
  }();
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(
          std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec) + tick));
}

// A deadline `seconds` from now (deadline_clock: possibly one tick later).
inline std::chrono::steady_clock::time_point deadline_in(double seconds) {
  return deadline_after(deadline_clock(), seconds);
}

}  // namespace portico::base
