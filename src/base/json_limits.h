// The nesting bound for JSON (and YAML) that enters the process, shared by every subsystem so there is one
// number: config (the strict reader of files, Admin API bodies and etcd values, config/json_input.h) and sync
// (documents and envelopes from control planes, caches and S3, which come before config in the dependency
// order). Constant data only.
#pragma once

#include <cstddef>

namespace portico::base {

// How deep one resource may nest, counting its own object as level 1. The deepest legitimate resource nests
// about 6 levels. nlohmann's parser and destructor are iterative, but copying, dumping, comparing and merging
// a tree recurse once per level, so untrusted text must be refused before such a tree exists.
inline constexpr size_t kMaxJsonNesting = 64;
// A document of resources ({"routes": [resource, ...], ...}) holds each resource two levels down.
inline constexpr size_t kMaxJsonDocumentNesting = kMaxJsonNesting + 2;

}  // namespace portico::base
