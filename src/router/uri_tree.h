// Private to src/router: route uri patterns, match candidates, and the segment tree that finds the
// `/prefix/*` and `:param` candidates of a path.
//
// Pattern syntax (APISIX radixtree style):
//   "/a/b"          exact (not stored in the tree: exact paths live in a hash table, see router.cc)
//   "/api/*"        wildcard: a '*' in the last segment, followed only by an optional name of [A-Za-z0-9_]
//                   ("/api/*rest"), matches any rest of the path from there on, including an empty one and
//                   across '/'. So "/api/*" matches "/api/" and "/api/x/y" but not "/api"; "/api*" is a plain
//                   byte prefix and matches "/api", "/apix" and "/api/x"; "/*" matches every path
//   "/users/:id"    a segment starting with ':' is a parameter: one non-empty segment (no '/'); the name is
//                   ignored by the matcher
// Any other ':' or '*' is a literal byte ("/v1/things:batch", "/x*.png").
//
// The tree works on '/'-separated segments: a path "/a/b/" is the segments "a", "b", "". A node is a
// sequence of segment matchers from its root; its static children are found through one hash table keyed by
// (parent node, segment text), so each path segment costs one probe whatever the number of routes, and the
// table slot holds the first 16 bytes of the segment plus the child's flags, so a probe usually touches a
// single cache line. A node's own record (candidate lists, parameter child, wildcard prefixes) is read only
// when its flags say there is something there.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "router/hash.h"

namespace portico::router::detail {

// Total order among match candidates; larger wins. hi = priority (biased) : path specificity; lo = host
// specificity : inverted route index (so the route listed first wins the final tie).
struct Key {
  uint64_t hi = 0;
  uint64_t lo = 0;
};
inline bool operator>(const Key& a, const Key& b) {
  return a.hi > b.hi || (a.hi == b.hi && a.lo > b.lo);
}

inline Key make_key(int priority, uint32_t path_spec, uint32_t host_spec, uint32_t route_index) {
  uint64_t prio = static_cast<uint32_t>(priority) ^ 0x80000000u;  // order-preserving signed -> unsigned
  return Key{(prio << 32) | path_spec,
             (static_cast<uint64_t>(host_spec) << 32) | (~route_index & 0xFFFFFFFFu)};
}

// Path specificity, larger = more specific:
//   bit 31      exact path
//   bits 16-30  length of the literal prefix before the first parameter or wildcard (the whole path for an
//               exact one), capped at 0x7FFF
//   bit 15      no wildcard ("/users/:id" beats "/users/*")
//   bits 0-14   literal bytes in the whole pattern, capped ("/users/:id/*" beats "/users/*")
inline uint32_t path_specificity(bool exact, size_t prefix_len, bool star, size_t literal_len) {
  uint32_t spec = exact ? 1u << 31 : 0;
  spec |= static_cast<uint32_t>(prefix_len < 0x7FFF ? prefix_len : 0x7FFF) << 16;
  spec |= star ? 0 : 1u << 15;
  spec |= static_cast<uint32_t>(literal_len < 0x7FFF ? literal_len : 0x7FFF);
  return spec;
}

// Method bits of a candidate; 0 = any method.
enum MethodBits : uint16_t {
  kMethodGet = 1u << 0,
  kMethodHead = 1u << 1,
  kMethodPost = 1u << 2,
  kMethodPut = 1u << 3,
  kMethodDelete = 1u << 4,
  kMethodConnect = 1u << 5,
  kMethodOptions = 1u << 6,
  kMethodTrace = 1u << 7,
  kMethodPatch = 1u << 8,
  kMethodPurge = 1u << 9,
  kMethodExtra = 1u << 15,  // the route also lists methods without a bit: compare the text
};

// Bit of an upper-case method name, 0 for a method without a bit.
inline uint16_t method_bit(std::string_view m) {
  switch (m.size()) {
    case 3:
      if (m == "GET") return kMethodGet;
      if (m == "PUT") return kMethodPut;
      break;
    case 4:
      if (m == "POST") return kMethodPost;
      if (m == "HEAD") return kMethodHead;
      break;
    case 5:
      if (m == "PATCH") return kMethodPatch;
      if (m == "TRACE") return kMethodTrace;
      if (m == "PURGE") return kMethodPurge;
      break;
    case 6:
      if (m == "DELETE") return kMethodDelete;
      break;
    case 7:
      if (m == "OPTIONS") return kMethodOptions;
      if (m == "CONNECT") return kMethodConnect;
      break;
    default:
      break;
  }
  return 0;
}

enum CandFlags : uint16_t {
  kCandChecks = 1u << 0,  // the route has remote_addrs or vars: evaluate them
};

// One (route, uri, host) combination found by a path lookup. Lists of candidates are sorted by key,
// largest first, so a scan can stop at the first candidate that cannot beat the best match so far.
struct Cand {
  Key key;
  uint32_t route;    // index in config.routes
  uint16_t methods;  // MethodBits; 0 = any
  uint16_t flags;    // CandFlags
};
static_assert(sizeof(Cand) == 24);

// A parsed uri pattern: segments after the leading '/', then maybe a wildcard.
struct UriPattern {
  struct Segment {
    std::string_view text;  // literal text; empty for a parameter (and for an empty literal segment)
    bool param = false;
  };
  std::vector<Segment> segments;  // before the wildcard segment, if any
  bool star = false;
  std::string_view star_prefix;  // literal bytes of the wildcard segment before the '*'
  bool exact = false;            // no parameter and no wildcard
  uint32_t path_spec = 0;

