// Seconds as the project's options and config carry them (a double) to a steady-clock duration, for timers
// and deadlines. Header only; any thread.
#pragma once

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

}  // namespace portico::base
