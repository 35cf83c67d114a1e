// IpSet (ip_set.h): CIDR blocks as merged, sorted intervals.
#include "plugins/ip_set.h"

#include <algorithm>

namespace portico::plugins {

IpSet::U128 IpSet::load(const router::IpAddress& ip) {
  U128 v;
  for (int i = 0; i < 8; ++i) v.hi = (v.hi << 8) | ip.bytes[i];
  for (int i = 8; i < 16; ++i) v.lo = (v.lo << 8) | ip.bytes[i];
  return v;
}

IpSet::IpSet(std::span<const router::Cidr> blocks) {
  std::vector<Range> ranges;
  ranges.reserve(blocks.size());
  for (const router::Cidr& c : blocks) {
    // Cidr::parse cleared the host bits: the block runs from its base to the base with them all set.
    const U128 first = load(c.base);
    const unsigned len = c.prefix_len;
    U128 last = first;
    const unsigned host_hi = len >= 64 ? 0 : 64 - len;    // host bits in the high word
    const unsigned host_lo = len >= 64 ? 128 - len : 64;  // host bits in the low word
    if (host_hi != 0) last.hi |= host_hi >= 64 ? ~0ull : (1ull << host_hi) - 1;
    if (host_lo != 0) last.lo |= host_lo >= 64 ? ~0ull : (1ull << host_lo) - 1;
    ranges.push_back({first, last});
  }
  std::sort(ranges.begin(), ranges.end(), [](const Range& a, const Range& b) { return a.first < b.first; });
  for (const Range& r : ranges) {
    if (!ranges_.empty()) {
      Range& prev = ranges_.back();
      // Overlapping, or adjacent (prev.last + 1 == r.first): one interval.
      U128 next = prev.last;
      const bool wraps = next.lo == ~0ull && next.hi == ~0ull;
      if (++next.lo == 0) ++next.hi;
      if (wraps || r.first <= next) {
        if (prev.last < r.last) prev.last = r.last;
        continue;
      }
    }
    ranges_.push_back(r);
  }
  ranges_.shrink_to_fit();
}

bool IpSet::contains(const router::IpAddress& ip) const {
  const U128 v = load(ip);
  // The last interval starting at or before v is the only one that can hold it.
  auto it = std::upper_bound(ranges_.begin(), ranges_.end(), v,
                             [](const U128& x, const Range& r) { return x < r.first; });
  if (it == ranges_.begin()) return false;
  --it;
  return v <= it->last;
}

}  // namespace portico::plugins
