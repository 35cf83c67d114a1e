// Private to src/router: route uri patterns, match candidates and the compressed radix tree that finds the
// `/prefix/*` and `:param` candidates of a path.
//
// Pattern syntax (APISIX radixtree style):
//   "/a/b"          exact
//   "/api/*"        prefix: a trailing '*' (optionally named: "/api/*rest", name of [A-Za-z0-9_]) matches any rest, including an
//                   empty one, so "/api/*" matches "/api/" and "/api/x/y" but not "/api"; "/api*" is a plain
//                   byte prefix and matches "/api", "/apix" and "/api/x"; "/*" matches every path
//   "/users/:id"    a ':' right after a '/' starts a parameter: one non-empty segment (no '/'); the name runs
//                   to the next '/' and is ignored by the matcher
// A ':' or '*' anywhere else is a literal byte.
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
inline bool operator>(const Key& a, const Key& b) { return a.hi > b.hi || (a.hi == b.hi && a.lo > b.lo); }
inline bool operator==(const Key& a, const Key& b) { return a.hi == b.hi && a.lo == b.lo; }

inline Key make_key(int priority, uint32_t path_spec, uint32_t host_spec, uint32_t route_index) {
  uint64_t prio = static_cast<uint32_t>(priority) ^ 0x80000000u;  // order-preserving signed -> unsigned
  return Key{(prio << 32) | path_spec, (static_cast<uint64_t>(host_spec) << 32) | (~route_index & 0xFFFFFFFFu)};
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

// A parsed uri pattern. Literal runs and parameters alternate; `star` says a wildcard ends it.
struct UriPattern {
  struct Token {
    std::string_view literal;  // empty for a parameter
    bool param = false;
  };
  std::vector<Token> tokens;
  bool star = false;
  bool exact = false;      // no parameter and no wildcard
  uint32_t path_spec = 0;  // specificity, see specificity() in uri_tree.cc

  // False if `uri` does not start with '/'.
  bool parse(std::string_view uri);
};

// Flattened tree. Nodes are laid out breadth first; the children of a node are contiguous and sorted by
// the first byte of their label, which is kept in a parallel byte array so the child scan touches one
// small array.
class UriTree {
 public:
  struct Node {
    uint32_t label_off;    // into labels_
    uint32_t label_len;    // 0 only for roots and parameter nodes
    uint32_t first_child;  // index of the first static child
    uint32_t child_count;
    uint32_t param_child;  // node reached after one parameter segment, or kNone
    uint32_t cand_off;     // into cands_: end_n candidates that need the path to end here, then star_n
    uint32_t end_n;        // candidates that accept any rest of the path
    uint32_t star_n;
  };
  static_assert(sizeof(Node) == 32);

  // Calls visit(const Cand*, uint32_t n) for every candidate list on `path` under `root`: the star lists of
  // all nodes whose pattern is a prefix of the path, and the end list of the node whose pattern is the path.
  template <class Visit>
  void walk(uint32_t root, std::string_view path, Visit& visit) const {
    walk_from(root, path.data(), 0, path.size(), visit);
  }

  size_t node_count() const { return nodes_.size(); }
  size_t memory_bytes() const {
    return nodes_.capacity() * sizeof(Node) + first_bytes_.capacity() + labels_.capacity() +
           cands_.capacity() * sizeof(Cand);
  }

 private:
  friend class TreeBuilder;

  uint32_t find_child(const Node& n, uint8_t b) const {
    const uint8_t* fb = first_bytes_.data() + n.first_child;
    uint32_t count = n.child_count;
    if (count <= 16) {
      for (uint32_t i = 0; i < count; ++i) {
        if (fb[i] == b) return n.first_child + i;
      }
      return kNone;
    }
    uint32_t lo = 0, hi = count;
    while (lo < hi) {
      uint32_t mid = (lo + hi) >> 1;
      if (fb[mid] < b) {
        lo = mid + 1;
      } else {
        hi = mid;
      }
    }
    return lo < count && fb[lo] == b ? n.first_child + lo : kNone;
  }

  template <class Visit>
  void walk_from(uint32_t idx, const char* p, size_t pos, size_t len, Visit& visit) const {
    for (;;) {
      const Node& n = nodes_[idx];
      if (n.star_n != 0) visit(cands_.data() + n.cand_off + n.end_n, n.star_n);
      if (pos == len) {
        if (n.end_n != 0) visit(cands_.data() + n.cand_off, n.end_n);
        return;
      }
      uint32_t next = kNone;
      size_t next_pos = 0;
      if (n.child_count != 0) {
        uint32_t c = find_child(n, static_cast<uint8_t>(p[pos]));
        if (c != kNone) {
          const Node& cn = nodes_[c];
          if (cn.label_len <= len - pos &&
              std::memcmp(labels_.data() + cn.label_off + 1, p + pos + 1, cn.label_len - 1) == 0) {
            next = c;
            next_pos = pos + cn.label_len;
          }
        }
      }
      if (n.param_child != kNone && p[pos] != '/') {
        const void* slash = std::memchr(p + pos, '/', len - pos);
        size_t end = slash != nullptr ? static_cast<size_t>(static_cast<const char*>(slash) - p) : len;
        if (next == kNone) {  // only one way on: iterate instead of recursing
          idx = n.param_child;
          pos = end;
          continue;
        }
        walk_from(n.param_child, p, end, len, visit);
      }
      if (next == kNone) return;
      idx = next;
      pos = next_pos;
    }
  }

  std::vector<Node> nodes_;
  std::vector<uint8_t> first_bytes_;  // first label byte of each node, indexed like nodes_
  std::string labels_;
  std::vector<Cand> cands_;
};

// Builds one UriTree holding any number of independent roots (one per host group).
class TreeBuilder {
 public:
  uint32_t new_root();
  // Inserts `pattern` (not exact) below `root` and attaches `cand` to the node where it ends. Label views
  // point into the pattern's source string, which must outlive finish().
  void add(uint32_t root, const UriPattern& pattern, const Cand& cand);
  // Flattens into `out`; root_index[r] is then the flat index of the root returned as r by new_root().
  void finish(UriTree& out, std::vector<uint32_t>& root_index);

 private:
  struct BNode {
    const char* label;
    uint32_t len;
    uint32_t first_child = kNone;  // sibling list, unsorted while building
    uint32_t next = kNone;
    uint32_t param = kNone;
  };
  struct Attached {
    uint32_t node;
    uint32_t star;  // 0: end list, 1: star list
    Cand cand;
  };

  uint32_t make(const char* label, uint32_t len);
  uint32_t insert_literal(uint32_t n, const char* s, uint32_t len);

  std::vector<BNode> nodes_;
  std::vector<uint32_t> roots_;
  std::vector<Attached> attached_;
};

}  // namespace portico::router::detail
