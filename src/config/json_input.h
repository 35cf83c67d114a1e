// The one entry point for JSON text that comes from outside the process and is turned into a tree: Admin API
// request bodies, values read back from etcd, resources in a data plane's delta. It is the file loader's
// reader (config/json_reader.cc + TreeBuilder), so the same text is accepted or refused the same way whether
// it arrives in a file, in a request or from etcd. Stateless free functions; any thread may call them.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "base/json_limits.h"
#include "config/validate.h"

namespace portico::config {

// How deep a resource may nest, counting its own object as level 1 (base/json_limits.h holds the number, for
// sync too). The deepest legitimate resource nests about 6 levels (route > upstream > checks > active >
// healthy > http_statuses); APISIX's logical `vars` expressions, which nest, stay far below this too.
// nlohmann's parser and destructor are iterative, but copying, dumping, comparing and merging a tree recurse
// once per level, so no tree deeper than this is ever built from untrusted text. The file loader applies the
// same bound to each resource of a document (counting from the resource, not from the document's root), so
// what the Admin API accepts, a data plane loads.
inline constexpr size_t kMaxNesting = base::kMaxJsonNesting;

// Parses `text` as one JSON value (RFC 8259). Refuses it (nullopt, with errors added) when:
// - it is not JSON: one error at `path_prefix` itself, "invalid JSON at line L, column C: ...";
// - an object repeats a key: `labels: duplicate key "a"` (the first one is not silently overwritten);
// - it nests deeper than kMaxNesting: `labels[0][0]...: nested deeper than 64 levels` (what is deeper is
//   skipped while parsing, never built).
// Error paths start with `path_prefix` ("" gives "upstream.nodes"; "routes/r1" gives "routes/r1.upstream").
std::optional<nlohmann::json> parse_json(std::string_view text, Errors& errors,
                                         std::string_view path_prefix = {});

// Whether `value` nests deeper than `max_depth` (a scalar is level 0, an empty or flat container level 1).
// Recursion stops at max_depth + 1, so it is safe on any tree. For trees built in memory from parsed pieces
// (a PATCH at a sub-path), whose depth is the sum of the pieces'.
bool nested_deeper_than(const nlohmann::json& value, size_t max_depth);

}  // namespace portico::config
