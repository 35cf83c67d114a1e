// A set of IP addresses given as CIDR blocks (ip-restriction's whitelist / blacklist), answering "is this
// client in it" in O(log n) however many blocks there are. Each block is an interval of the 128-bit address
// space IPv4 and IPv6 share in router::Cidr (IPv4 as ::ffff:a.b.c.d); the intervals are sorted and
// overlapping or adjacent ones merged when the set is built, so a lookup is one binary search over disjoint
// intervals. A linear scan of the blocks is as fast for a handful of them and grows with the list: at 10,000
// blocks a lookup takes 9 ns against 48 us for the scan (bench/plugins_ip_restriction_bench.cc).
//
// Semantics are router::Cidr::contains's: an IPv6 block shorter than /96 also covers IPv4 clients.
// Immutable after build; contains() may run on any thread concurrently and allocates nothing.
#pragma once

#include <cstdint>
#include <span>
#include <vector>

#include "router/ip_address.h"

namespace portico::plugins {

class IpSet {
 public:
  IpSet() = default;
  explicit IpSet(std::span<const router::Cidr> blocks);

  bool contains(const router::IpAddress& ip) const;
  bool empty() const { return ranges_.empty(); }
  // Disjoint intervals after merging (for tests).
  size_t interval_count() const { return ranges_.size(); }

 private:
  struct U128 {
    uint64_t hi = 0, lo = 0;
    bool operator<(const U128& o) const { return hi != o.hi ? hi < o.hi : lo < o.lo; }
    bool operator<=(const U128& o) const { return !(o < *this); }
  };
  struct Range {
    U128 first, last;  // inclusive
  };
  static U128 load(const router::IpAddress& ip);

  std::vector<Range> ranges_;  // sorted by first, disjoint and not adjacent
};

}  // namespace portico::plugins
