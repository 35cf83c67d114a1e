// ReplyParser's bounds: a peer announcing an array or a bulk far larger than any reply Portico asks for (a
// redis_host that is not Redis, or a broken one) fails the parser, and so the connection, instead of making
// the worker allocate what it announced.
#include <gtest/gtest.h>

#include <string>

#include "redis/reply.h"

namespace portico::redis {
namespace {

TEST(RedisReplyBounds, HugeArrayFailsWithoutAllocating) {
  ReplyParser p;
  std::string announce = "*";
  announce.append(std::to_string(ReplyParser::kMaxElements + 1)).append("\r\n");
  ASSERT_TRUE(p.feed(announce.data(), announce.size()));
  EXPECT_EQ(p.next(), nullptr);
  EXPECT_TRUE(p.failed());
  EXPECT_LT(p.arena_capacity(), size_t{1} << 20);
}

TEST(RedisReplyBounds, ArrayAtTheBoundIsParsed) {
  ReplyParser p;
  std::string data = "*3\r\n:1\r\n:2\r\n:3\r\n";
  ASSERT_TRUE(p.feed(data.data(), data.size()));
  const Reply* r = p.next();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->elements.size(), 3u);
}

TEST(RedisReplyBounds, OversizedBulkFailsWhileBuffering) {
  ReplyParser p;
  std::string announce = "$";
  announce.append(std::to_string(ReplyParser::kMaxReplyBytes * 4)).append("\r\n");
  ASSERT_TRUE(p.feed(announce.data(), announce.size()));
  const std::string chunk(1 << 20, 'x');
  bool refused = false;
  for (size_t fed = 0; fed <= ReplyParser::kMaxReplyBytes + chunk.size() && !refused; fed += chunk.size()) {
    refused = !p.feed(chunk.data(), chunk.size());
    EXPECT_EQ(p.next(), nullptr);
  }
  EXPECT_TRUE(refused);
  EXPECT_TRUE(p.failed());
}

TEST(RedisReplyBounds, ManyLargeStringsInOneReplyFail) {
  // Each element is small enough alone; together they pass the per-reply arena bound.
  ReplyParser p;
  const size_t each = 1 << 20;
  const size_t count = ReplyParser::kMaxReplyBytes / each + 2;
  std::string head = "*";
  head.append(std::to_string(count)).append("\r\n");
  ASSERT_TRUE(p.feed(head.data(), head.size()));
  std::string bulk = "$";
  bulk.append(std::to_string(each)).append("\r\n").append(each, 'y').append("\r\n");
  bool failed = false;
  for (size_t i = 0; i < count && !failed; ++i) {
    if (!p.feed(bulk.data(), bulk.size())) failed = true;
    if (p.next() != nullptr) FAIL() << "a reply above the bound was returned";
    failed = failed || p.failed();
  }
  EXPECT_TRUE(failed);
}

}  // namespace
}  // namespace portico::redis
