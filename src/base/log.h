// Error log: leveled, line-oriented, written to stderr (or a file) with one write(2) per line so lines from
// different threads never interleave. Any thread may call it; it is not meant for the per-request path
// (the access log has its own per-worker buffer, see proxy/access_log.h).
#pragma once

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

}  // namespace portico::log
