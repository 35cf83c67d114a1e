// Private to src/config. Typed readers for single JSON values and syntax checks shared by the resource
// validators. Every reader reports its own error (at `path`, with a reason naming what was expected and what
// was found) and returns false; on success it writes `out`.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/path.h"
#include "config/validate.h"

namespace portico::config::detail {

using json = nlohmann::json;

inline void fail(Errors& errors, const Path& path, std::string reason) {
  errors.add(path.str(), std::move(reason));
}

// "a string (\"80\")", "an integer (80)", "a list", "a mapping", "null", ...; for "must be X, got Y" reasons.
std::string describe_value(const json& value);
void fail_type(Errors& errors, const Path& path, std::string_view expected, const json& value);

bool read_string(const json& v, const Path& p, Errors& e, std::string& out, bool allow_empty = false);
bool read_bool(const json& v, const Path& p, Errors& e, bool& out);
// Integers; a float with an integral value (5.0) is accepted, as APISIX's JSON schema does.
bool read_int(const json& v, const Path& p, Errors& e, int64_t min, int64_t max, int64_t& out);
bool read_int(const json& v, const Path& p, Errors& e, int min, int max, int& out);
// A duration in seconds: a finite number >= min (> min when `exclusive`) and at most kMaxSeconds.
bool read_seconds(const json& v, const Path& p, Errors& e, double min, bool exclusive, double& out);
// A port: an integer 1..65535 written as an integer (80.0 is refused, unlike other integers: a port is part
// of an address, and a float there is a client bug, not a style).
bool read_port(const json& v, const Path& p, Errors& e, int& out);
// An id: a string of [A-Za-z0-9_.-] (1..64 chars, not "." or "..") or an integer >= 1, normalized to its
// decimal text.
bool read_id(const json& v, const Path& p, Errors& e, std::string& out);
// read_id without reporting; empty when `v` is not a valid id.
std::string peek_id(const json& v);

// `name` (string, 1..256 chars) of routes, services and upstreams.
bool read_name(const json& v, const Path& p, Errors& e, std::string& out);
// `desc`: a string of at most 256 characters (may be empty). `out` may be null (check only).
bool read_desc(const json& v, const Path& p, Errors& e, std::string* out);
// `labels`: a mapping of names to values; a value is a string of 1..256 characters without whitespace, as in
// APISIX. `out` may be null (check only); otherwise it receives the pairs sorted by name.
bool read_labels(const json& v, const Path& p, Errors& e, Labels* out);
// The descriptive fields tolerated on every object: desc, labels, create_time, update_time (name is read by
// the caller where the model keeps it). Returns false when `key` is none of them; otherwise checks the value
// (nothing is kept; a caller that keeps desc or labels reads them first).
bool check_meta_field(std::string_view key, const json& v, const Path& p, Errors& e);

// Reports `key` as unknown, suggesting the closest of `known` when it is a likely typo.
void fail_unknown(Errors& e, const Path& p, std::string_view key, std::span<const std::string_view> known);
inline void fail_unknown(Errors& e, const Path& p, std::string_view key,
                         std::initializer_list<std::string_view> known) {
  fail_unknown(e, p, key, std::span<const std::string_view>(known.begin(), known.size()));
}

// A list of strings: each item read with `read_item` (which reports its own errors); duplicates are errors.
// `min_items` 1 rejects an empty list.
template <typename ReadItem>
bool read_string_list(const json& v, const Path& p, Errors& e, size_t min_items,
                      std::vector<std::string>& out, ReadItem&& read_item);
// Index of the first item equal to an earlier one (and that earlier one in `first`), or -1.
long find_duplicate(const std::vector<std::string>& items, size_t& first);
long find_duplicate(const std::vector<int>& items, size_t& first);

// Syntax checks: each returns an empty string when `text` is fine, else the reason.
std::string check_hostname(std::string_view text);     // DNS name (letters, digits, '-', '_') or IP literal
std::string check_host_pattern(std::string& text);     // lower-cases; adds "*.suffix" wildcards and "[v6]"
std::string check_cidr(std::string_view text);         // "10.0.0.1", "10.0.0.0/8", "::1", "fd00::/8"
std::string check_uri_pattern(std::string_view text);  // "/exact", "/prefix/*", "/users/:id"
std::string check_regex(const std::string& pattern, bool caseless);  // compiles with PCRE2
bool is_ip_literal(std::string_view text);                           // IPv4 or IPv6 (no brackets)

// ---- template implementation ----

template <typename ReadItem>
bool read_string_list(const json& v, const Path& p, Errors& e, size_t min_items,
                      std::vector<std::string>& out, ReadItem&& read_item) {
  if (!v.is_array()) {
    fail_type(e, p, "a list", v);
    return false;
  }
  if (v.size() < min_items) {
    fail(e, p, "must be a non-empty list");
    return false;
  }
  const size_t before = e.total();
  out.clear();
  out.reserve(v.size());
  for (size_t i = 0; i < v.size(); ++i) {
    std::string item;
    if (read_item(v[i], p.index(i), item)) out.push_back(std::move(item));
  }
  if (e.total() != before) return false;
  size_t first = 0;
  long dup = find_duplicate(out, first);
  if (dup >= 0) {
    fail(e, p.index(static_cast<size_t>(dup)),
         "duplicate \"" + out[static_cast<size_t>(dup)] + "\" (already at index " + std::to_string(first) +
             ")");
    return false;
  }
  return true;
}

}  // namespace portico::config::detail
