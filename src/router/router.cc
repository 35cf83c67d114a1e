// Router: host groups -> (exact-path hash table | per-group uri radix tree) -> candidates ordered by key.
// See README.md in this directory for the design and the ordering rules.
#include "router/router.h"

#include <algorithm>
#include <unordered_map>
#include <utility>
#include <vector>

#include "router/hash.h"
#include "router/uri_tree.h"
#include "router/vars.h"

namespace portico::router {

namespace {

using detail::Cand;
using detail::CompiledExpr;
using detail::FlatMap;
using detail::Key;
using detail::kNone;
using detail::TreeBuilder;
using detail::UriPattern;
using detail::UriTree;
using detail::VarContext;

// Longest host the host tables are consulted for (DNS names are at most 253 bytes). A longer Host matches
// only routes without hosts.
constexpr size_t kMaxHost = 255;
constexpr uint32_t kExactHostSpec = 0xFFFF;

inline char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

std::string_view method_name(http::Method m) {
  switch (m) {
    case http::Method::GET:
      return "GET";
    case http::Method::HEAD:
      return "HEAD";
    case http::Method::POST:
      return "POST";
    case http::Method::PUT:
      return "PUT";
    case http::Method::DELETE:
      return "DELETE";
    case http::Method::CONNECT:
      return "CONNECT";
    case http::Method::OPTIONS:
      return "OPTIONS";
    case http::Method::TRACE:
      return "TRACE";
    case http::Method::PATCH:
      return "PATCH";
    case http::Method::OTHER:
      break;
  }
  return {};
}

// Conditions of a route beyond path, host and method bits, as ranges into the router's flat arrays.
struct CompiledRoute {
  uint32_t cidr_off = 0, cidr_n = 0;
  uint32_t expr_off = 0, expr_n = 0;
  uint32_t method_off = 0, method_n = 0;  // methods without a MethodBits bit
};

// The routes sharing one host key: an exact host, one wildcard suffix, or "any host". Stored in the host
// table's slot, so finding the host yields the group without another cache miss.
struct Group {
  uint32_t id = 0;                 // tag of the group's entries in paths_
  uint32_t tree_root = kNone;      // root node in tree_, kNone if the group has no prefix/param uri
  int32_t exact_max_priority = 0;  // with has_exact: highest priority among its exact paths
  int32_t tree_max_priority = 0;   // with tree_root: highest priority in the tree
  uint16_t host_spec = 0;
  bool has_exact = false;  // the group has entries in paths_
};

// An exact (group, path): its best candidate inline, the others (rare) in exact_cands_.
struct ExactEntry {
  Cand first;
  uint32_t more_off = 0;
  uint32_t more_n = 0;
};

class RouterImpl final : public Router {
 public:
  using Router::match;
  bool build(const config::Config& config, std::string* error);
  int match(const MatchRequest& request, RouteBits excluded, MatchRank* rank) const override;
  size_t route_count() const override { return route_count_; }

 private:
  bool accept(const Cand& c, uint16_t method_bits, std::string_view method, VarContext& ctx) const;

  std::vector<CompiledRoute> routes_;  // indexed like config.routes
  std::vector<Cidr> cidrs_;
  std::vector<CompiledExpr> exprs_;
  std::vector<std::string> extra_methods_;

  FlatMap<Group> hosts_;  // "api.example.com" -> group, ".example.com" (from "*.example.com") -> group
  Group any_;             // routes without hosts (valid if has_any_)
  bool has_any_ = false;
  uint64_t wildcard_lens_[4] = {0, 0, 0, 0};  // bit n set: some wildcard suffix is n bytes long
  bool has_exact_hosts_ = false;
  bool has_wildcards_ = false;
  bool has_exact_paths_ = false;

