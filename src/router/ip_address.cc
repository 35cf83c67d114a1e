#include "router/ip_address.h"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>

namespace portico::router {

namespace {

void set_v4(IpAddress& out, const void* four_bytes) {
  out.bytes.fill(0);
  out.bytes[10] = 0xff;
  out.bytes[11] = 0xff;
  std::memcpy(out.bytes.data() + 12, four_bytes, 4);
  out.is_v4 = true;
}

bool is_v4_mapped(const uint8_t* b) {
  for (int i = 0; i < 10; ++i) {
    if (b[i] != 0) return false;
  }
  return b[10] == 0xff && b[11] == 0xff;
}

uint64_t load_be64(const uint8_t* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v = (v << 8) | p[i];
  return v;
}

// Mask keeping the first `bits` (0..64) bits of a 64-bit word.
uint64_t high_mask(unsigned bits) {
  return bits == 0 ? 0 : bits >= 64 ? ~0ull : ~0ull << (64 - bits);
}

}  // namespace

bool IpAddress::parse(std::string_view text, IpAddress& out) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof buf) return false;
  std::memcpy(buf, text.data(), text.size());
  buf[text.size()] = '\0';
  if (text.find(':') == std::string_view::npos) {
    in_addr a;
    if (inet_pton(AF_INET, buf, &a) != 1) return false;
    set_v4(out, &a);
    return true;
  }
  in6_addr a6;
  if (inet_pton(AF_INET6, buf, &a6) != 1) return false;
  std::memcpy(out.bytes.data(), &a6, 16);
  out.is_v4 = false;
  return true;
}

IpAddress IpAddress::from_sockaddr(const sockaddr* sa) {
  IpAddress ip;
  if (sa == nullptr) return ip;
  if (sa->sa_family == AF_INET) {
    const auto* in = reinterpret_cast<const sockaddr_in*>(sa);
    set_v4(ip, &in->sin_addr);
  } else if (sa->sa_family == AF_INET6) {
    const auto* in6 = reinterpret_cast<const sockaddr_in6*>(sa);
    std::memcpy(ip.bytes.data(), &in6->sin6_addr, 16);
    ip.is_v4 = is_v4_mapped(ip.bytes.data());
  }
  return ip;
}

size_t IpAddress::format(char* out) const {
  if (is_v4) {
    char* p = out;
    for (int i = 12; i < 16; ++i) {
      unsigned v = bytes[i];
      if (v >= 100) *p++ = static_cast<char>('0' + v / 100);
      if (v >= 10) *p++ = static_cast<char>('0' + v / 10 % 10);
      *p++ = static_cast<char>('0' + v % 10);
      if (i != 15) *p++ = '.';
    }
    *p = '\0';
    return static_cast<size_t>(p - out);
  }
  if (inet_ntop(AF_INET6, bytes.data(), out, INET6_ADDRSTRLEN) == nullptr) {
    out[0] = '\0';
    return 0;
  }
  return std::strlen(out);
}

std::string IpAddress::to_string() const {
  char buf[INET6_ADDRSTRLEN];
  return std::string(buf, format(buf));
}

bool Cidr::parse(std::string_view text, Cidr& out) {
  size_t slash = text.find('/');
  IpAddress base;
  if (!IpAddress::parse(text.substr(0, slash), base)) return false;
  unsigned max_len = base.is_v4 ? 32 : 128;
  unsigned len = max_len;
  if (slash != std::string_view::npos) {
    std::string_view digits = text.substr(slash + 1);
    if (digits.empty() || digits.size() > 3) return false;
    len = 0;
    for (char c : digits) {
      if (c < '0' || c > '9') return false;
      len = len * 10 + static_cast<unsigned>(c - '0');
    }
    if (len > max_len) return false;
  }
  if (base.is_v4) len += 96;
  // Clear the host bits so contains() can compare masked words directly.
  for (unsigned i = 0; i < 16; ++i) {
    unsigned keep = len > i * 8 ? len - i * 8 : 0;
    if (keep < 8) base.bytes[i] &= static_cast<uint8_t>(0xff00u >> keep);
  }
  out.base = base;
  out.prefix_len = static_cast<uint8_t>(len);
  return true;
}

bool Cidr::contains(const IpAddress& ip) const {
  unsigned len = prefix_len;
  uint64_t m0 = high_mask(len >= 64 ? 64 : len);
  uint64_t m1 = high_mask(len > 64 ? len - 64 : 0);
  return ((load_be64(ip.bytes.data()) ^ load_be64(base.bytes.data())) & m0) == 0 &&
         ((load_be64(ip.bytes.data() + 8) ^ load_be64(base.bytes.data() + 8)) & m1) == 0;
}

}  // namespace portico::router
