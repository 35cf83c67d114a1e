// A set of configuration resources as canonical JSON text, keyed by (kind, id): what a control plane exports
// and what a data plane holds and caches. Canonical means nlohmann's compact dump (object keys sorted), so
// the same resource has the same bytes on every process, and the content hash below is comparable across
// control planes, data planes, cache files and S3 objects.
//
// Value type; not thread-safe (copy it to hand it to another thread).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portico::sync {

// Resource kinds in their canonical order (the order of the document and of the hash).
inline constexpr std::array<std::string_view, 7> kKindNames = {
    "routes", "services", "upstreams", "consumers", "ssls", "global_rules", "plugin_configs"};

// Index of `kind` in kKindNames, or -1.
int kind_index(std::string_view kind);

// One change between two states: `value` empty = the resource was removed.
struct ResourceChange {
  std::string kind;
  std::string id;
  std::optional<std::string> value;  // canonical JSON text
};

class ResourceSet {
 public:
  // `value` must already be canonical (canonicalize() below); `kind` one of kKindNames (else ignored, false).
  bool put(std::string_view kind, std::string id, std::string value);
  bool erase(std::string_view kind, std::string_view id);
  void apply(const std::vector<ResourceChange>& changes);
  void clear();

  size_t size() const;
  const std::string* find(std::string_view kind, std::string_view id) const;

  // Lower-case hex SHA-256 over every resource, kinds in kKindNames order, ids in byte order, each fed as
  // kind '\0' id '\0' value '\0'. An empty set hashes the empty input.
  std::string content_hash() const;

  // The standalone-shaped JSON document {"routes":[...],"services":[...],...} (every kind present, possibly
  // empty), values verbatim in hash order. config::parse_text(document, Format::json) loads it.
  std::string document() const;

  // Parses a document() back. Each item must be an object naming its id (`id`, or `username` for
  // consumers); items are canonicalized. False with `error` on any problem (nothing is kept then).
  static bool from_document(std::string_view text, ResourceSet& out, std::string& error);

  // What turns `from` into `to`: every resource added, changed or removed, in hash order.
  static std::vector<ResourceChange> diff(const ResourceSet& from, const ResourceSet& to);

  bool operator==(const ResourceSet& other) const { return kinds_ == other.kinds_; }

 private:
  std::array<std::map<std::string, std::string, std::less<>>, kKindNames.size()> kinds_;
};

// True when `text` nests arrays/objects deeper than `max_depth`: a lexical scan that skips strings and
// validates nothing. Untrusted JSON is checked before parsing because nlohmann's dump() recurses once per
// level.
bool json_too_deep(std::string_view text, int max_depth);

// Parses JSON text and dumps it canonically; false (out untouched) if it is not valid JSON.
bool canonicalize(std::string_view json_text, std::string& out);

}  // namespace portico::sync
