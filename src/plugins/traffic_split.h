// traffic-split's parts that others need: the weighted picker (for its unit tests) and the order in which the
// plugin numbers its weighted upstreams, which the snapshot follows to compile the upstream runtime of each
// (snapshot.cc). The plugin itself is private to traffic_split.cc.
//
// The plugin records its choice in the RequestContext (split_owner, split_choice): the index of the chosen
// weighted upstream among all of its rules' weighted upstreams, numbered in order (rule 0's first, ...), or
// -1 for the route's own upstream. It never sees an upstream runtime: plugins do not depend on snapshots.
#pragma once

#include <cstdint>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace portico::plugins {

// Smooth weighted round robin (nginx's): over a cycle of sum(weights) picks, each index is picked exactly
// weight times, spread evenly (weights 9:1 give one pick of index 1 every ten). Deterministic, so a share
// is exact over every whole cycle, not only on average. Zero weights are never picked. Not thread-safe:
// one picker per worker.
class WeightedPicker {
 public:
  WeightedPicker() = default;
  explicit WeightedPicker(std::vector<int64_t> weights);

  // The next index, or -1 when every weight is 0 (or there is none).
  int pick();

 private:
  std::vector<int64_t> weights_;
  std::vector<int64_t> current_;
  int64_t total_ = 0;
};

// One weighted upstream of a validated traffic-split configuration, in the plugin's numbering.
struct SplitTargetSpec {
  const nlohmann::json* upstream_id = nullptr;  // set: an upstream by id (a string or an integer)
  const nlohmann::json* upstream = nullptr;     // set: an inline upstream
  // neither: the route's own upstream
};
std::vector<SplitTargetSpec> split_targets(const nlohmann::json& conf);

}  // namespace portico::plugins
