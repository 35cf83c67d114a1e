// Loads and validates a declarative configuration (APISIX standalone shape: top-level `routes`, `services`,
// `upstreams`, `consumers`, `ssls`, `global_rules`, `plugin_configs` lists, each item with an `id`, or a
// `username` for consumers). Validation is all-or-nothing: either every resource is valid and
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
  Config config;  // meaningful only when ok
  // At most 20 (kMaxErrors in validate.h); non-empty when !ok. Order: each resource's errors in document
  // order, then cross-resource ones (duplicate ids, dangling references), then top-level ones.
  std::vector<FieldError> errors;
  bool errors_truncated = false;  // more errors were found than `errors` holds
  std::string content_hash;       // hex SHA-256 of the raw bytes loaded (also when !ok; empty if unreadable)

  // "file: routes[3].upstream.nodes: must be ...; file: ..." (file omitted when empty; an error without a
  // path is "file: reason"); one line, entries joined by "; ". Empty when there are no errors.
  std::string describe(std::string_view file = {}) const;
};

enum class Format { yaml, json };

// YAML must end with a line `#END` (as APISIX requires), so a half-written file is never applied; a YAML file
// holding only comments and `#END` is a valid, empty configuration.
// `whole_document_rules`: also the rules that span resources the Admin API does not check on write
// (limit-count's `group` configurations must agree): on for a file, which is accepted or refused as a whole;
// off for the etcd-backed roles' documents, where one resource must never make everything refused.
LoadResult parse_text(std::string_view text, Format format, bool whole_document_rules = true);

// Reads `path`; the format follows the extension (.json = JSON, anything else = YAML).
LoadResult load_file(const std::string& path);

}  // namespace portico::config
