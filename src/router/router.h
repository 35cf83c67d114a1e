// The route matcher. Built once per config snapshot (off the worker threads) from the validated routes, then
// immutable and shared by every worker without locks. Matching cost grows with the length of the path, not
// with the number of routes: the Host picks host groups through a hash table (exact hosts, `*.suffix`
// wildcards, and the routes without hosts); in each group exact paths are one hash probe, and `/prefix/*`
// and `:param` uris live in a tree of '/'-separated segments whose static edges are hash probes too. Methods,
// remote_addrs, vars and priority then decide among the few candidates found. Design: src/router/README.md.
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"
#include "http/message.h"
#include "router/ip_address.h"

namespace portico::router {

// What the matcher looks at. Views point into the request's buffers; nothing is copied.
struct MatchRequest {
  http::Method method = http::Method::GET;
  std::string_view method_text;  // as received; when empty, the name of `method` is used
  std::string_view host;         // Host without port, any case; a trailing dot is ignored. A host
                                 // over 255 bytes matches only routes without hosts
  std::string_view path;         // normalized path (see http/path.h), no query; must start with '/'
                                 // to match anything
  std::string_view query;        // raw query string, without '?'
  std::string_view target;       // raw request-target (for the `request_uri` var)
  const http::MessageHead* head = nullptr;  // headers and cookies for `vars`; may be null in tests
  IpAddress client;                         // peer address, for remote_addrs and `remote_addr`
  int status = 0;  // the response status, for a plugin's response-phase condition (`status`); 0 when routing
  bool tls = false;  // the client connection is TLS: `scheme` is "https"
};

// One request variable by its APISIX name ("uri", "request_uri", "host", "remote_addr", "request_method",
// "scheme", "args", "http_<header>", "arg_<query arg>", "cookie_<name>"; see vars.h for the exact rules),
// resolved once when a snapshot is built and read per request. The router's `vars` conditions and the
// consistent-hash key of an upstream read variables through the same code. Immutable; any thread.
class RequestVar {
 public:
  RequestVar() = default;  // always missing
  explicit RequestVar(std::string_view name);

  // The variable's value for `request`, or false when it is missing. A decoded query argument points into
  // a thread-local buffer that the next lookup on this thread may reuse.
  bool get(const MatchRequest& request, std::string_view& out) const;

 private:
  uint8_t source_ = 0xff;  // detail::CompiledExpr::Source; 0xff = missing
  std::string name_;
};

// A `vars` condition outside routing (response-rewrite's `vars`): every expression must hold, read with the
// router's own semantics (vars.h), `status` included when MatchRequest::status is set. Compiled once when a
// snapshot is built; immutable; matches() is thread-safe and allocation-free, like Router::match.
class VarsCondition {
 public:
  // Null with `error` set when an expression does not compile (the config validator refuses those first).
  static std::unique_ptr<VarsCondition> compile(const std::vector<config::VarExpr>& vars, std::string* error);
  ~VarsCondition();

  bool matches(const MatchRequest& request) const;

 private:
  VarsCondition();
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Where a match ranks among every candidate of a request (priority, then path and host specificity, then
// position), for merging the results of two routers: a larger rank wins. `order` holds the inverted route
// index, which only orders routes of the same router.
struct MatchRank {
  uint64_t priority_and_path = 0;
  uint32_t host = 0;
  uint32_t order = 0;

  // Compares everything but the position: routes of different routers tie here.
  bool beats_ignoring_order(const MatchRank& other) const {
    return priority_and_path != other.priority_and_path ? priority_and_path > other.priority_and_path
                                                        : host > other.host;
  }
  bool ties_ignoring_order(const MatchRank& other) const {
    return priority_and_path == other.priority_and_path && host == other.host;
  }
};

// A set of route indices (bit i = route i), e.g. the routes of one router that another now overrides.
struct RouteBits {
  const uint64_t* words = nullptr;
  size_t size = 0;  // number of words
  bool contains(uint32_t route) const {
    const size_t w = route >> 6;
    return w < size && (words[w] >> (route & 63) & 1) != 0;
  }
};

class Router {
 public:
  // Builds the matcher over `config.routes` (disabled routes, status 0, are left out). A route without hosts
  // inherits its service's `hosts`. Regexes are compiled here; the config was validated before, so a failure
  // here is a bug and is reported through `error`, returning null. The router keeps no reference to
  // `config`. A route without uris never matches. Semantics of uris, hosts and vars: src/router/README.md.
  static std::unique_ptr<Router> build(const config::Config& config, std::string* error);
  virtual ~Router() = default;

  // Returns the index in config.routes of the best matching route, or -1. Among matches the highest
  // `priority` wins; ties go to the more specific path (exact > longer prefix/param), then to the more
  // specific host (exact > longer `*.` wildcard suffix > no host), then to the route listed first.
  // Thread-safe (const, no mutable state) and allocation-free once warm: regex match data and decoded query
  // values use per-thread scratch, allocated on a thread's first use (the latter grown for a longer value).
  int match(const MatchRequest& request) const { return match(request, RouteBits{}, nullptr); }

  // As above, leaving out the routes in `excluded`; `rank` (if not null) receives the winner's rank.
  virtual int match(const MatchRequest& request, RouteBits excluded, MatchRank* rank) const = 0;

  // Number of routes in the matcher (the enabled ones).
  virtual size_t route_count() const = 0;
};

// Which of a matched route's `uris` and `hosts` (its own, else its service's) the request matched through:
// APISIX's matched_uri and matched_host, for logs and metrics. The most specific one matching `path` (the
// normalized path) or `host` (the Host without port, any case), as match() ranks them; a single entry is
// returned without a check (the route matched through it), none gives "". Any thread; allocation-free once a
// thread has parsed a pattern with as many segments.
std::string_view matched_uri(std::span<const std::string> uris, std::string_view path);
std::string_view matched_host(std::span<const std::string> hosts, std::string_view host);

// Where in `path` the trailing `*` of the uri pattern `uri` starts its match (APISIX's `:ext` is
// path.substr of it), or npos when `uri` has no wildcard or does not match `path`. Parameter segments
// ("/g/:tenant/*") are matched as the router does, so the offset is right whatever they captured. Any
// thread; allocation-free once a thread has parsed a pattern with as many segments.
size_t star_match_offset(std::string_view uri, std::string_view path);

}  // namespace portico::router
