#include "router/uri_tree.h"

#include <algorithm>

namespace portico::router::detail {

namespace {

// Path specificity, larger = more specific:
//   bit 31      exact path
//   bits 16-30  length of the literal prefix before the first parameter or wildcard (the whole path for an
//               exact one), capped at 0x7FFF
//   bit 15      no trailing wildcard ("/users/:id" beats "/users/*")
//   bits 0-14   literal bytes in the whole pattern, capped ("/users/:id/*" beats "/users/*")
uint32_t specificity(bool exact, size_t prefix_len, bool star, size_t literal_len) {
  uint32_t spec = exact ? 1u << 31 : 0;
  spec |= static_cast<uint32_t>(std::min<size_t>(prefix_len, 0x7FFF)) << 16;
  spec |= star ? 0 : 1u << 15;
  spec |= static_cast<uint32_t>(std::min<size_t>(literal_len, 0x7FFF));
  return spec;
}

// What may follow a '*' for it to be a wildcard: nothing, or a name.
bool is_wildcard_name(std::string_view s) {
  for (char c : s) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    if (!ok) return false;
  }
  return true;
}

}  // namespace

bool UriPattern::parse(std::string_view uri) {
  tokens.clear();
  star = false;
  exact = false;
  if (uri.empty() || uri[0] != '/') return false;

  size_t lit_start = 0, prefix_len = std::string_view::npos, literal_len = 0;
  size_t i = 1;
  while (i < uri.size()) {
    char c = uri[i];
    if (c == ':' && uri[i - 1] == '/') {
      tokens.push_back({uri.substr(lit_start, i - lit_start), false});
      literal_len += i - lit_start;
      if (prefix_len == std::string_view::npos) prefix_len = i;
      tokens.push_back({{}, true});
      size_t slash = uri.find('/', i);
      i = slash == std::string_view::npos ? uri.size() : slash;
      lit_start = i;
      continue;
    }
    if (c == '*' && is_wildcard_name(uri.substr(i + 1))) {
      // A wildcard ends the pattern; what follows it is its (ignored) name.
      star = true;
      break;
    }
    ++i;
  }
  size_t end = star ? i : uri.size();
  if (end > lit_start) {
    tokens.push_back({uri.substr(lit_start, end - lit_start), false});
    literal_len += end - lit_start;
  }
  if (prefix_len == std::string_view::npos) prefix_len = end;
  exact = !star && tokens.size() == 1;
  path_spec = specificity(exact, prefix_len, star, literal_len);
  return true;
}

uint32_t TreeBuilder::make(const char* label, uint32_t len) {
  nodes_.push_back(BNode{label, len});
  return static_cast<uint32_t>(nodes_.size() - 1);
}

uint32_t TreeBuilder::new_root() {
  uint32_t r = make("", 0);
  roots_.push_back(r);
  return static_cast<uint32_t>(roots_.size() - 1);
}

// Descends from `n` along `s`, splitting edges and adding nodes so that a node ends exactly after `s`.
uint32_t TreeBuilder::insert_literal(uint32_t n, const char* s, uint32_t len) {
  while (len != 0) {
    uint32_t prev = kNone, c = nodes_[n].first_child;
    while (c != kNone && nodes_[c].label[0] != s[0]) {
      prev = c;
      c = nodes_[c].next;
    }
    if (c == kNone) {
      uint32_t m = make(s, len);
      nodes_[m].next = nodes_[n].first_child;
      nodes_[n].first_child = m;
      return m;
    }
    uint32_t clen = nodes_[c].len, common = 1;
    const char* clabel = nodes_[c].label;
    while (common < clen && common < len && clabel[common] == s[common]) ++common;
    if (common < clen) {
      // Split c: a new node m takes the shared part and c keeps the rest below it. c keeps its index, so
      // candidates already attached to it stay where they belong.
      uint32_t m = make(clabel, common);
      nodes_[m].next = nodes_[c].next;
      nodes_[m].first_child = c;
      nodes_[c].next = kNone;
      nodes_[c].label = clabel + common;
      nodes_[c].len = clen - common;
      if (prev == kNone) {
        nodes_[n].first_child = m;
      } else {
        nodes_[prev].next = m;
      }
      c = m;
    }
    s += common;
    len -= common;
    n = c;
  }
  return n;
}

