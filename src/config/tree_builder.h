// Private to src/config. Builds the generic tree (nlohmann::json) from parser events, so the YAML and JSON
// readers share one builder and the validators see the same tree whichever syntax the file used.
//
// Streaming: the items of the lists directly under the root mapping whose key is one of `streamed_sections`
// (the resource lists: routes, services, upstreams, consumers, ...) are handed to the sink as soon as each is
// complete and then dropped, so a 100k-route file is never held as a whole tree; the root keeps an empty list
// in their place.
//
// Also: duplicate mapping keys are errors (JSON and YAML alike), nesting is capped at `max_depth` levels (the
// root container is level 1, and so is each item of a streamed list; deeper containers are skipped, never
// built, and reported once), and YAML
// anchors, aliases and merge keys (`<<`) are resolved here.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/validate.h"

namespace portico::config::detail {

class TreeBuilder {
 public:
  using Sink = std::function<void(std::string_view section, size_t index, const nlohmann::json& item)>;
  // `path_prefix` starts every error path (e.g. "routes/r1"); it must outlive the builder.
  TreeBuilder(Errors& errors, std::vector<std::string_view> streamed_sections, Sink sink, size_t max_depth,
              std::string_view path_prefix = {});

  // Events, in document order. `anchor` (YAML) is 0 for none; aliases refer to earlier anchors.
  void begin_map(uint64_t anchor = 0);
  void begin_list(uint64_t anchor = 0);
  void end();  // of the innermost map or list
  // The key of the next value in the innermost map. `merge`: a YAML `<<` merge key.
  void key(std::string key, bool merge = false);
  void value(nlohmann::json v, uint64_t anchor = 0);
  void alias(uint64_t anchor);

  // An error at the slot the next value goes to (for readers: bad tags, complex keys, ...).
  void fail_here(std::string reason);
  // True once the error list has overflowed: readers should stop parsing, nothing more can be reported.
  bool stopped() const { return errors_.truncated(); }
  // What every error path starts with (empty for a file: document-level errors have an empty path).
  std::string_view path_prefix() const { return path_prefix_; }
  // The path of the slot the next value goes to, e.g. "routes[2].uri".
  std::string path() const;

  bool complete() const { return done_ && stack_.empty(); }
  nlohmann::json take_root() { return std::move(root_); }

 private:
  struct Frame {
    nlohmann::json value;                // the map or list being built
    std::string key;                     // maps: key of the value being built
    bool merge = false;                  // maps: the pending key is `<<`
    bool skip = false;                   // maps: the pending key is a duplicate, drop its value
    std::vector<nlohmann::json> merges;  // maps: `<<` sources, applied at end()
    uint64_t anchor = 0;
    size_t height = 1;      // levels of containers in `value`, itself included
    bool streamed = false;  // lists: items go to the sink
    std::string_view section;
    size_t count = 0;  // lists: items so far
  };

  void begin(nlohmann::json container, uint64_t anchor);
  // `height`: levels of containers in `v` (0 for a scalar).
  void deliver(nlohmann::json v, uint64_t anchor, size_t height);
  // The level a container beginning now would have.
  size_t next_level() const;
  void apply_merges(Frame& frame);

  Errors& errors_;
  const size_t max_depth_;
  const std::string_view path_prefix_;
  std::vector<std::string_view> streamed_sections_;
  Sink sink_;
  std::vector<Frame> stack_;
  std::unordered_map<uint64_t, std::pair<nlohmann::json, size_t>> anchors_;  // value and its height
  nlohmann::json root_;
  bool done_ = false;
  size_t too_deep_ = 0;  // > 0: inside containers beyond max_depth_, which are skipped
};

}  // namespace portico::config::detail
