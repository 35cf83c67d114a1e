// Private to src/config. The location of a field inside a document, as a chain of stack-allocated links
// (parent pointer + key or index), so validating a valid resource never allocates for paths: the text
// "routes[3].upstream.nodes[1].port" is built only when an error is reported.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace portico::config::detail {

// Appends `.key` (or `key` at the start); keys that are not made of [A-Za-z0-9_-] are written `["key"]`.
void append_key(std::string& out, std::string_view key);
void append_index(std::string& out, size_t index);

class Path {
 public:
  // The root; `prefix` (e.g. "routes[3]", or empty) is written verbatim and must outlive the Path.
  explicit Path(std::string_view prefix) : text_(prefix) {}

  // Children refer to their parent, which must outlive them (natural for recursive validation).
  Path key(std::string_view key) const { return Path(this, key, 0, Kind::key); }
  Path index(size_t index) const { return Path(this, {}, index, Kind::index); }

  std::string str() const;

 private:
  enum class Kind { root, key, index };
  Path(const Path* parent, std::string_view text, size_t index, Kind kind)
      : parent_(parent), text_(text), index_(index), kind_(kind) {}
  void append_to(std::string& out) const;

  const Path* parent_ = nullptr;
  std::string_view text_;
  size_t index_ = 0;
  Kind kind_ = Kind::root;
};

}  // namespace portico::config::detail
