// MessageHead::find, MessageHead::connection_lists and reason_phrase.
#include <gtest/gtest.h>

#include <string>

#include "http/message.h"
#include "http/parser.h"

namespace portico::http {
namespace {

// The head's views point into `s`: pass literals or strings that outlive the head.
RequestHead parsed(std::string_view s) {
  RequestHead h;
  const ParseResult r = parse_request(s.data(), s.size(), {}, h);
  EXPECT_EQ(r.status, ParseStatus::complete) << r.error_reason;
  return h;
}

TEST(MessageFind, CaseInsensitiveFirstMatch) {
  const std::string s = "GET / HTTP/1.1\r\nHost: a\r\nX-Id: 1\r\nx-id: 2\r\nEmpty:\r\n\r\n";
  const RequestHead h = parsed(s);
  bool found = false;
  EXPECT_EQ(h.find("X-ID", &found), "1");
  EXPECT_TRUE(found);
  EXPECT_EQ(h.find("empty", &found), "");
  EXPECT_TRUE(found);
  EXPECT_EQ(h.find("missing", &found), "");
  EXPECT_FALSE(found);
  EXPECT_EQ(h.find("host"), "a");
  EXPECT_EQ(h.find("X-I"), "");  // no prefix match
}

TEST(MessageFind, IgnoresStaleEntriesPastCount) {
  RequestHead h = parsed("GET / HTTP/1.1\r\nHost: a\r\nX-Old: 1\r\n\r\n");
  const std::string s = "GET / HTTP/1.1\r\nHost: b\r\n\r\n";
  ASSERT_EQ(parse_request(s.data(), s.size(), {}, h).status, ParseStatus::complete);
  bool found = true;
  h.find("X-Old", &found);
  EXPECT_FALSE(found);
}

TEST(MessageConnectionLists, Tokens) {
  const RequestHead h = parsed(
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, X-Hop ,\r\nconnection: TE\r\nX-Hop: 1\r\n\r\n");
  EXPECT_TRUE(h.connection_lists("x-hop"));
  EXPECT_TRUE(h.connection_lists("Keep-Alive"));
  EXPECT_TRUE(h.connection_lists("te"));
  EXPECT_FALSE(h.connection_lists("X-Ho"));
  EXPECT_FALSE(h.connection_lists("Host"));
  EXPECT_FALSE(h.connection_lists(""));
  EXPECT_EQ(h.connection, uint32_t{kConnKeepAlive | kConnOther});
}

TEST(MessageConnectionLists, NoConnectionField) {
  const RequestHead h = parsed("GET / HTTP/1.1\r\nHost: a\r\nX-Connection: close\r\n\r\n");
  EXPECT_FALSE(h.connection_lists("close"));
  EXPECT_EQ(h.connection, 0u);
}

TEST(ReasonPhrase, Known) {
  EXPECT_EQ(reason_phrase(100), "Continue");
  EXPECT_EQ(reason_phrase(200), "OK");
  EXPECT_EQ(reason_phrase(204), "No Content");
  EXPECT_EQ(reason_phrase(304), "Not Modified");
  EXPECT_EQ(reason_phrase(400), "Bad Request");
  EXPECT_EQ(reason_phrase(413), "Content Too Large");
  EXPECT_EQ(reason_phrase(414), "URI Too Long");
  EXPECT_EQ(reason_phrase(417), "Expectation Failed");
  EXPECT_EQ(reason_phrase(431), "Request Header Fields Too Large");
  EXPECT_EQ(reason_phrase(501), "Not Implemented");
  EXPECT_EQ(reason_phrase(502), "Bad Gateway");
  EXPECT_EQ(reason_phrase(503), "Service Unavailable");
  EXPECT_EQ(reason_phrase(504), "Gateway Timeout");
  EXPECT_EQ(reason_phrase(505), "HTTP Version Not Supported");
}

TEST(ReasonPhrase, Unknown) {
  EXPECT_EQ(reason_phrase(0), "Unknown");
  EXPECT_EQ(reason_phrase(299), "Unknown");
  EXPECT_EQ(reason_phrase(-1), "Unknown");
  EXPECT_EQ(reason_phrase(1000), "Unknown");
}

TEST(Methods, Idempotent) {
  EXPECT_TRUE(is_idempotent(Method::GET));
  EXPECT_TRUE(is_idempotent(Method::PUT));
  EXPECT_FALSE(is_idempotent(Method::POST));
  EXPECT_FALSE(is_idempotent(Method::PATCH));
  EXPECT_FALSE(is_idempotent(Method::CONNECT));
}

}  // namespace
}  // namespace portico::http
