// Request-path normalization used for route matching (RFC 3986 5.2.4 dot-segment removal, percent-decoding of
// unreserved characters only, so "%2F" stays an encoded slash). Routing on the normalized form closes the
// gap where "/public/../admin" would match a "/public/*" route while the origin serves "/admin".
#pragma once

#include <string>
#include <string_view>

namespace portico::http {

enum class PathStatus { unchanged, normalized, invalid };

// Writes the normalized form of `path` (which must start with '/') into `out` when it differs and returns
// `normalized`; returns `unchanged` (out untouched) when `path` is already normal; `invalid` for a
// malformed percent-escape, an encoded NUL, or a path that is not origin-form.
PathStatus normalize_path(std::string_view path, std::string& out);

}  // namespace portico::http
