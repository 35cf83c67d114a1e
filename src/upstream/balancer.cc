#include "upstream/balancer.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <string>
#include <unordered_map>

#include "upstream/clock.h"
#include "upstream/hash.h"

namespace portico::upstream {

namespace detail {

// The consistent-hash ring of one priority tier: points sorted by hash, as two parallel arrays so that the
// binary search reads only the hashes.
struct Ring {
  std::vector<uint64_t> hashes;
  std::vector<uint32_t> nodes;
};

// Everything about an upstream that does not change until the next snapshot: built once by BalancerFactory
// and shared (read-only) by the balancers of every worker.
struct BalancerShared {
  config::LbType type = config::LbType::roundrobin;
  bool has_active = false;
  std::vector<int> weight;                  // per node, negative clamped to 0
  std::vector<int> tier_of;                 // per node: its priority tier, -1 for weight 0 (never picked)
  std::vector<int> order;                   // nodes of weight > 0, highest priority first, then by index
  std::vector<uint32_t> tier_begin;         // tier t is order[tier_begin[t] .. tier_begin[t + 1])
  std::vector<std::vector<int>> schedules;  // per tier: one period of smooth WRR (empty: too long, run live)
  std::vector<Ring> rings;                  // per tier (chash only)

  size_t tiers() const { return tier_begin.size() - 1; }
  std::span<const int> tier(size_t t) const {
    return std::span<const int>(order).subspan(tier_begin[t], tier_begin[t + 1] - tier_begin[t]);
  }
};

}  // namespace detail

namespace {

using detail::BalancerShared;
using detail::Ring;

// Consistent hashing: ring points per unit of weight, and the cap on the points of one tier (beyond it the
// points of every node are scaled down proportionally; 2^16 points = 768 KiB, shared by all workers).
constexpr uint64_t kPointsPerWeight = 160;
constexpr uint64_t kMaxRingPoints = uint64_t{1} << 16;
// Smooth WRR: a tier whose period (sum of weights / their gcd) is at most this many picks gets a precomputed
// schedule (O(1) picks); longer ones run nginx's O(n) loop live. The build work is bounded too.
constexpr uint64_t kMaxSchedule = 4096;
constexpr uint64_t kMaxScheduleWork = uint64_t{1} << 22;
// EWMA: decay time constant, latency charged for a failed request (at least), and the score of a node that
// has requests in flight but no latency sample yet (so a new node is not flooded before its first answer).
constexpr double kEwmaDecaySeconds = 10;
constexpr double kEwmaFailurePenalty = 1.0;
constexpr double kEwmaUnknownPenalty = 1e6;

constexpr int64_t kNever = std::numeric_limits<int64_t>::max();
constexpr int64_t kCooldownNs =
    std::chrono::duration_cast<std::chrono::nanoseconds>(NodeHealth::kPassiveCooldown).count();

// One period of smooth weighted round robin over `tier` (node indices), or empty if it would be too long.
// Weights divided by their gcd give the same sequence, so the period is sum(weight / gcd).
std::vector<int> build_schedule(const std::vector<int>& weight, std::span<const int> tier) {
  int g = 0;
  for (int i : tier) g = std::gcd(g, weight[i]);
  uint64_t period = 0;
  for (int i : tier) period += static_cast<uint64_t>(weight[i] / g);
  if (period == 0 || period > kMaxSchedule || period * tier.size() > kMaxScheduleWork) return {};
  std::vector<int64_t> cw(tier.size(), 0);
  std::vector<int> out;
  out.reserve(period);
  for (uint64_t step = 0; step < period; ++step) {
    size_t best = 0;
    for (size_t k = 0; k < tier.size(); ++k) {
      cw[k] += weight[tier[k]] / g;
      if (cw[k] > cw[best]) best = k;
    }
    cw[best] -= static_cast<int64_t>(period);
    out.push_back(tier[best]);
  }
  return out;
}

// The identity a node's ring points derive from: its "ip:port" (so data planes that resolved the same
// addresses agree), else its configured "host:port". Duplicates get a suffix so that their points differ.
std::vector<std::string> ring_identities(std::span<const NodeRuntime> nodes) {
  std::vector<std::string> ids(nodes.size());
  std::unordered_map<std::string, int> seen;
  for (size_t i = 0; i < nodes.size(); ++i) {
    std::string id = !nodes[i].pool_key.empty()
                         ? nodes[i].pool_key
                         : nodes[i].spec.host + ":" + std::to_string(nodes[i].spec.port);
    int dup = seen[id]++;
    if (dup > 0) id += "#dup" + std::to_string(dup);
    ids[i] = std::move(id);
  }
  return ids;
}

// Point r of a node sits at hash64("<identity>#<r>").
Ring build_ring(const std::vector<std::string>& ids, const std::vector<int>& weight,
                std::span<const int> tier) {
  uint64_t total = 0;
  for (int i : tier) total += static_cast<uint64_t>(weight[i]);
  bool scaled = total * kPointsPerWeight > kMaxRingPoints;
  std::vector<std::pair<uint64_t, uint32_t>> points;
  std::string buf;
  for (int i : tier) {
    uint64_t w = static_cast<uint64_t>(weight[i]);
    uint64_t count = scaled ? std::max<uint64_t>(1, w * kMaxRingPoints / total) : w * kPointsPerWeight;
    for (uint64_t r = 0; r < count; ++r) {
      buf = ids[i];
      buf += '#';
      buf += std::to_string(r);
      points.emplace_back(hash64(buf), static_cast<uint32_t>(i));
    }
  }
  std::sort(points.begin(), points.end());
  Ring ring;
  ring.hashes.reserve(points.size());
  ring.nodes.reserve(points.size());
  for (const auto& [h, i] : points) {
    ring.hashes.push_back(h);
    ring.nodes.push_back(i);
  }
  return ring;
}

bool contains(std::span<const int> list, int node) {
  for (int x : list) {
    if (x == node) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------------------
// Common part: which nodes may be picked. Node health is cached per balancer and re-read only when
// NodeHealth::generation() moves or a passive cool-down expires, so a pick normally costs one atomic load.

class BalancerBase : public Balancer {
 protected:
  BalancerBase(std::span<const NodeRuntime> nodes, std::shared_ptr<const BalancerShared> shared)
      : nodes_(nodes), shared_(std::move(shared)), s_(*shared_), usable_(nodes.size(), 0) {
    primary_.reserve(nodes.size());
    next_primary_.reserve(nodes.size());
    scratch_.reserve(nodes.size());
  }

  // Re-reads health if it may have changed; true if the primary set changed (the caller resets its state).
  bool refresh() {
    uint64_t g = NodeHealth::generation();
    if (g == gen_ && (expiry_ns_ == kNever || clock::now_ns() < expiry_ns_)) return false;
    return recompute(g);
  }

  bool valid(int node) const { return node >= 0 && static_cast<size_t>(node) < nodes_.size(); }

  // Whether some node of `exclude` belongs to the primary set (else the primary pick cannot return one).
  bool touches_primary(std::span<const int> exclude) const {
    for (int x : exclude) {
      if (valid(x) && usable_[x] && s_.tier_of[x] == primary_tier_) return true;
    }
    return false;
  }

  // The candidates of a pick that must avoid `exclude` (retries): the usable, not excluded nodes of the
  // highest tier that has one; failing that, the not excluded nodes of any health of the highest tier that
  // has one (a retry goes to an unhealthy node rather than fail). Fills scratch_ and returns the tier, or -1
  // when every node is excluded. `any_health` tells which of the two passes matched.
  int gather(std::span<const int> exclude, bool& any_health) {
    for (int pass = 0; pass < 2; ++pass) {
      bool any = pass == 1;
      if (any && fail_open_) break;  // usable_ already covers every node
      for (size_t t = 0; t < s_.tiers(); ++t) {
        scratch_.clear();
        for (int i : s_.tier(t)) {
          if ((any || usable_[i]) && !contains(exclude, i)) scratch_.push_back(i);
        }
        if (!scratch_.empty()) {
          any_health = any;
          return static_cast<int>(t);
        }
      }
    }
    scratch_.clear();
    return -1;
  }

  std::span<const NodeRuntime> nodes_;
  std::shared_ptr<const BalancerShared> shared_;
  const BalancerShared& s_;

  // Health cache.
  // Per node: weight > 0 and healthy_or_retry() (when failing open: every node of weight > 0).
  std::vector<uint8_t> usable_;
  bool fail_open_ = false;    // no node is healthy: all of them count as usable
  std::vector<int> primary_;  // usable nodes of the highest tier that has one: what a plain pick chooses from
  int primary_tier_ = -2;
  bool primary_complete_ = false;  // primary_ is its whole tier
  std::vector<int> scratch_;       // candidates of a pick with exclusions (capacity reserved: no allocation)

 private:
  bool recompute(uint64_t g) {
    gen_ = g;
    expiry_ns_ = kNever;
    bool any = false;
    for (int i : s_.order) {
      const NodeHealth* h = nodes_[i].health.get();
      bool ok = h == nullptr || h->healthy_or_retry(s_.has_active);
      if (!ok && !s_.has_active) expiry_ns_ = std::min(expiry_ns_, h->down_since_ns() + kCooldownNs);
      usable_[i] = ok;
      any = any || ok;
    }
    fail_open_ = !any;
    if (fail_open_) {
      for (int i : s_.order) usable_[i] = 1;
    }
    next_primary_.clear();
    int tier = -1;
    for (size_t t = 0; t < s_.tiers() && tier < 0; ++t) {
      for (int i : s_.tier(t)) {
        if (usable_[i]) next_primary_.push_back(i);
      }
      if (!next_primary_.empty()) tier = static_cast<int>(t);
    }
    bool changed = tier != primary_tier_ || next_primary_ != primary_;
    primary_.swap(next_primary_);
    primary_tier_ = tier;
    primary_complete_ = tier >= 0 && primary_.size() == s_.tier(static_cast<size_t>(tier)).size();
    return changed;
  }

  uint64_t gen_ = std::numeric_limits<uint64_t>::max();
  int64_t expiry_ns_ = kNever;  // when a passive cool-down ends (healthy_or_retry flips without an event)
  std::vector<int> next_primary_;
};

// Smooth weighted round robin (nginx): every pick adds each candidate's weight to its current weight, takes
// the candidate with the largest current weight and subtracts the candidates' total from it. A precomputed
// period replaces the loop while the whole tier is usable.
class SmoothRoundRobin {
 public:
  SmoothRoundRobin(const BalancerShared& s, size_t nodes, unsigned worker)
      : s_(s), cw_(nodes, 0), worker_(worker) {}

  void reset(int tier, bool complete) {
    std::fill(cw_.begin(), cw_.end(), 0);
    schedule_ = nullptr;
    if (tier >= 0 && complete && !s_.schedules.empty() && !s_.schedules[tier].empty()) {
      schedule_ = &s_.schedules[tier];
      pos_ = worker_ == 0 ? 0 : fmix64(worker_) % schedule_->size();
    }
  }

  int next(std::span<const int> primary) {
    if (schedule_ != nullptr) {
      int i = (*schedule_)[pos_];
      if (++pos_ == schedule_->size()) pos_ = 0;
      return i;
    }
    return live(primary);
  }

  int live(std::span<const int> candidates) {
    int64_t total = 0;
    int best = -1;
    int64_t best_cw = 0;
    for (int i : candidates) {
      int64_t w = s_.weight[i];
      int64_t c = cw_[i] += w;
      total += w;
      if (best < 0 || c > best_cw) {
        best = i;
        best_cw = c;
      }
    }
    cw_[best] -= total;
    return best;
  }

 private:
  const BalancerShared& s_;
  std::vector<int64_t> cw_;  // per node current weight (live mode)
  const std::vector<int>* schedule_ = nullptr;
  size_t pos_ = 0;
  unsigned worker_;
};

class RoundRobinBalancer final : public BalancerBase {
 public:
  RoundRobinBalancer(std::span<const NodeRuntime> nodes, std::shared_ptr<const BalancerShared> shared,
                     unsigned worker)
      : BalancerBase(nodes, std::move(shared)), rr_(s_, nodes.size(), worker) {}

  int pick(std::string_view, std::span<const int> exclude) override {
    if (refresh()) rr_.reset(primary_tier_, primary_complete_);
    if (primary_.empty()) return -1;
    if (exclude.empty() || !touches_primary(exclude)) return rr_.next(primary_);
    bool any;
    if (gather(exclude, any) < 0) return -1;
    return rr_.live(scratch_);
  }

 private:
  SmoothRoundRobin rr_;
};

// Consistent hashing: the first ring point at or after hash64(key), walking on past points of nodes that
// are not usable or are excluded. Without a key it is round robin.
class ChashBalancer final : public BalancerBase {
 public:
  ChashBalancer(std::span<const NodeRuntime> nodes, std::shared_ptr<const BalancerShared> shared,
                unsigned worker)
      : BalancerBase(nodes, std::move(shared)), rr_(s_, nodes.size(), worker) {}

  int pick(std::string_view key, std::span<const int> exclude) override {
    if (refresh()) rr_.reset(primary_tier_, primary_complete_);
    if (primary_.empty()) return -1;
    bool plain = exclude.empty() || !touches_primary(exclude);
    if (key.empty()) {
      if (plain) return rr_.next(primary_);
      bool any;
      if (gather(exclude, any) < 0) return -1;
      return rr_.live(scratch_);
    }
    uint64_t h = hash64(key);
    if (plain) return walk(primary_tier_, h, [this](int i) { return usable_[i] != 0; });
    bool any = false;
    int tier = gather(exclude, any);
    if (tier < 0) return -1;
    return walk(tier, h, [&](int i) { return (any || usable_[i]) && !contains(exclude, i); });
  }

 private:
  // The caller made sure the tier holds at least one acceptable node, so the walk ends within one turn.
  template <typename Ok>
  int walk(int tier, uint64_t h, Ok ok) const {
    const Ring& ring = s_.rings[tier];
    size_t n = ring.hashes.size();
    size_t k = std::lower_bound(ring.hashes.begin(), ring.hashes.end(), h) - ring.hashes.begin();
    for (size_t step = 0; step < n; ++step, ++k) {
      if (k == n) k = 0;
      int i = static_cast<int>(ring.nodes[k]);
      if (ok(i)) return i;
    }
    return -1;
  }

  SmoothRoundRobin rr_;
};

// Least connections: the fewest requests in flight (on this worker) per unit of weight; ties go to the node
// picked least recently, so they rotate. The primary set is kept in a binary min-heap: O(log n) per pick,
// start and end.
class LeastConnBalancer final : public BalancerBase {
 public:
  LeastConnBalancer(std::span<const NodeRuntime> nodes, std::shared_ptr<const BalancerShared> shared)
      : BalancerBase(nodes, std::move(shared)),
        in_flight_(nodes.size(), 0),
        seq_(nodes.size()),
        heap_pos_(nodes.size(), -1) {
    heap_.reserve(nodes.size());
    std::iota(seq_.begin(), seq_.end(), 0);  // ties first go in index order
    clock_ = nodes.size();
  }

  int pick(std::string_view, std::span<const int> exclude) override {
    if (refresh()) rebuild_heap();
    if (primary_.empty()) return -1;
    int best = -1;
    if (exclude.empty() || !touches_primary(exclude)) {
      best = heap_[0];
    } else {
      bool any;
      if (gather(exclude, any) < 0) return -1;
      for (int i : scratch_) {
        if (best < 0 || before(i, best)) best = i;
      }
    }
    seq_[best] = ++clock_;
    if (heap_pos_[best] >= 0) sift_down(heap_pos_[best]);
    return best;
  }

  void on_request_start(int node) override {
    if (!valid(node)) return;
    ++in_flight_[node];
    if (heap_pos_[node] >= 0) sift_down(heap_pos_[node]);
  }

  void on_request_end(int node, double, bool) override {
    if (!valid(node) || in_flight_[node] == 0) return;
    --in_flight_[node];
    if (heap_pos_[node] >= 0) sift_up(heap_pos_[node]);
  }

 private:
  // in_flight[a] / weight[a] < in_flight[b] / weight[b], then least recently picked.
  bool before(int a, int b) const {
    uint64_t l = uint64_t{in_flight_[a]} * static_cast<uint64_t>(s_.weight[b]);
    uint64_t r = uint64_t{in_flight_[b]} * static_cast<uint64_t>(s_.weight[a]);
    if (l != r) return l < r;
    return seq_[a] < seq_[b];
  }

  void rebuild_heap() {
    for (int i : heap_) heap_pos_[i] = -1;
    heap_.assign(primary_.begin(), primary_.end());
    for (size_t k = 0; k < heap_.size(); ++k) heap_pos_[heap_[k]] = static_cast<int>(k);
    for (size_t k = heap_.size() / 2; k-- > 0;) sift_down(static_cast<int>(k));
  }

  void swap_at(int a, int b) {
    std::swap(heap_[a], heap_[b]);
    heap_pos_[heap_[a]] = a;
    heap_pos_[heap_[b]] = b;
  }

  void sift_up(int k) {
    while (k > 0) {
      int parent = (k - 1) / 2;
      if (!before(heap_[k], heap_[parent])) break;
      swap_at(k, parent);
      k = parent;
    }
  }

  void sift_down(int k) {
    int n = static_cast<int>(heap_.size());
    for (;;) {
      int l = 2 * k + 1;
      if (l >= n) break;
      int m = l + 1 < n && before(heap_[l + 1], heap_[l]) ? l + 1 : l;
      if (!before(heap_[m], heap_[k])) break;
      swap_at(k, m);
      k = m;
    }
  }

  std::vector<uint32_t> in_flight_;
  std::vector<uint64_t> seq_;  // when each node was last picked
  uint64_t clock_ = 0;
  std::vector<int> heap_;
  std::vector<int> heap_pos_;  // per node: position in heap_, -1 if not in the primary set
};

// Peak EWMA of latency times (in flight + 1), compared between two random usable nodes (power of two
// choices). A latency sample above the average replaces it at once (peak); a lower one is blended with a
// weight that depends on the time since the previous sample (time constant kEwmaDecaySeconds). Read without
// new samples, the average decays towards 0, so an idle or slow node is tried again eventually.
class EwmaBalancer final : public BalancerBase {
 public:
  EwmaBalancer(std::span<const NodeRuntime> nodes, std::shared_ptr<const BalancerShared> shared,
               unsigned worker)
      : BalancerBase(nodes, std::move(shared)), stats_(nodes.size()), rng_(fmix64(worker + 1) | 1) {}

  int pick(std::string_view, std::span<const int> exclude) override {
    refresh();
    if (primary_.empty()) return -1;
    if (exclude.empty() || !touches_primary(exclude)) return choose(primary_);
    bool any;
    if (gather(exclude, any) < 0) return -1;
    return choose(scratch_);
  }

  void on_request_start(int node) override {
    if (valid(node)) ++stats_[node].in_flight;
  }

  bool uses_latency() const override { return true; }

  void on_request_end(int node, double latency_seconds, bool failed) override {
    if (!valid(node)) return;
    Stat& s = stats_[node];
    if (s.in_flight > 0) --s.in_flight;
    double sample = std::max(latency_seconds, 0.0);
    if (failed) sample = std::max(sample, kEwmaFailurePenalty);
    int64_t now = clock::now_ns();
    if (sample > s.cost) {
      s.cost = sample;
    } else {
      double w = decay(now - s.stamp_ns);
      s.cost = s.cost * w + sample * (1 - w);
    }
    s.stamp_ns = now;
  }

 private:
  struct Stat {
    double cost = 0;  // seconds
    int64_t stamp_ns = 0;
    uint32_t in_flight = 0;
  };

  static double decay(int64_t elapsed_ns) {
    if (elapsed_ns <= 0) return 1;
    return std::exp(-static_cast<double>(elapsed_ns) * 1e-9 / kEwmaDecaySeconds);
  }

  double score(int i, int64_t now) const {
    const Stat& s = stats_[i];
    double cost = s.cost * decay(now - s.stamp_ns);
    if (cost <= 0) return s.in_flight == 0 ? 0 : kEwmaUnknownPenalty * s.in_flight;
    return cost * (s.in_flight + 1);
  }

  // score(a) < score(b). Both averages decay by the same factor from `now` back to the later of the two
  // stamps, so comparing needs only their relative decay: one exp() and no clock read.
  bool lower(int a, int b) const {
    const Stat& x = stats_[a];
    const Stat& y = stats_[b];
    if (x.cost <= 0 || y.cost <= 0) {  // no sample yet: the unknown-node rules need absolute scores
      int64_t now = clock::now_ns();
      return score(a, now) < score(b, now);
    }
    double lhs = x.cost * (x.in_flight + 1.0);
    double rhs = y.cost * (y.in_flight + 1.0);
    if (x.stamp_ns >= y.stamp_ns) {
      rhs *= decay(x.stamp_ns - y.stamp_ns);
    } else {
      lhs *= decay(y.stamp_ns - x.stamp_ns);
    }
    return lhs < rhs;
  }

  uint64_t next_random() {  // xorshift64*
    rng_ ^= rng_ >> 12;
    rng_ ^= rng_ << 25;
    rng_ ^= rng_ >> 27;
    return rng_ * 0x2545f4914f6cdd1dull;
  }

  int choose(std::span<const int> candidates) {
    size_t m = candidates.size();
    if (m == 1) return candidates[0];
    uint64_t r = next_random();
    size_t a = static_cast<size_t>(r % m);
    size_t b = static_cast<size_t>((r >> 32) % (m - 1));
    if (b >= a) ++b;
    return lower(candidates[b], candidates[a]) ? candidates[b] : candidates[a];
  }

  std::vector<Stat> stats_;
  uint64_t rng_;
};

}  // namespace

BalancerFactory::BalancerFactory(const config::Upstream& spec, std::span<const NodeRuntime> nodes)
    : nodes_(nodes) {
  auto s = std::make_shared<BalancerShared>();
  s->type = spec.type;
  s->has_active = spec.checks && spec.checks->active.has_value();
  size_t n = nodes.size();
  s->weight.resize(n);
  s->tier_of.assign(n, -1);
  for (size_t i = 0; i < n; ++i) {
    s->weight[i] = std::max(0, nodes[i].spec.weight);
    if (s->weight[i] > 0) s->order.push_back(static_cast<int>(i));
  }
  std::stable_sort(s->order.begin(), s->order.end(),
                   [&](int a, int b) { return nodes[a].spec.priority > nodes[b].spec.priority; });
  s->tier_begin.push_back(0);
  for (size_t k = 0; k < s->order.size(); ++k) {
    if (k > 0 && nodes[s->order[k]].spec.priority != nodes[s->order[k - 1]].spec.priority) {
      s->tier_begin.push_back(static_cast<uint32_t>(k));
    }
    s->tier_of[s->order[k]] = static_cast<int>(s->tier_begin.size() - 1);
  }
  if (!s->order.empty()) s->tier_begin.push_back(static_cast<uint32_t>(s->order.size()));

  if (spec.type == config::LbType::roundrobin || spec.type == config::LbType::chash) {
    for (size_t t = 0; t < s->tiers(); ++t) s->schedules.push_back(build_schedule(s->weight, s->tier(t)));
  }
  if (spec.type == config::LbType::chash) {
    std::vector<std::string> ids = ring_identities(nodes);
    for (size_t t = 0; t < s->tiers(); ++t) s->rings.push_back(build_ring(ids, s->weight, s->tier(t)));
  }
  shared_ = std::move(s);
}

std::unique_ptr<Balancer> BalancerFactory::create(unsigned worker) const {
  switch (shared_->type) {
    case config::LbType::roundrobin:
      return std::make_unique<RoundRobinBalancer>(nodes_, shared_, worker);
    case config::LbType::chash:
      return std::make_unique<ChashBalancer>(nodes_, shared_, worker);
    case config::LbType::least_conn:
      return std::make_unique<LeastConnBalancer>(nodes_, shared_);
    case config::LbType::ewma:
      return std::make_unique<EwmaBalancer>(nodes_, shared_, worker);
  }
  return std::make_unique<RoundRobinBalancer>(nodes_, shared_, worker);
}

std::unique_ptr<Balancer> make_balancer(const config::Upstream& spec, std::span<const NodeRuntime> nodes) {
  return BalancerFactory(spec, nodes).create();
}

}  // namespace portico::upstream
