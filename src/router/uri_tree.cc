#include "router/uri_tree.h"

#include <algorithm>

namespace portico::router::detail {

namespace {

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
  segments.clear();
  star = false;
  star_prefix = {};
  exact = false;
  if (uri.empty() || uri[0] != '/') return false;

  size_t prefix_len = std::string_view::npos;  // bytes before the first parameter or wildcard
  size_t variable_len = 0;                     // bytes of parameters and wildcard (with their names)
  size_t pos = 1;
  for (;;) {
    size_t slash = uri.find('/', pos);
    size_t end = slash == std::string_view::npos ? uri.size() : slash;
    std::string_view seg = uri.substr(pos, end - pos);
    if (seg.size() > 0xFFFF) return false;
    if (!seg.empty() && seg[0] == ':') {
      if (prefix_len == std::string_view::npos) prefix_len = pos;
      variable_len += seg.size();
      segments.push_back({{}, true});
    } else {
      size_t star_at = slash == std::string_view::npos ? seg.rfind('*') : std::string_view::npos;
      if (star_at != std::string_view::npos && is_wildcard_name(seg.substr(star_at + 1))) {
        if (prefix_len == std::string_view::npos) prefix_len = pos + star_at;
        variable_len += seg.size() - star_at;
        star = true;
        star_prefix = seg.substr(0, star_at);
        break;
      }
      segments.push_back({seg, false});
    }
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  exact = !star && prefix_len == std::string_view::npos;
  if (prefix_len == std::string_view::npos) prefix_len = uri.size();
  path_spec = path_specificity(exact, prefix_len, star, uri.size() - variable_len);
  return true;
}

TreeBuilder::TreeBuilder(UriTree& out) : t_(out) {
  t_ = UriTree();
  t_.edges_.assign(8, UriTree::Edge{0, kNone, 0, 0, 0, 0, {}});
  t_.edge_mask_ = 7;
}

uint32_t TreeBuilder::new_node() {
  t_.nodes_.push_back(UriTree::Node{0, kNone, 0, 0, 0, 0, 0, 0, 0, 0});
  return static_cast<uint32_t>(t_.nodes_.size() - 1);
}

uint32_t TreeBuilder::new_root() {
  return new_node();
}

void TreeBuilder::put_edge(const UriTree::Edge& e, uint64_t hash) {
  size_t i = hash & t_.edge_mask_;
  while (t_.edges_[i].parent != kNone) i = (i + 1) & t_.edge_mask_;
  t_.edges_[i] = e;
}

void TreeBuilder::grow_edges() {
  std::vector<UriTree::Edge> old;
  old.swap(t_.edges_);
  size_t cap = old.size() * 2;
  t_.edges_.assign(cap, UriTree::Edge{0, kNone, 0, 0, 0, 0, {}});
  t_.edge_mask_ = cap - 1;
  for (const UriTree::Edge& e : old) {
    if (e.parent == kNone) continue;
    const char* label = t_.labels_.data() + t_.nodes_[e.child].label_off;
    put_edge(e, UriTree::edge_hash(e.parent, label, e.len));
  }
}

uint32_t TreeBuilder::child(uint32_t parent, std::string_view seg) {
  if (const UriTree::Edge* e = t_.find_edge(parent, seg.data(), seg.size())) return e->child;
  if ((t_.edge_count_ + 1) * 2 > t_.edges_.size()) grow_edges();  // load <= 1/2
  uint32_t c = new_node();
  t_.nodes_[c].label_off = static_cast<uint32_t>(t_.labels_.size());
  t_.labels_.append(seg);
  UriTree::Edge e{0, parent, c, static_cast<uint16_t>(seg.size()), 0, 0, {}};
  std::memcpy(e.key, seg.data(), std::min(seg.size(), UriTree::kEdgeInline));
  uint64_t h = UriTree::edge_hash(parent, seg.data(), seg.size());
  e.check = static_cast<uint32_t>(h >> 32);
  put_edge(e, h);
  ++t_.edge_count_;
  t_.nodes_[parent].flags |= UriTree::kHasChildren;
  return c;
}

void TreeBuilder::add(uint32_t root, const UriPattern& pattern, const Cand& cand) {
  uint32_t n = root;
  for (const UriPattern::Segment& s : pattern.segments) {
    if (s.param) {
      if (t_.nodes_[n].param == kNone) {
        uint32_t p = new_node();
        t_.nodes_[n].param = p;
        t_.nodes_[n].flags |= UriTree::kHasParam;
      }
      n = t_.nodes_[n].param;
    } else {
      n = child(n, s.text);
    }
  }
  uint32_t kind = !pattern.star ? 0 : pattern.star_prefix.empty() ? 1 : 2;
  attached_.push_back(Attached{n, kind, pattern.star_prefix, cand});
}

void TreeBuilder::finish() {
  std::sort(attached_.begin(), attached_.end(), [](const Attached& a, const Attached& b) {
    if (a.node != b.node) return a.node < b.node;
    if (a.kind != b.kind) return a.kind < b.kind;
    if (a.prefix != b.prefix) return a.prefix < b.prefix;
    return a.cand.key > b.cand.key;
  });
  t_.cands_.reserve(attached_.size());
  for (size_t i = 0; i < attached_.size(); ++i) {
    const Attached& a = attached_[i];
    UriTree::Node& n = t_.nodes_[a.node];
    bool first_of_node = i == 0 || attached_[i - 1].node != a.node;
    if (first_of_node) {
      n.cand_off = static_cast<uint32_t>(t_.cands_.size());
      n.partial_off = static_cast<uint32_t>(t_.partials_.size());
    }
    if (a.kind == 0) {
      ++n.end_n;
      n.flags |= UriTree::kHasEnd;
    } else if (a.kind == 1) {
      ++n.star_n;
      n.flags |= UriTree::kHasStar;
    } else {
      if (first_of_node || attached_[i - 1].kind != 2 || attached_[i - 1].prefix != a.prefix) {
        t_.partials_.push_back(UriTree::Partial{static_cast<uint32_t>(t_.labels_.size()),
                                                static_cast<uint32_t>(a.prefix.size()),
                                                static_cast<uint32_t>(t_.cands_.size()), 0});
        t_.labels_.append(a.prefix);
        ++n.partial_n;
      }
      ++t_.partials_.back().cand_n;
      n.flags |= UriTree::kHasStar;
    }
    t_.cands_.push_back(a.cand);
  }
  attached_.clear();
  attached_.shrink_to_fit();

  // Copy each node's flags to where a walk meets it first: its edge slot, or its parent's record.
  for (UriTree::Node& n : t_.nodes_) {
    if (n.param != kNone) n.param_flags = t_.nodes_[n.param].flags;
  }
  for (UriTree::Edge& e : t_.edges_) {
    if (e.parent != kNone) e.flags = t_.nodes_[e.child].flags;
  }
  t_.nodes_.shrink_to_fit();
  t_.labels_.shrink_to_fit();
  t_.partials_.shrink_to_fit();
}

}  // namespace portico::router::detail
