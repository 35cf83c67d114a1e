// Error log: leveled, line-oriented, written to stderr (or a file) with one write(2) per line so lines from
// different threads never interleave. Any thread may call it; it is not meant for the per-request path
// (the access log has its own per-worker buffer, see proxy/access_log.h).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace portico::log {

enum class Level { debug = 0, info = 1, warn = 2, error = 3 };

// Process-wide settings; set once at start-up before workers run.
void set_level(Level level);
bool parse_level(std::string_view text, Level& out);
// Redirects the error log to `path` (appending). Returns false and keeps stderr if it cannot be opened.
bool set_file(const std::string& path);
bool enabled(Level level);

void write(Level level, std::string_view message);

template <typename... Args>
void logf(Level level, const char* fmt, Args... args) {
  if (!enabled(level)) return;
  char buf[2048];
  int n = std::snprintf(buf, sizeof buf, fmt, args...);
  if (n < 0) return;
  write(level,
        std::string_view(buf, static_cast<size_t>(n) < sizeof buf ? static_cast<size_t>(n) : sizeof buf - 1));
}

#define PORTICO_LOG(level, ...) ::portico::log::logf(::portico::log::Level::level, __VA_ARGS__)

// For a line a client or an origin can trigger at request rate: at most one per second. Declare one per call
// site and thread (`static thread_local log::Throttle t;`); due() says whether to log now and sets
// `suppressed` to the lines skipped since the last one (for the line to report).
class Throttle {
 public:
  bool due(uint64_t& suppressed) {
    const auto now = std::chrono::steady_clock::now();
    if (now < next_) {
      ++skipped_;
      return false;
    }
    next_ = now + std::chrono::seconds(1);
    suppressed = skipped_;
    skipped_ = 0;
    return true;
  }

 private:
  std::chrono::steady_clock::time_point next_{};
  uint64_t skipped_ = 0;
};

}  // namespace portico::log
