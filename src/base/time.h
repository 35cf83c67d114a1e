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

inline std::chrono::steady_clock::time_point deadline_in(double seconds) {
  return deadline_after(std::chrono::steady_clock::now(), seconds);
}

// steady_clock's time as of the kernel's last tick (CLOCK_MONOTONIC_COARSE, read without the TSC: several
// times cheaper, and a proxied request sets about ten watchdog deadlines). It lags steady_clock::now() by up
// to a tick (4 ms here) and more right after the CPU wakes (measured: up to 5.2 ms), so a deadline from it
// may pass a few milliseconds early. For the session watchdog's I/O bounds (seconds) only: never for a
// deadline compared with one taken from steady_clock (a gRPC call's deadline), nor for measured latencies.
inline std::chrono::steady_clock::time_point coarse_now() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
  return std::chrono::steady_clock::time_point(
      std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::seconds(ts.tv_sec) +
                                                                      std::chrono::nanoseconds(ts.tv_nsec)));
}

}  // namespace portico::base