void TreeBuilder::add(uint32_t root, const UriPattern& pattern, const Cand& cand) {
  uint32_t n = roots_[root];
  for (const UriPattern::Token& t : pattern.tokens) {
    if (t.param) {
      if (nodes_[n].param == kNone) {
        uint32_t p = make("", 0);
        nodes_[n].param = p;
      }
      n = nodes_[n].param;
    } else {
      n = insert_literal(n, t.literal.data(), static_cast<uint32_t>(t.literal.size()));
    }
  }
  attached_.push_back(Attached{n, pattern.star ? 1u : 0u, cand});
}

void TreeBuilder::finish(UriTree& out, std::vector<uint32_t>& root_index) {
  out.nodes_.clear();
  out.first_bytes_.clear();
  out.labels_.clear();
  out.cands_.clear();
  root_index.assign(roots_.size(), kNone);
  if (nodes_.empty()) return;

  // Breadth-first renumbering: the top levels, which every lookup touches, end up next to each other.
  std::vector<uint32_t> order;  // flat index -> build index
  std::vector<uint32_t> flat(nodes_.size(), kNone);
  order.reserve(nodes_.size());
  out.nodes_.reserve(nodes_.size());
  out.first_bytes_.reserve(nodes_.size());
  size_t label_bytes = 0;
  for (const BNode& b : nodes_) label_bytes += b.len;
  out.labels_.reserve(label_bytes);

  auto push = [&](uint32_t b) {
    flat[b] = static_cast<uint32_t>(order.size());
    order.push_back(b);
    const BNode& bn = nodes_[b];
    out.nodes_.push_back(UriTree::Node{static_cast<uint32_t>(out.labels_.size()), bn.len, 0, 0, kNone, 0, 0, 0});
    out.first_bytes_.push_back(bn.len != 0 ? static_cast<uint8_t>(bn.label[0]) : 0);
    out.labels_.append(bn.label, bn.len);
  };
  for (size_t r = 0; r < roots_.size(); ++r) {
    push(roots_[r]);
    root_index[r] = flat[roots_[r]];
  }
  std::vector<uint32_t> kids;
  for (size_t i = 0; i < order.size(); ++i) {
    const BNode& bn = nodes_[order[i]];
    kids.clear();
    for (uint32_t c = bn.first_child; c != kNone; c = nodes_[c].next) kids.push_back(c);
    std::sort(kids.begin(), kids.end(), [&](uint32_t a, uint32_t b) {
      return static_cast<uint8_t>(nodes_[a].label[0]) < static_cast<uint8_t>(nodes_[b].label[0]);
    });
    uint32_t first = static_cast<uint32_t>(order.size());
    for (uint32_t c : kids) push(c);
    if (bn.param != kNone) push(bn.param);
    UriTree::Node& fn = out.nodes_[i];
    fn.first_child = first;
    fn.child_count = static_cast<uint32_t>(kids.size());
    fn.param_child = bn.param != kNone ? flat[bn.param] : kNone;
  }

  // Candidate lists: per node the end list then the star list, each sorted best first.
  for (Attached& a : attached_) a.node = flat[a.node];
  std::sort(attached_.begin(), attached_.end(), [](const Attached& a, const Attached& b) {
    if (a.node != b.node) return a.node < b.node;
    if (a.star != b.star) return a.star < b.star;
    return a.cand.key > b.cand.key;
  });
  out.cands_.reserve(attached_.size());
  for (const Attached& a : attached_) {
    UriTree::Node& fn = out.nodes_[a.node];
    if (fn.end_n == 0 && fn.star_n == 0) fn.cand_off = static_cast<uint32_t>(out.cands_.size());
    if (a.star != 0) {
      ++fn.star_n;
    } else {
      ++fn.end_n;
    }
    out.cands_.push_back(a.cand);
  }

  nodes_.clear();
  nodes_.shrink_to_fit();
  attached_.clear();
  attached_.shrink_to_fit();
}

}  // namespace portico::router::detail