  // False if `uri` does not start with '/' or has a segment longer than 65535 bytes.
  bool parse(std::string_view uri);
};

class UriTree {
 public:
  enum Flags : uint8_t {
    kHasEnd = 1,       // candidates for paths ending at this node
    kHasStar = 2,      // wildcard candidates (with or without a literal prefix)
    kHasParam = 4,     // a parameter child
    kHasChildren = 8,  // static children (in the edge table)
  };

  // Calls visit(const Cand*, uint32_t n) for every candidate list that `path` satisfies under `root`.
  template <class Visit>
  void walk(uint32_t root, std::string_view path, Visit& visit) const {
    if (path.empty() || path[0] != '/') return;
    walk_from(root, nodes_[root].flags, path.data(), 1, true, path.size(), visit);
  }

  size_t node_count() const { return nodes_.size(); }
  size_t memory_bytes() const {
    return nodes_.capacity() * sizeof(Node) + edges_.capacity() * sizeof(Edge) + labels_.capacity() +
           partials_.capacity() * sizeof(Partial) + cands_.capacity() * sizeof(Cand);
  }

 private:
  friend class TreeBuilder;

  static constexpr size_t kEdgeInline = 16;

  struct alignas(32) Node {
    uint32_t label_off;  // the segment leading here, in labels_ (static children only)
    uint32_t param;      // parameter child, or kNone
    uint32_t cand_off;   // into cands_: end_n end candidates, then star_n wildcard candidates
    uint32_t end_n;
    uint32_t star_n;       // wildcards with an empty literal prefix ("/api/*")
    uint32_t partial_off;  // into partials_: wildcards with a literal prefix ("/api/v*")
    uint32_t partial_n;
    uint8_t flags;        // Flags of this node
    uint8_t param_flags;  // Flags of the parameter child
    uint16_t unused;
  };
  static_assert(sizeof(Node) == 32);

  struct alignas(32) Edge {
    uint32_t check;   // high half of the slot hash
    uint32_t parent;  // kNone: empty slot
    uint32_t child;
    uint16_t len;   // segment length
    uint8_t flags;  // Flags of the child
    uint8_t unused;
    char key[kEdgeInline];  // first bytes of the segment; the rest is compared in labels_
  };
  static_assert(sizeof(Edge) == 32);

  struct Partial {
    uint32_t prefix_off;  // in labels_
    uint32_t prefix_len;
    uint32_t cand_off;
    uint32_t cand_n;
  };

  static uint64_t edge_hash(uint32_t parent, const char* seg, size_t len) {
    return hash_with_tag(hash_bytes(seg, len), parent);
  }

