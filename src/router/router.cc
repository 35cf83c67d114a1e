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
using detail::FlatTable;
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

inline char lower(char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c; }

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

// The routes sharing one host key: an exact host, one wildcard suffix, or "any host".
struct Group {
  uint32_t tree_root = kNone;  // root in tree_, kNone if the group has no prefix/param uri
  bool has_exact = false;      // the group has entries in paths_
  Key tree_max;                // best key in the group's tree: the tree is skipped when it cannot win
};

class RouterImpl final : public Router {
 public:
  bool build(const config::Config& config, std::string* error);
  int match(const MatchRequest& request) const override;
  size_t route_count() const override { return route_count_; }

 private:
  bool accept(const Cand& c, uint16_t method_bits, std::string_view method, VarContext& ctx) const;

  std::vector<CompiledRoute> routes_;  // indexed like config.routes
  std::vector<Cidr> cidrs_;
  std::vector<CompiledExpr> exprs_;
  std::vector<std::string> extra_methods_;

  std::vector<Group> groups_;
  FlatTable hosts_;  // "api.example.com" -> group, ".example.com" (from "*.example.com") -> group
  uint64_t wildcard_lens_[4] = {0, 0, 0, 0};  // bit n set: some wildcard suffix is n bytes long
  bool has_exact_hosts_ = false;
  bool has_wildcards_ = false;
  bool has_exact_paths_ = false;
  uint32_t any_group_ = kNone;

  FlatTable paths_;  // (group, exact path) -> range of exact_cands_
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
  std::unordered_map<std::string, uint32_t> group_of_key;  // "" = any host
  std::vector<uint32_t> build_root;                        // group -> TreeBuilder root or kNone
  auto group_for = [&](const std::string& key) {
    auto [it, inserted] = group_of_key.emplace(key, static_cast<uint32_t>(groups_.size()));
    if (inserted) {
      groups_.emplace_back();
      build_root.push_back(kNone);
    }
    return it->second;
  };

  struct ExactEntry {
    uint64_t hash;
    uint32_t group;
    std::string_view path;
    Cand cand;
  };
  std::vector<ExactEntry> exact;
  TreeBuilder tree;
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
      route_groups.push_back({group_for(host_key), spec});
    }
    if (hosts->empty()) route_groups.push_back({group_for(std::string()), 0});

    for (const std::string& uri : route.uris) {
      if (!pattern.parse(uri)) return fail(i, "uri \"" + uri + "\" does not start with '/'");
      for (const HostGroupKey& hg : route_groups) {
        Cand cand{detail::make_key(route.priority, pattern.path_spec, hg.spec, static_cast<uint32_t>(i)),
                  static_cast<uint32_t>(i), methods, flags};
        if (pattern.exact) {
          exact.push_back({detail::hash_bytes(uri), hg.group, uri, cand});
          groups_[hg.group].has_exact = true;
        } else {
          if (build_root[hg.group] == kNone) build_root[hg.group] = tree.new_root();
          tree.add(build_root[hg.group], pattern, cand);
          Group& g = groups_[hg.group];
          if (cand.key > g.tree_max) g.tree_max = cand.key;
        }
      }
    }
  }

  // Host table.
  size_t host_keys = 0;
  for (const auto& [key, group] : group_of_key) host_keys += key.empty() ? 0 : 1;
  hosts_.reserve(host_keys);
  for (const auto& [key, group] : group_of_key) {
    if (key.empty()) {
      any_group_ = group;
      continue;
    }
    hosts_.insert(detail::hash_bytes(key), key, 0, group, 1);
    if (key[0] == '.') {
      has_wildcards_ = true;
      if (key.size() <= kMaxHost) wildcard_lens_[key.size() >> 6] |= 1ull << (key.size() & 63);
    } else {
      has_exact_hosts_ = true;
    }
  }
  hosts_.shrink();

  // Exact paths: equal (group, path) entries become one slot whose candidates are sorted best first.
  std::sort(exact.begin(), exact.end(), [](const ExactEntry& a, const ExactEntry& b) {
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
  exact_cands_.reserve(exact.size());
  for (size_t i = 0; i < exact.size();) {
    size_t j = i;
    uint32_t off = static_cast<uint32_t>(exact_cands_.size());
    while (j < exact.size() && exact[j].group == exact[i].group && exact[j].path == exact[i].path) {
      exact_cands_.push_back(exact[j].cand);
      ++j;
    }
    paths_.insert(detail::hash_with_tag(exact[i].hash, exact[i].group), exact[i].path, exact[i].group, off,
                  static_cast<uint32_t>(j - i));
    i = j;
  }
  paths_.shrink();
  has_exact_paths_ = !exact.empty();

  std::vector<uint32_t> root_index;
  tree.finish(tree_, root_index);
  for (size_t g = 0; g < groups_.size(); ++g) {
    if (build_root[g] != kNone) groups_[g].tree_root = root_index[build_root[g]];
  }
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

int RouterImpl::match(const MatchRequest& request) const {
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
  uint32_t groups[kMaxHost + 2];
  size_t group_n = 0;
  if (host_fits && host_len != 0) {
    if (has_exact_hosts_) {
      const FlatTable::Slot* s = hosts_.find(detail::hash_bytes(host_buf, host_len), host_buf, host_len, 0);
      if (s != nullptr) groups[group_n++] = s->value;
    }
    if (has_wildcards_) {
      for (size_t i = 1; i < host_len; ++i) {
        if (host_buf[i] != '.') continue;
        size_t n = host_len - i;
        if ((wildcard_lens_[n >> 6] >> (n & 63) & 1) == 0) continue;
        const FlatTable::Slot* s = hosts_.find(detail::hash_bytes(host_buf + i, n), host_buf + i, n, 0);
        if (s != nullptr) groups[group_n++] = s->value;
      }
    }
  }
  if (any_group_ != kNone) groups[group_n++] = any_group_;
  if (group_n == 0) return -1;

  const std::string_view method = request.method_text.empty() ? method_name(request.method) : request.method_text;
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
      if (accept(c[i], method_bits, method, ctx)) {
        best = c[i].key;
        best_route = static_cast<int>(c[i].route);
        return;
      }
    }
  };

  const std::string_view path = request.path;
  if (has_exact_paths_) {
    const uint64_t path_hash = detail::hash_bytes(path);
    for (size_t k = 0; k < group_n; ++k) {
      uint32_t g = groups[k];
      if (!groups_[g].has_exact) continue;
      const FlatTable::Slot* s = paths_.find(detail::hash_with_tag(path_hash, g), path.data(), path.size(), g);
      if (s != nullptr) visit(exact_cands_.data() + s->value, s->count);
    }
  }
  for (size_t k = 0; k < group_n; ++k) {
    const Group& g = groups_[groups[k]];
    if (g.tree_root != kNone && g.tree_max > best) tree_.walk(g.tree_root, path, visit);
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