  FlatMap<ExactEntry> paths_;  // (group id, exact path) -> candidates
  std::vector<Cand> exact_cands_;
  UriTree tree_;
  size_t route_count_ = 0;
};

bool RouterImpl::build(const config::Config& config, std::string* error) {
  auto fail = [&](size_t route, const std::string& why) {
    if (error != nullptr) *error = "route " + config.routes[route].id + ": " + why;
    return false;
  };

  std::unordered_map<std::string_view, const config::Service*> services;
  for (const config::Service& s : config.services) services.emplace(s.id, &s);

  struct HostGroupKey {
    uint32_t group;
    uint32_t spec;
  };
  std::vector<Group> groups;
  std::unordered_map<std::string, uint32_t> group_of_key;  // "" = any host
  auto group_for = [&](const std::string& key, uint32_t spec) {
    auto [it, inserted] = group_of_key.emplace(key, static_cast<uint32_t>(groups.size()));
    if (inserted) {
      groups.emplace_back();
      groups.back().id = it->second;
      groups.back().host_spec = static_cast<uint16_t>(spec);
    }
    return it->second;
  };

  struct ExactPath {
    uint64_t hash;
    uint32_t group;
    std::string_view path;
    Cand cand;
  };
  std::vector<ExactPath> exact;
  TreeBuilder tree(tree_);
  UriPattern pattern;
  std::vector<HostGroupKey> route_groups;
  std::string host_key;

  routes_.resize(config.routes.size());
  for (size_t i = 0; i < config.routes.size(); ++i) {
    const config::Route& route = config.routes[i];
    if (!route.enabled) continue;
    ++route_count_;
    CompiledRoute& cr = routes_[i];

    uint16_t methods = 0;
    cr.method_off = static_cast<uint32_t>(extra_methods_.size());
    for (const std::string& m : route.methods) {
      uint16_t bit = detail::method_bit(m);
      if (bit == 0) {
        extra_methods_.push_back(m);
        bit = detail::kMethodExtra;
      }
      methods |= bit;
    }
    cr.method_n = static_cast<uint32_t>(extra_methods_.size()) - cr.method_off;

    cr.cidr_off = static_cast<uint32_t>(cidrs_.size());
    for (const std::string& a : route.remote_addrs) {
      Cidr c;
      if (!Cidr::parse(a, c)) return fail(i, "bad remote_addrs entry \"" + a + "\"");
      cidrs_.push_back(c);
    }
    cr.cidr_n = static_cast<uint32_t>(cidrs_.size()) - cr.cidr_off;

    cr.expr_off = static_cast<uint32_t>(exprs_.size());
    for (const config::VarExpr& v : route.vars) {
      exprs_.emplace_back();
      std::string why;
      if (!detail::compile_expr(v, exprs_.back(), &why)) return fail(i, why);
    }
    cr.expr_n = static_cast<uint32_t>(exprs_.size()) - cr.expr_off;
    uint16_t flags = cr.cidr_n != 0 || cr.expr_n != 0 ? detail::kCandChecks : 0;

    // Hosts: the route's own, else its service's; none = any host.
    const std::vector<std::string>* hosts = &route.hosts;
    if (hosts->empty() && !route.service_id.empty()) {
      auto it = services.find(route.service_id);
      if (it != services.end()) hosts = &it->second->hosts;
    }
    route_groups.clear();
    for (const std::string& h : *hosts) {
      host_key.clear();
      for (char c : h) host_key.push_back(lower(c));
      if (host_key.size() > 1 && host_key.back() == '.') host_key.pop_back();
      uint32_t spec;
      if (host_key == "*") {
        host_key.clear();
        spec = 0;
      } else if (host_key.size() > 2 && host_key[0] == '*' && host_key[1] == '.') {
        host_key.erase(0, 1);  // ".example.com"
        spec = static_cast<uint32_t>(host_key.size());
      } else {
        spec = kExactHostSpec;
      }
      route_groups.push_back({group_for(host_key, spec), spec});
    }
    if (hosts->empty()) route_groups.push_back({group_for(std::string(), 0), 0});

    for (const std::string& uri : route.uris) {
      if (!pattern.parse(uri)) {
        return fail(i, "uri \"" + uri + "\" must start with '/' and have segments of at most 65535 bytes");
      }
      for (const HostGroupKey& hg : route_groups) {
        Cand cand{detail::make_key(route.priority, pattern.path_spec, hg.spec, static_cast<uint32_t>(i)),
                  static_cast<uint32_t>(i), methods, flags};
        Group& g = groups[hg.group];
        if (pattern.exact) {
          exact.push_back({detail::hash_bytes(uri), hg.group, uri, cand});
          if (!g.has_exact || route.priority > g.exact_max_priority) g.exact_max_priority = route.priority;
          g.has_exact = true;
        } else {
          if (g.tree_root == kNone) {
            g.tree_root = tree.new_root();
            g.tree_max_priority = route.priority;
          }
          tree.add(g.tree_root, pattern, cand);
          g.tree_max_priority = std::max(g.tree_max_priority, route.priority);
        }
      }
    }
  }

  tree.finish();

  // Host table.
  size_t host_keys = 0;
  for (const auto& [key, group] : group_of_key) host_keys += key.empty() ? 0 : 1;
  hosts_.reserve(host_keys);
  for (const auto& [key, group] : group_of_key) {
    if (key.empty()) {
      any_ = groups[group];
      has_any_ = true;
      continue;
    }
    hosts_.insert(detail::hash_bytes(key), key, 0) = groups[group];
    if (key[0] == '.') {
      has_wildcards_ = true;
      if (key.size() <= kMaxHost) wildcard_lens_[key.size() >> 6] |= 1ull << (key.size() & 63);
    } else {
      has_exact_hosts_ = true;
    }
  }
  hosts_.shrink();

  // Exact paths: equal (group, path) entries become one slot whose candidates are sorted best first.
  std::sort(exact.begin(), exact.end(), [](const ExactPath& a, const ExactPath& b) {
    if (a.hash != b.hash) return a.hash < b.hash;
    if (a.group != b.group) return a.group < b.group;
    if (a.path != b.path) return a.path < b.path;
    return a.cand.key > b.cand.key;
  });
  size_t slots = 0;
  for (size_t i = 0; i < exact.size(); ++i) {
    if (i == 0 || exact[i].group != exact[i - 1].group || exact[i].path != exact[i - 1].path) ++slots;
  }
  paths_.reserve(slots);
  for (size_t i = 0; i < exact.size();) {
    size_t j = i + 1;
    while (j < exact.size() && exact[j].group == exact[i].group && exact[j].path == exact[i].path) ++j;
    ExactEntry& e =
        paths_.insert(detail::hash_with_tag(exact[i].hash, exact[i].group), exact[i].path, exact[i].group);
    e.first = exact[i].cand;
    e.more_off = static_cast<uint32_t>(exact_cands_.size());
    e.more_n = static_cast<uint32_t>(j - i - 1);
    for (size_t k = i + 1; k < j; ++k) exact_cands_.push_back(exact[k].cand);
    i = j;
  }
  paths_.shrink();
  exact_cands_.shrink_to_fit();
  has_exact_paths_ = !exact.empty();
  return true;
}

bool RouterImpl::accept(const Cand& c, uint16_t method_bits, std::string_view method, VarContext& ctx) const {
  if (c.methods != 0 && (c.methods & method_bits) == 0) {
    if ((c.methods & detail::kMethodExtra) == 0 || method_bits != 0) return false;
    const CompiledRoute& r = routes_[c.route];
    bool found = false;
    for (uint32_t k = 0; k < r.method_n && !found; ++k) found = extra_methods_[r.method_off + k] == method;
    if (!found) return false;
  }
  if ((c.flags & detail::kCandChecks) == 0) return true;
  const CompiledRoute& r = routes_[c.route];
  if (r.cidr_n != 0) {
    bool in = false;
    for (uint32_t k = 0; k < r.cidr_n && !in; ++k) in = cidrs_[r.cidr_off + k].contains(ctx.request->client);
    if (!in) return false;
  }
  for (uint32_t k = 0; k < r.expr_n; ++k) {
    if (!detail::eval_expr(exprs_[r.expr_off + k], ctx)) return false;
  }
  return true;
}

int RouterImpl::match(const MatchRequest& request, RouteBits excluded, MatchRank* rank) const {
  const std::string_view path = request.path;
  // The exact-path probe of the any-host group does not depend on the host lookups: start loading its slot
  // now so the two cache misses overlap.
  uint64_t path_hash = 0;
  if (has_exact_paths_) {
    path_hash = detail::hash_bytes(path);
    if (has_any_ && any_.has_exact) paths_.prefetch(detail::hash_with_tag(path_hash, any_.id));
  }

  // Host, lower-cased on the stack.
  char host_buf[kMaxHost];
  std::string_view host = request.host;
  if (!host.empty() && host.back() == '.') host.remove_suffix(1);
  const size_t host_len = host.size();
  const bool host_fits = host_len <= kMaxHost;
  if (host_fits) {
    for (size_t i = 0; i < host_len; ++i) host_buf[i] = lower(host[i]);
    host = std::string_view(host_buf, host_len);
  }

  // Host groups, most specific first: exact host, wildcard suffixes from longest to shortest, any host.
  const Group* groups[kMaxHost + 2];
  size_t group_n = 0;
  if (host_fits && host_len != 0) {
    if (has_exact_hosts_) {
      const Group* g = hosts_.find(detail::hash_bytes(host_buf, host_len), host_buf, host_len, 0);
      if (g != nullptr) groups[group_n++] = g;
    }
    if (has_wildcards_) {
      for (size_t i = 1; i < host_len; ++i) {
        if (host_buf[i] != '.') continue;
        size_t n = host_len - i;
        if ((wildcard_lens_[n >> 6] >> (n & 63) & 1) == 0) continue;
        const Group* g = hosts_.find(detail::hash_bytes(host_buf + i, n), host_buf + i, n, 0);
        if (g != nullptr) groups[group_n++] = g;
      }
    }
  }
  if (has_any_) groups[group_n++] = &any_;
  if (group_n == 0) return -1;

  const std::string_view method =
      request.method_text.empty() ? method_name(request.method) : request.method_text;
  const uint16_t method_bits = detail::method_bit(method);
  VarContext ctx;
  ctx.request = &request;
  ctx.host = host;
  ctx.method = method;

  Key best;
  int best_route = -1;
  auto visit = [&](const Cand* c, uint32_t n) {
    for (uint32_t i = 0; i < n; ++i) {
      if (!(c[i].key > best)) return;  // lists are sorted: nothing further can win
      if (excluded.size != 0 && excluded.contains(c[i].route)) continue;
      if (accept(c[i], method_bits, method, ctx)) {
        best = c[i].key;
        best_route = static_cast<int>(c[i].route);
        return;
      }
    }
  };

  if (has_exact_paths_) {
    const uint32_t exact_spec = detail::path_specificity(true, path.size(), false, path.size());
    for (size_t k = 0; k < group_n; ++k) {
      const Group& g = *groups[k];
      // Skip the probe when even the group's best possible exact candidate could not beat the best so far.
      if (!g.has_exact || !(detail::make_key(g.exact_max_priority, exact_spec, g.host_spec, 0) > best))
        continue;
      const ExactEntry* e =
          paths_.find(detail::hash_with_tag(path_hash, g.id), path.data(), path.size(), g.id);
      if (e != nullptr) {
        visit(&e->first, 1);
        if (e->more_n != 0) visit(exact_cands_.data() + e->more_off, e->more_n);
      }
    }
  }
  // Skip a tree when no candidate in it could beat the best so far (a bound on its keys: highest priority,
  // the most specific non-exact path).
  constexpr uint32_t kBestPatternSpec = 0x7FFFFFFF;
  for (size_t k = 0; k < group_n; ++k) {
    const Group& g = *groups[k];
    if (g.tree_root != kNone &&
        detail::make_key(g.tree_max_priority, kBestPatternSpec, g.host_spec, 0) > best) {
      tree_.walk(g.tree_root, path, visit);
    }
  }
  if (rank != nullptr && best_route >= 0) {
    rank->priority_and_path = best.hi;
    rank->host = static_cast<uint32_t>(best.lo >> 32);
    rank->order = static_cast<uint32_t>(best.lo);
  }
  return best_route;
}

}  // namespace

std::unique_ptr<Router> Router::build(const config::Config& config, std::string* error) {
  auto router = std::make_unique<RouterImpl>();
  if (!router->build(config, error)) return nullptr;
  return router;
}

}  // namespace portico::router
