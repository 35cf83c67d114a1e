// The Admin API resource kinds and what differs between them: the URL / etcd key segment, the body field that
// names a resource (`id`, or `username` for consumers), and whether POST may invent an id. Credentials
// (APISIX 3.x) live below their consumer, `<prefix>/consumers/<username>/credentials/<id>`, and are known in
// the copy and to data planes by their full id "<username>/credentials/<id>" (config/validate.h). Constant
// data.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "config/validate.h"

namespace portico::controlplane {

// In sync::kKindNames order: a Kind's index is its kind index in the sync protocol.
enum class Kind { routes, services, upstreams, consumers, ssls, global_rules, plugin_configs, credentials };

struct KindInfo {
  Kind kind;
  std::string_view name;      // "routes": URL segment and etcd key segment
  std::string_view noun;      // "route": in messages
  std::string_view id_field;  // "id", or "username" for consumers
  bool post_allowed;          // POST with a server-made id
  bool nested = false;  // lives below another resource (credentials): not a top-level URL or key segment
};

inline constexpr std::array<KindInfo, 8> kKinds = {{
    {Kind::routes, "routes", "route", "id", true},
    {Kind::services, "services", "service", "id", true},
    {Kind::upstreams, "upstreams", "upstream", "id", true},
    {Kind::consumers, "consumers", "consumer", "username", false},
    {Kind::ssls, "ssls", "ssl", "id", true},
    {Kind::global_rules, "global_rules", "global rule", "id", false},
    {Kind::plugin_configs, "plugin_configs", "plugin config", "id", true},
    {Kind::credentials, "credentials", "credential", "id", false, true},
}};

inline constexpr size_t kKindCount = kKinds.size();

inline const KindInfo& info(Kind k) {
  return kKinds[static_cast<size_t>(k)];
}

// "routes" -> Kind::routes; false for any other segment (and for nested kinds).
inline bool kind_of(std::string_view name, Kind& out) {
  for (const KindInfo& k : kKinds) {
    if (k.name == name && !k.nested) {
      out = k.kind;
      return true;
    }
  }
  return false;
}

// APISIX's id rule: 1..64 characters of [a-zA-Z0-9-_.], except "." and ".." (stricter than APISIX): an id is
// a segment of etcd keys and of URLs, where those two mean "here" and "the parent" (config::read_id agrees).
inline bool valid_id(std::string_view id) {
  return config::valid_id_text(id);
}
inline constexpr std::string_view kIdRule = "1 to 64 characters of a-z A-Z 0-9 - _ . (not \".\" or \"..\")";

// A non-negative decimal of at most 18 digits (no sign, no spaces): revisions, pages, seconds.
inline bool parse_decimal(std::string_view text, int64_t& out) {
  if (text.empty() || text.size() > 18) return false;
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

}  // namespace portico::controlplane
