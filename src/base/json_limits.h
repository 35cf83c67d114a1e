// The nesting bound for JSON (and YAML) that enters the process as configuration: config's strict reader
// (files, Admin API bodies, etcd values, deltas; config/json_input.h) enforces it. Sync checks a looser
// lexical bound (512 for values, 600 for envelopes) before it parses what control planes, caches and S3 send,
// only to keep its own parsing safe: every resource it accepts is then loaded by config, which applies this
// one. Constant data only.
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
