// IpAddress parse/format/from_sockaddr and Cidr parse/contains.
#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "router/ip_address.h"

namespace portico::router {
namespace {

IpAddress ip(const std::string& s) {
  IpAddress a;
  EXPECT_TRUE(IpAddress::parse(s, a)) << s;
  return a;
}

Cidr cidr(const std::string& s) {
  Cidr c;
  EXPECT_TRUE(Cidr::parse(s, c)) << s;
  return c;
}

TEST(RouterIpAddress, ParseV4IsMapped) {
  IpAddress a = ip("203.0.113.9");
  EXPECT_TRUE(a.is_v4);
  const uint8_t want[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 203, 0, 113, 9};
  EXPECT_EQ(std::memcmp(a.bytes.data(), want, 16), 0);
  EXPECT_EQ(a.to_string(), "203.0.113.9");
}

TEST(RouterIpAddress, ParseV6) {
  IpAddress a = ip("2001:db8::1");
  EXPECT_FALSE(a.is_v4);
  EXPECT_EQ(a.bytes[0], 0x20);
  EXPECT_EQ(a.bytes[1], 0x01);
  EXPECT_EQ(a.bytes[15], 1);
  EXPECT_EQ(a.to_string(), "2001:db8::1");
  EXPECT_EQ(ip("::1").to_string(), "::1");
  EXPECT_EQ(ip("::").to_string(), "::");
  EXPECT_EQ(ip("2001:DB8:0:0:0:0:0:AB").to_string(), "2001:db8::ab");
  EXPECT_EQ(ip("::ffff:1.2.3.4").to_string(), "::ffff:1.2.3.4");  // written as IPv6, stays IPv6
}

TEST(RouterIpAddress, ParseRejects) {
  IpAddress a;
  for (const char* bad : {"", "1.2.3", "1.2.3.4.5", "256.1.1.1", "1.2.3.4 ", "abc", "1::2::3", "[::1]",
                          "::1/64", "fe80::1%eth0", "2001:db8:0:0:0:0:0:0:1"}) {
    EXPECT_FALSE(IpAddress::parse(bad, a)) << bad;
  }
  std::string long_text(100, '1');
  EXPECT_FALSE(IpAddress::parse(long_text, a));
}

TEST(RouterIpAddress, FormatExtremes) {
  char buf[46];
  EXPECT_EQ(ip("0.0.0.0").format(buf), 7u);
  EXPECT_STREQ(buf, "0.0.0.0");
  EXPECT_EQ(ip("255.255.255.255").format(buf), 15u);
  EXPECT_STREQ(buf, "255.255.255.255");
  EXPECT_EQ(ip("10.0.100.9").to_string(), "10.0.100.9");
  std::string longest = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255";
  IpAddress a;
  ASSERT_TRUE(IpAddress::parse(longest, a));
  size_t n = a.format(buf);
  EXPECT_EQ(n, std::strlen(buf));
  EXPECT_LE(n, 45u);
}

TEST(RouterIpAddress, FromSockaddr) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  inet_pton(AF_INET, "198.51.100.7", &in.sin_addr);
  IpAddress a = IpAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&in));
  EXPECT_TRUE(a.is_v4);
  EXPECT_EQ(a.to_string(), "198.51.100.7");

  sockaddr_in6 in6{};
  in6.sin6_family = AF_INET6;
  inet_pton(AF_INET6, "2001:db8::42", &in6.sin6_addr);
  a = IpAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&in6));
  EXPECT_FALSE(a.is_v4);
  EXPECT_EQ(a.to_string(), "2001:db8::42");

  // An IPv4 client on a dual-stack socket arrives IPv4-mapped and is reported as IPv4.
  inet_pton(AF_INET6, "::ffff:198.51.100.7", &in6.sin6_addr);
  a = IpAddress::from_sockaddr(reinterpret_cast<const sockaddr*>(&in6));
  EXPECT_TRUE(a.is_v4);
  EXPECT_EQ(a.to_string(), "198.51.100.7");
  EXPECT_EQ(std::memcmp(a.bytes.data(), ip("198.51.100.7").bytes.data(), 16), 0);
}

