// matched_uri / matched_host (router.h): which pattern of a route a request went through, found again after
// the match by testing the route's few patterns against the request, rather than carried out of the matcher
// (whose candidates stay 24 bytes).
#include <cstdint>

#include "router/router.h"
#include "router/uri_tree.h"

namespace portico::router {

namespace {

// The tree's semantics (uri_tree.h) for one pattern. `star_at` (if not null) receives where in `path` the
// wildcard's match starts (after its literal prefix).
bool uri_matches(const detail::UriPattern& p, std::string_view uri, std::string_view path,
                 size_t* star_at = nullptr) {
  if (p.exact) return path == uri;
  if (path.empty() || path[0] != '/') return false;
  size_t pos = 1;
  bool has_next = true;  // a segment starts at pos (possibly empty: "/a/" has "a" and "")
  for (const detail::UriPattern::Segment& s : p.segments) {
    if (!has_next) return false;
    size_t slash = path.find('/', pos);
    size_t end = slash == std::string_view::npos ? path.size() : slash;
    std::string_view seg = path.substr(pos, end - pos);
    if (s.param ? seg.empty() : seg != s.text) return false;
    has_next = slash != std::string_view::npos;
    pos = end + 1;
  }
  if (!p.star) return !has_next;
  if (!has_next || !path.substr(pos).starts_with(p.star_prefix)) return false;
  if (star_at) *star_at = pos + p.star_prefix.size();
  return true;
}

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

bool iequals_suffix(std::string_view host, std::string_view suffix) {
  if (host.size() < suffix.size()) return false;
  host.remove_prefix(host.size() - suffix.size());
  for (size_t i = 0; i < suffix.size(); ++i) {
    if (lower(host[i]) != lower(suffix[i])) return false;
  }
  return true;
}

// The router's host specificity of `pattern` if `host` matches it, else -1: exact > longer `*.` suffix > `*`.
int64_t host_rank(std::string_view pattern, std::string_view host) {
  if (!pattern.empty() && pattern.back() == '.' && pattern.size() > 1) pattern.remove_suffix(1);
  if (pattern == "*") return 0;
  if (pattern.size() > 2 && pattern[0] == '*' && pattern[1] == '.') {
    std::string_view suffix = pattern.substr(1);  // ".example.com": one label at least before it
    return host.size() > suffix.size() && iequals_suffix(host, suffix) ? static_cast<int64_t>(suffix.size())
                                                                       : -1;
  }
  return host.size() == pattern.size() && iequals_suffix(host, pattern) ? INT64_MAX : -1;
}

}  // namespace

std::string_view matched_uri(std::span<const std::string> uris, std::string_view path) {
  if (uris.empty()) return {};
  if (uris.size() == 1) return uris[0];
  thread_local detail::UriPattern pattern;  // its segment vector keeps its capacity
  std::string_view best;
  uint32_t best_spec = 0;
  bool found = false;
  for (const std::string& uri : uris) {
    if (!pattern.parse(uri) || !uri_matches(pattern, uri, path)) continue;
    if (!found || pattern.path_spec > best_spec) {
      best = uri;
      best_spec = pattern.path_spec;
      found = true;
    }
  }
  return best;
}

size_t star_match_offset(std::string_view uri, std::string_view path) {
  thread_local detail::UriPattern pattern;
  size_t at = std::string_view::npos;
  if (!pattern.parse(uri) || !pattern.star || !uri_matches(pattern, uri, path, &at))
    return std::string_view::npos;
  return at;
}

std::string_view matched_host(std::span<const std::string> hosts, std::string_view host) {
  if (hosts.empty()) return {};
  if (hosts.size() == 1) return hosts[0];
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  std::string_view best;
  int64_t best_rank = -1;
  for (const std::string& h : hosts) {
    int64_t rank = host_rank(h, host);
    if (rank > best_rank) {
      best = h;
      best_rank = rank;
    }
  }
  return best;
}

}  // namespace portico::router
