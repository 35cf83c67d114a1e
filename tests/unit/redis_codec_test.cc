// Reply parsing on the arena, RESP encoding, key slots, scripts and option keys (no server needed).
#include <gtest/gtest.h>

#include <string>

#include "redis/client.h"
#include "redis/reply.h"
#include "redis/resp.h"

namespace portico::redis {
namespace {

TEST(RedisReply, ParsesEveryType) {
  ReplyParser p;
  std::string wire = "+OK\r\n:42\r\n$5\r\nhello\r\n$-1\r\n-ERR bad thing\r\n*-1\r\n";
  ASSERT_TRUE(p.feed(wire.data(), wire.size()));
  const Reply* r = p.next();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, ReplyType::status);
  EXPECT_EQ(r->str, "OK");
  r = p.next();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, ReplyType::integer);
  EXPECT_EQ(r->integer, 42);
  r = p.next();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, ReplyType::string);
  EXPECT_EQ(r->str, "hello");
  r = p.next();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, ReplyType::nil);
  r = p.next();
  ASSERT_NE(r, nullptr);
  EXPECT_TRUE(r->is_error());
  EXPECT_EQ(r->error_code(), "ERR");
  EXPECT_EQ(r->str, "ERR bad thing");
  r = p.next();
  ASSERT_NE(r, nullptr);
  EXPECT_EQ(r->type, ReplyType::nil);
  EXPECT_EQ(p.next(), nullptr);
  EXPECT_FALSE(p.failed());
}

TEST(RedisReply, NestedArraysFedByteByByte) {
  // CLUSTER SLOTS' shape: [[0, 5460, ["127.0.0.1", 7000, "id"]], ...]
  std::string wire = "*2\r\n*3\r\n:0\r\n:5460\r\n*3\r\n$9\r\n127.0.0.1\r\n:7000\r\n$2\r\nid\r\n*0\r\n";
  ReplyParser p;
  const Reply* r = nullptr;
  for (char c : wire) {
    ASSERT_EQ(r, nullptr);
    ASSERT_TRUE(p.feed(&c, 1));
    r = p.next();
  }
  ASSERT_NE(r, nullptr);
  ASSERT_EQ(r->type, ReplyType::array);
  ASSERT_EQ(r->elements.size(), 2u);
  const Reply& range = r->elements[0];
  ASSERT_EQ(range.elements.size(), 3u);
  EXPECT_EQ(range.elements[1].integer, 5460);
  EXPECT_EQ(range.elements[2].elements[0].str, "127.0.0.1");
  EXPECT_EQ(range.elements[2].elements[1].integer, 7000);
  EXPECT_EQ(r->elements[1].type, ReplyType::array);
  EXPECT_TRUE(r->elements[1].elements.empty());
}

TEST(RedisReply, ArenaIsReusedBetweenReplies) {
  std::string one = "*100\r\n";
  for (int i = 0; i < 100; ++i) one += "$10\r\n0123456789\r\n";
  ReplyParser p;
  ASSERT_TRUE(p.feed(one.data(), one.size()));
  ASSERT_NE(p.next(), nullptr);
  const size_t warmed = p.arena_capacity();
  EXPECT_GT(warmed, 0u);
  for (int i = 0; i < 1000; ++i) {
    ASSERT_TRUE(p.feed(one.data(), one.size()));
    const Reply* r = p.next();
    ASSERT_NE(r, nullptr);
    ASSERT_EQ(r->elements.size(), 100u);
    EXPECT_EQ(r->elements[99].str, "0123456789");
  }
  EXPECT_EQ(p.arena_capacity(), warmed);
}

TEST(RedisReply, ProtocolErrorIsReported) {
  ReplyParser p;
  p.feed("?what\r\n", 7);
  EXPECT_EQ(p.next(), nullptr);
  EXPECT_TRUE(p.failed());
}

TEST(RedisResp, EncodesCommands) {
  std::string out;
  std::string_view argv[] = {"SET", "key", ""};
  append_command(out, argv);
  EXPECT_EQ(out, "*3\r\n$3\r\nSET\r\n$3\r\nkey\r\n$0\r\n\r\n");
  std::string big(1000, 'x');
  std::string_view argv2[] = {big};
  out.clear();
  append_command(out, argv2);
  EXPECT_EQ(out, "*1\r\n$1000\r\n" + big + "\r\n");
}

TEST(RedisSlots, Crc16AndHashTags) {
  EXPECT_EQ(crc16("123456789"), 0x31C3);
  EXPECT_EQ(key_slot("foo"), 12182);
  EXPECT_EQ(key_slot("bar"), 5061);
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("{user1000}.followers"));
  EXPECT_EQ(key_slot("{user1000}.following"), key_slot("user1000"));
  EXPECT_EQ(key_slot("foo{}{bar}"), key_slot("foo{}{bar}"));
  EXPECT_NE(key_slot("foo{}{bar}"), key_slot("bar"));  // an empty tag hashes the whole key
  EXPECT_EQ(key_slot("foo{{bar}}zap"), key_slot("{bar"));
  EXPECT_EQ(key_slot("foo{bar}{zap}"), key_slot("bar"));
}

TEST(RedisScript, Sha1) {
  Script s("return 1");
  EXPECT_EQ(s.sha(), "e0e1f9fabfc9d4800c877a703b823ac0578ff8db");
}

TEST(RedisOptions, KeyHidesThePasswordAndSeparatesTargets) {
  Options a;
  a.nodes = {{"127.0.0.1", 6379}};
  a.password = "s3cret-pass";
  Options b = a;
  EXPECT_EQ(a.key(), b.key());
  EXPECT_EQ(a.key().find("s3cret"), std::string::npos);
  b.password = "other";
  EXPECT_NE(a.key(), b.key());
  b = a;
  b.database = 2;
  EXPECT_NE(a.key(), b.key());
  b = a;
  b.cluster = true;
  EXPECT_NE(a.key(), b.key());
}

}  // namespace
}  // namespace portico::redis
