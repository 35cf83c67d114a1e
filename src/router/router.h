// The route matcher. Built once per config snapshot (off the worker threads) from the validated routes, then
// immutable and shared by every worker without locks. Matching cost grows with the length of the path, not
// with the number of routes: exact paths and static segments live in a radix tree keyed by path bytes;
// `/prefix/*` routes hang on tree nodes; `:param` segments are tree edges that match one segment. Hosts
// (exact and `*.suffix` wildcards), methods, remote_addrs, vars and priority then decide among the few
// candidates found on the path.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "config/model.h"
#include "http/message.h"
#include "router/ip_address.h"

namespace portico::router {

// What the matcher looks at. Views point into the request's buffers; nothing is copied.
struct MatchRequest {
  http::Method method = http::Method::GET;
  std::string_view method_text;
  std::string_view host;    // Host without port, any case
  std::string_view path;    // normalized path (see http/path.h), no query
  std::string_view query;   // raw query string, without '?'
  std::string_view target;  // raw request-target (for the `request_uri` var)
  const http::MessageHead* head = nullptr;  // headers and cookies for `vars`; may be null in tests
  IpAddress client;         // peer address, for remote_addrs and `remote_addr`
};

class Router {
 public:
  // Builds the matcher over `config.routes` (disabled routes, status 0, are left out). A route without hosts
  // inherits its service's `hosts`. Regexes are compiled here; the config was validated before, so a failure
  // here is a bug and is reported through `error`, returning null.
  static std::unique_ptr<Router> build(const config::Config& config, std::string* error);
  virtual ~Router() = default;

  // Returns the index in config.routes of the best matching route, or -1. Among matches the highest
  // `priority` wins; ties go to the more specific path (exact > longer prefix/param), then to the route
  // listed first. Thread-safe (const, no mutable state).
  virtual int match(const MatchRequest& request) const = 0;

  virtual size_t route_count() const = 0;
};

}  // namespace portico::router
