// Loads and validates a declarative configuration (APISIX standalone shape: top-level `routes`, `services`,
// `upstreams` lists, each item with an `id`). Validation is all-or-nothing: either every resource is valid and
// every reference resolves, or the result carries errors naming the path of each offending field
// (e.g. `routes[3].upstream.nodes`) and no Config. Stateless free functions; any thread may call them.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"

namespace portico::config {

struct FieldError {
  std::string path;    // "routes[3].upstream.nodes"; empty for document-level errors
  std::string reason;  // "must be a non-empty list of nodes"
};

struct LoadResult {
  bool ok = false;
  Config config;                  // meaningful only when ok
  std::vector<FieldError> errors;  // at most ~20, in document order; non-empty when !ok
  std::string content_hash;       // hex SHA-256 of the raw bytes loaded

  // "file: routes[3].upstream.nodes: must be ...; file: ..." (file omitted when empty).
  std::string describe(std::string_view file = {}) const;
};

enum class Format { yaml, json };

// YAML must end with a line `#END` (as APISIX requires), so a half-written file is never applied.
LoadResult parse_text(std::string_view text, Format format);

// Reads `path`; the format follows the extension (.json = JSON, anything else = YAML).
LoadResult load_file(const std::string& path);

}  // namespace portico::config
