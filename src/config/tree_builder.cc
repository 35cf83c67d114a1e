#include "config/tree_builder.h"

#include <algorithm>

#include "config/path.h"

namespace portico::config::detail {

using json = nlohmann::json;

TreeBuilder::TreeBuilder(Errors& errors, std::vector<std::string_view> streamed_sections, Sink sink,
                         size_t max_depth, std::string_view path_prefix)
    : errors_(errors),
      max_depth_(max_depth),
      path_prefix_(path_prefix),
      streamed_sections_(std::move(streamed_sections)),
      sink_(std::move(sink)) {}

std::string TreeBuilder::path() const {
  std::string out(path_prefix_);
  for (const Frame& f : stack_) {
    if (f.value.is_object()) {
      append_key(out, f.key);
    } else {
      append_index(out, f.count);
    }
  }
  return out;
}

void TreeBuilder::fail_here(std::string reason) {
  errors_.add(path(), std::move(reason));
}

size_t TreeBuilder::next_level() const {
  // From the root, or from the resource for the items of a streamed list, so a resource may nest as deep in a
  // file as in an Admin API body.
  size_t level = stack_.size() + 1;
  if (stack_.size() >= 2 && stack_[1].streamed) level -= 2;
  return level;
}

void TreeBuilder::begin(json container, uint64_t anchor) {
  if (too_deep_ > 0) {
    ++too_deep_;
    return;
  }
  if (next_level() > max_depth_) {
    fail_here("nested deeper than " + std::to_string(max_depth_) + " levels");
    too_deep_ = 1;
    return;
  }
  Frame frame;
  frame.value = std::move(container);
  frame.anchor = anchor;
  if (frame.value.is_array() && anchor == 0 && stack_.size() == 1 && stack_[0].value.is_object() &&
      !stack_[0].skip && !stack_[0].merge) {
    auto it = std::find(streamed_sections_.begin(), streamed_sections_.end(), stack_[0].key);
    if (it != streamed_sections_.end()) {
      frame.streamed = true;
      frame.section = *it;
    }
  }
  stack_.push_back(std::move(frame));
}

void TreeBuilder::begin_map(uint64_t anchor) {
  begin(json::object(), anchor);
}
void TreeBuilder::begin_list(uint64_t anchor) {
  begin(json::array(), anchor);
}

void TreeBuilder::end() {
  if (too_deep_ > 0) {
    if (--too_deep_ == 0) deliver(nullptr, 0, 0);  // the skipped container's slot
    return;
  }
  if (stack_.empty()) return;
  Frame frame = std::move(stack_.back());
  stack_.pop_back();
  if (frame.value.is_object()) apply_merges(frame);
  deliver(std::move(frame.value), frame.anchor, frame.height);
}

void TreeBuilder::key(std::string key, bool merge) {
  if (too_deep_ > 0 || stack_.empty() || !stack_.back().value.is_object()) return;
  Frame& top = stack_.back();
  top.merge = merge;
  top.skip = false;
  if (!merge && top.value.contains(key)) {
    top.key = std::move(key);
    fail_here("duplicate key \"" + top.key + "\"");
    top.skip = true;
    return;
  }
  top.key = std::move(key);
}

void TreeBuilder::value(json v, uint64_t anchor) {
  if (too_deep_ > 0) return;
  deliver(std::move(v), anchor, 0);
}

void TreeBuilder::alias(uint64_t anchor) {
  if (too_deep_ > 0) return;
  auto it = anchors_.find(anchor);
  if (it == anchors_.end()) {
    fail_here("alias to an unknown anchor");
    deliver(nullptr, 0, 0);
    return;
  }
  // An alias copies a finished tree into this slot: chained anchors could otherwise build any depth.
  const auto& [value, height] = it->second;
  if (height > 0 && next_level() + height - 1 > max_depth_) {
    fail_here("nested deeper than " + std::to_string(max_depth_) + " levels (through an alias)");
    deliver(nullptr, 0, 0);
    return;
  }
  deliver(value, 0, height);
}

void TreeBuilder::deliver(json v, uint64_t anchor, size_t height) {
  if (anchor != 0) anchors_[anchor] = {v, height};
  if (stack_.empty()) {
    root_ = std::move(v);
    done_ = true;
    return;
  }
  Frame& top = stack_.back();
  top.height = std::max(top.height, height + 1);
  if (top.value.is_array()) {
    if (!top.streamed) {
      top.value.push_back(std::move(v));
    } else if (!stopped()) {
      sink_(top.section, top.count, v);
    }
    ++top.count;
    return;
  }
  if (top.skip) {
    top.skip = false;
    return;
  }
  if (top.merge) {
    top.merge = false;
    bool ok = v.is_object() || v.is_array();
    if (v.is_array()) {
      for (json& source : v) ok = ok && source.is_object();
    }
    if (!ok) {
      fail_here("a merge key (<<) needs a mapping or a list of mappings");
    } else if (v.is_object()) {
      top.merges.push_back(std::move(v));
    } else {
      for (json& source : v) top.merges.push_back(std::move(source));
    }
    return;
  }
  top.value.get_ref<json::object_t&>().emplace(std::move(top.key), std::move(v));
}

void TreeBuilder::apply_merges(Frame& frame) {
  // Keys written in the mapping win over merged ones; among merged sources the first one listed wins.
  for (json& source : frame.merges) {
    for (auto it = source.begin(); it != source.end(); ++it) {
      if (!frame.value.contains(it.key())) frame.value[it.key()] = std::move(it.value());
    }
  }
  frame.merges.clear();
}

}  // namespace portico::config::detail
