// traffic-split (APISIX 3.x, access phase, priority 966): picks the upstream of a request. The first rule
// whose `match` holds (any of its entries; every expression of an entry's `vars`) applies; a rule without
// `match` always does. A rule with an empty `match` ([]) holds only when it is the first rule: APISIX keeps
// the previous rule's verdict there (its match_passed starts true and only an evaluated entry changes it),
// and any rule before it that was evaluated failed. Among that rule's weighted upstreams one is picked by
// weight, and the session forwards to it (traffic_split.h says how the choice reaches the session). No rule
// applies, or every weight of the rule is 0: the route's own upstream.
//
// APISIX picks with a round-robin object per rule (lua-resty-balancer) per nginx worker; Portico does the
// same with a smooth weighted round robin per rule per worker, so a 9:1 split sends exactly one request in
// ten of each worker to the second upstream.
#include "plugins/traffic_split.h"

#include <nlohmann/json.hpp>

#include "config/validate.h"
#include "plugins/factories.h"
#include "router/router.h"

namespace portico::plugins {

WeightedPicker::WeightedPicker(std::vector<int64_t> weights)
    : weights_(std::move(weights)), current_(weights_.size(), 0) {
  for (int64_t w : weights_) total_ += w;
}

int WeightedPicker::pick() {
  if (total_ <= 0) return -1;
  int best = -1;
  for (size_t i = 0; i < weights_.size(); ++i) {
    if (weights_[i] <= 0) continue;
    current_[i] += weights_[i];
    if (best < 0 || current_[i] > current_[static_cast<size_t>(best)]) best = static_cast<int>(i);
  }
  current_[static_cast<size_t>(best)] -= total_;
  return best;
}

std::vector<SplitTargetSpec> split_targets(const nlohmann::json& conf) {
  std::vector<SplitTargetSpec> out;
  auto rules = conf.find("rules");
  if (rules == conf.end() || !rules->is_array()) return out;
  for (const nlohmann::json& rule : *rules) {
    auto ups = rule.find("weighted_upstreams");
    if (ups == rule.end() || !ups->is_array()) {
      out.emplace_back();  // the schema's default, [{"weight": 1}]: the route's own upstream
      continue;
    }
    for (const nlohmann::json& wu : *ups) {
      SplitTargetSpec t;
      if (auto id = wu.find("upstream_id"); id != wu.end()) {
        t.upstream_id = &*id;
      } else if (auto up = wu.find("upstream"); up != wu.end()) {
        t.upstream = &*up;
      }
      out.push_back(t);
    }
  }
  return out;
}

namespace {

class TrafficSplit final : public Plugin {
 public:
  TrafficSplit(const nlohmann::json& conf, int priority, size_t workers)
      : Plugin("traffic-split", priority, kAccess) {
    auto rules = conf.find("rules");
    if (rules == conf.end()) return;
    int next = 0;  // the first weighted upstream's number in this rule (split_targets' order)
    for (const nlohmann::json& r : *rules) {
      const bool first_rule = rules_.empty();
      Rule& rule = rules_.emplace_back();
      if (auto match = r.find("match"); match != r.end()) {
        rule.has_match = true;
        rule.never = match->empty() && !first_rule;
        for (const nlohmann::json& m : *match) {
          auto& alternative = rule.alternatives.emplace_back();
          auto vars = m.find("vars");
          if (vars == m.end()) continue;  // no condition: holds
          config::Errors errors;
          auto exprs = config::validate_vars(*vars, "vars", errors);
          if (!exprs) throw std::invalid_argument(errors.list().front().reason);
          std::string error;
          alternative = router::VarsCondition::compile(*exprs, &error);
          if (!alternative) throw std::invalid_argument(error);
        }
      }
      std::vector<int64_t> weights;
      if (auto ups = r.find("weighted_upstreams"); ups != r.end()) {
        for (const nlohmann::json& wu : *ups) weights.push_back(wu.value("weight", int64_t{1}));
      } else {
        weights.push_back(1);  // the schema's default: the route's own upstream
      }
      rule.first = next;
      next += static_cast<int>(weights.size());
      rule.per_worker.reset(new Slot[workers]);
      for (size_t w = 0; w < workers; ++w) rule.per_worker[w].picker = WeightedPicker(weights);
    }
    workers_ = workers;
  }

  void access(RequestContext& ctx) const override {
    for (const Rule& rule : rules_) {
      if (!rule.matches(ctx)) continue;
      const size_t w = ctx.worker < workers_ ? ctx.worker : 0;
      const int picked = rule.per_worker[w].picker.pick();
      ctx.split_owner = this;
      ctx.split_choice = picked < 0 ? -1 : rule.first + picked;
      return;
    }
  }

 private:
  // One worker's picker on a cache line of its own: workers pick concurrently.
  struct alignas(64) Slot {
    WeightedPicker picker;
  };
  struct Rule {
    bool has_match = false;
    bool never = false;  // `match: []` after another rule: that rule failed, and APISIX keeps its verdict
    // One per match entry; null: the entry has no vars (holds).
    std::vector<std::unique_ptr<router::VarsCondition>> alternatives;
    int first = 0;
    std::unique_ptr<Slot[]> per_worker;  // mutable state of a const plugin: worker i alone uses slot i

    bool matches(const RequestContext& ctx) const {
      if (never) return false;
      if (!has_match || alternatives.empty()) return true;
      for (const auto& c : alternatives) {
        if (!c || (ctx.match != nullptr && c->matches(*ctx.match))) return true;
      }
      return false;
    }
  };
  std::vector<Rule> rules_;
  size_t workers_ = 1;
};

std::shared_ptr<const Plugin> build(const nlohmann::json& conf, int priority, const BuildEnv& env,
                                    std::string*) {
  return std::make_shared<TrafficSplit>(conf, priority, env.workers == 0 ? 1 : env.workers);
}

}  // namespace

constinit const detail::Factory detail::make_traffic_split = build;

}  // namespace portico::plugins
