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

// CLOCK_MONOTONIC_COARSE: the kernel's last tick, a few milliseconds behind steady_clock and a quarter of
// its cost to read. For counting windows of a second (flood limits) only: never a deadline, and never
// compared with a steady_clock reading (the two clocks disagree by more than a deadline's slack).
inline std::chrono::nanoseconds coarse_monotonic() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::chrono::seconds(ts.tv_sec) + std::chrono::nanoseconds(ts.tv_nsec);
}

inline std::chrono::steady_clock::time_point deadline_in(double seconds) {
  return deadline_after(std::chrono::steady_clock::now(), seconds);
}

}  // namespace portico::base