TEST(RouterCidr, ParseV4) {
  Cidr c = cidr("10.0.0.0/8");
  EXPECT_EQ(c.prefix_len, 104);
  EXPECT_TRUE(c.base.is_v4);
  EXPECT_EQ(cidr("10.1.2.3").prefix_len, 128);
  EXPECT_EQ(cidr("0.0.0.0/0").prefix_len, 96);
  EXPECT_EQ(cidr("10.1.2.3/32").prefix_len, 128);
  EXPECT_EQ(cidr("10.1.2.3/8").base.to_string(), "10.0.0.0");  // host bits cleared
}

TEST(RouterCidr, ParseV6) {
  EXPECT_EQ(cidr("fd00::/8").prefix_len, 8);
  EXPECT_EQ(cidr("::1").prefix_len, 128);
  EXPECT_EQ(cidr("::/0").prefix_len, 0);
  EXPECT_EQ(cidr("2001:db8:abcd::1/48").base.to_string(), "2001:db8:abcd::");
}

TEST(RouterCidr, ParseRejects) {
  Cidr c;
  for (const char* bad : {"10.0.0.0/33", "::/129", "10.0.0.0/", "10.0.0.0/x", "10.0.0.0/-1", "/8", "10.0.0/8",
                          "10.0.0.0/8/8", "10.0.0.0/0008"}) {
    EXPECT_FALSE(Cidr::parse(bad, c)) << bad;
  }
}

TEST(RouterCidr, ContainsV4) {
  Cidr c = cidr("10.0.0.0/8");
  EXPECT_TRUE(c.contains(ip("10.0.0.0")));
  EXPECT_TRUE(c.contains(ip("10.255.255.255")));
  EXPECT_FALSE(c.contains(ip("11.0.0.0")));
  EXPECT_FALSE(c.contains(ip("9.255.255.255")));
  EXPECT_FALSE(c.contains(ip("::a00:1")));  // IPv4-compatible, not IPv4-mapped
  EXPECT_TRUE(c.contains(ip("::ffff:10.1.2.3")));

  Cidr odd = cidr("192.168.4.0/22");
  EXPECT_TRUE(odd.contains(ip("192.168.7.255")));
  EXPECT_FALSE(odd.contains(ip("192.168.8.0")));
  EXPECT_FALSE(odd.contains(ip("192.168.3.255")));

  Cidr host = cidr("192.0.2.5");
  EXPECT_TRUE(host.contains(ip("192.0.2.5")));
  EXPECT_FALSE(host.contains(ip("192.0.2.4")));

  Cidr all4 = cidr("0.0.0.0/0");
  EXPECT_TRUE(all4.contains(ip("1.2.3.4")));
  EXPECT_FALSE(all4.contains(ip("2001:db8::1")));
}

TEST(RouterCidr, ContainsV6) {
  Cidr c = cidr("2001:db8::/32");
  EXPECT_TRUE(c.contains(ip("2001:db8::1")));
  EXPECT_TRUE(c.contains(ip("2001:db8:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_FALSE(c.contains(ip("2001:db9::")));
  EXPECT_FALSE(c.contains(ip("10.0.0.1")));

  Cidr deep = cidr("2001:db8::1:0/112");  // boundary inside the low 64 bits
  EXPECT_TRUE(deep.contains(ip("2001:db8::1:ffff")));
  EXPECT_FALSE(deep.contains(ip("2001:db8::2:0")));

  Cidr odd = cidr("fd00::/7");
  EXPECT_TRUE(odd.contains(ip("fc00::1")));
  EXPECT_TRUE(odd.contains(ip("fdff::1")));
  EXPECT_FALSE(odd.contains(ip("fe00::1")));

  EXPECT_TRUE(cidr("::/0").contains(ip("1.2.3.4")));
  EXPECT_TRUE(cidr("::/0").contains(ip("ffff::1")));
  EXPECT_TRUE(cidr("::1").contains(ip("::1")));
  EXPECT_FALSE(cidr("::1").contains(ip("::2")));
}

}  // namespace
}  // namespace portico::router
