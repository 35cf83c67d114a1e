// Private to src/config. Syntax front-ends: turn YAML or JSON text into TreeBuilder events. Each returns
// false after a syntax error, which it reports with an empty path and a reason giving line and column; it
// also returns (true) early when the builder is stopped because the error list is full.
#pragma once

#include <string_view>

#include "config/tree_builder.h"
#include "config/validate.h"

namespace portico::config::detail {

// YAML 1.2 with the core schema for plain scalars: `80` is an integer, `"80"` a string, `true`/`false`
// booleans, `~`/`null`/empty null, and every other plain scalar a string (YAML 1.1's yes/no/on/off stay
// strings). Anchors, aliases and `<<` merge keys are supported; a second document is an error.
bool read_yaml(std::string_view text, TreeBuilder& builder, Errors& errors);

// RFC 8259 JSON.
bool read_json(std::string_view text, TreeBuilder& builder, Errors& errors);

}  // namespace portico::config::detail
