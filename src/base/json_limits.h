// The nesting bound for JSON (and YAML) that enters the process as configuration: config's strict reader
// (files, Admin API bodies, etcd values, deltas; config/json_input.h) enforces it. Sync checks a looser
// lexical bound (512 for values, 600 for envelopes) before it parses what control planes, caches and S3 send,
// only to keep its own parsing safe: every resource it accepts is then loaded by config, which applies this
// one. Constant data only.
#pragma once

#include <cstddef>
#include <string_view>

namespace portico::base {

// How deep one resource may nest, counting its own object as level 1. The deepest legitimate resource nests
// about 6 levels. nlohmann's parser and destructor are iterative, but copying, dumping, comparing and merging
// a tree recurse once per level, so untrusted text must be refused before such a tree exists.
inline constexpr size_t kMaxJsonNesting = 64;

// True when `text` nests arrays/objects deeper than `max_depth`: a lexical scan that skips strings and
// validates nothing, so untrusted text can be refused before any parser builds (or recurses into) a tree.
inline bool json_too_deep(std::string_view text, size_t max_depth) {
  size_t depth = 0;
  bool in_string = false;
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    if (in_string) {
      if (c == '\\') {
        ++i;
      } else if (c == '"') {
        in_string = false;
      }
    } else if (c == '"') {
      in_string = true;
    } else if (c == '[' || c == '{') {
      if (++depth > max_depth) return true;
    } else if ((c == ']' || c == '}') && depth > 0) {
      --depth;
    }
  }
  return false;
}

}  // namespace portico::base
