// Seconds as the project's options and config carry them (a double) to a steady-clock duration, for timers
// and deadlines. Header only; any thread.
#pragma once

#include <chrono>

namespace portico::base {

inline std::chrono::steady_clock::duration seconds(double s) {
  return std::chrono::duration_cast<std::chrono::steady_clock::duration>(std::chrono::duration<double>(s));
}

}  // namespace portico::base