  const Edge* find_edge(uint32_t parent, const char* seg, size_t len) const {
    uint64_t h = edge_hash(parent, seg, len);
    uint32_t check = static_cast<uint32_t>(h >> 32);
    size_t i = h & edge_mask_;
    size_t head = len < kEdgeInline ? len : kEdgeInline;
    for (;;) {
      const Edge& e = edges_[i];
      if (e.parent == kNone) return nullptr;
      if (e.check == check && e.parent == parent && e.len == len && bytes_equal(e.key, seg, head) &&
          (len <= kEdgeInline || std::memcmp(labels_.data() + nodes_[e.child].label_off + kEdgeInline,
                                             seg + kEdgeInline, len - kEdgeInline) == 0)) {
        return &e;
      }
      i = (i + 1) & edge_mask_;
    }
  }

  // pos: start of the next path segment; has_next: there is one (a path ending in '/' has an empty one).
  template <class Visit>
  void walk_from(uint32_t node, uint8_t flags, const char* p, size_t pos, bool has_next, size_t len,
                 Visit& visit) const {
    for (;;) {
      if (!has_next) {
        if (flags & kHasEnd) visit(cands_.data() + nodes_[node].cand_off, nodes_[node].end_n);
        return;
      }
      const Node* rec = nullptr;
      if (flags & (kHasStar | kHasParam)) {
        rec = &nodes_[node];
        if (rec->star_n != 0) visit(cands_.data() + rec->cand_off + rec->end_n, rec->star_n);
        for (uint32_t k = 0; k < rec->partial_n; ++k) {
          const Partial& pt = partials_[rec->partial_off + k];
          if (pt.prefix_len <= len - pos &&
              bytes_equal(labels_.data() + pt.prefix_off, p + pos, pt.prefix_len)) {
            visit(cands_.data() + pt.cand_off, pt.cand_n);
          }
        }
      }
      if ((flags & (kHasChildren | kHasParam)) == 0) return;
      const void* slash = std::memchr(p + pos, '/', len - pos);
      size_t end = slash != nullptr ? static_cast<size_t>(static_cast<const char*>(slash) - p) : len;
      bool next_has = end < len;
      size_t next_pos = end + 1;
      const Edge* e = (flags & kHasChildren) ? find_edge(node, p + pos, end - pos) : nullptr;
      if ((flags & kHasParam) && end > pos) {
        if (e == nullptr) {  // only one way on: iterate instead of recursing
          node = rec->param;
          flags = rec->param_flags;
          pos = next_pos;
          has_next = next_has;
          continue;
        }
        walk_from(rec->param, rec->param_flags, p, next_pos, next_has, len, visit);
      }
      if (e == nullptr) return;
      node = e->child;
      flags = e->flags;
      pos = next_pos;
      has_next = next_has;
    }
  }

  std::vector<Node> nodes_;
  std::vector<Edge> edges_;
  size_t edge_mask_ = 0;
  size_t edge_count_ = 0;
  std::string labels_;
  std::vector<Partial> partials_;
  std::vector<Cand> cands_;
};

// Builds one UriTree holding any number of independent roots (one per host group).
class TreeBuilder {
 public:
  explicit TreeBuilder(UriTree& out);
  uint32_t new_root();
  // Inserts `pattern` (not exact) below `root` and attaches `cand` to where it ends. The pattern's views
  // must stay valid until finish().
  void add(uint32_t root, const UriPattern& pattern, const Cand& cand);
  // Lays out candidate lists and flags. The tree is usable afterwards.
  void finish();

 private:
  struct Attached {
    uint32_t node;
    uint32_t kind;  // 0 end, 1 wildcard, 2 wildcard with a literal prefix
    std::string_view prefix;
    Cand cand;
  };

  uint32_t new_node();
  uint32_t child(uint32_t parent, std::string_view seg);
  void grow_edges();
  void put_edge(const UriTree::Edge& e, uint64_t hash);

  UriTree& t_;
  std::vector<Attached> attached_;
};

}  // namespace portico::router::detail
