// An IPv4 or IPv6 address and CIDR prefixes over it, for `remote_addrs` matching and client addresses.
// Value types; no allocation.
#pragma once

#include <sys/socket.h>

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

namespace portico::router {

struct IpAddress {
  std::array<uint8_t, 16> bytes{};  // IPv4 stored as IPv4-mapped IPv6 (::ffff:a.b.c.d)
  bool is_v4 = true;

  // Dotted-quad IPv4 or RFC 4291 IPv6 text (no brackets, no zone id); false (out untouched) otherwise.
  static bool parse(std::string_view text, IpAddress& out);
  // AF_INET or AF_INET6; an IPv4-mapped IPv6 peer (dual-stack socket) comes back as IPv4 (is_v4 = true).
  // Null or another family gives a default-constructed address.
  static IpAddress from_sockaddr(const sockaddr* sa);
  // "203.0.113.9" or "2001:db8::1" into `out` (at least 46 bytes); returns the length written.
  size_t format(char* out) const;
  std::string to_string() const;
};

struct Cidr {
  IpAddress base;
  uint8_t prefix_len = 0;  // over the 128-bit mapped form (an IPv4 /8 is stored as /104)

  // "10.0.0.0/8", "10.1.2.3" (a /32), "fd00::/8", "::1". Host bits past the prefix are cleared.
  static bool parse(std::string_view text, Cidr& out);
  // Compares the first prefix_len bits of the mapped form: an IPv6 prefix of fewer than 96 bits therefore
  // also covers IPv4 clients (::/0 matches everyone).
  bool contains(const IpAddress& ip) const;
};

}  // namespace portico::router
