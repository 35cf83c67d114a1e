// ASCII case folding for protocol names (header fields, media types): bytes outside A-Z compare as they are,
// whatever the locale. Pure functions; any thread.
#pragma once

#include <cstddef>
#include <string_view>

namespace portico::base {

inline char ascii_lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + ('a' - 'A')) : c;
}

inline bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (ascii_lower(a[i]) != ascii_lower(b[i])) return false;
  }
  return true;
}

}  // namespace portico::base
