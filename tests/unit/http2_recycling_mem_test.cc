// The server codec's nghttp2 allocator (http2/recycling_mem.h): small blocks come back for reuse within their
// size class, realloc keeps the contents, and large blocks and zero sizes behave as malloc's.
#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>

#include "http2/recycling_mem.h"

namespace portico::http2 {
namespace {

TEST(RecyclingMem, AFreedSmallBlockIsReusedInItsClass) {
  nghttp2_mem* m = recycling_mem();
  void* a = m->malloc(100, m->mem_user_data);
  ASSERT_NE(a, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a) % 16, 0u);
  m->free(a, m->mem_user_data);
  void* b = m->malloc(120, m->mem_user_data);  // same 64-byte class (65..128)
  EXPECT_EQ(a, b);
  void* c = m->malloc(200, m->mem_user_data);  // another class: not that block
  EXPECT_NE(c, b);
  m->free(b, m->mem_user_data);
  m->free(c, m->mem_user_data);
}

TEST(RecyclingMem, ReallocKeepsTheBytesAcrossClassesAndToLarge) {
  nghttp2_mem* m = recycling_mem();
  auto* p = static_cast<char*>(m->malloc(10, m->mem_user_data));
  std::memcpy(p, "0123456789", 10);
  EXPECT_EQ(m->realloc(p, 60, m->mem_user_data), p);  // fits its class: in place
  p = static_cast<char*>(m->realloc(p, 500, m->mem_user_data));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::memcmp(p, "0123456789", 10), 0);
  p = static_cast<char*>(m->realloc(p, 100000, m->mem_user_data));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::memcmp(p, "0123456789", 10), 0);
  p[99999] = 'x';
  p = static_cast<char*>(m->realloc(p, 20, m->mem_user_data));
  ASSERT_NE(p, nullptr);
  EXPECT_EQ(std::memcmp(p, "0123456789", 10), 0);
  m->free(p, m->mem_user_data);
  void* q = m->realloc(nullptr, 0, m->mem_user_data);  // realloc(null, n) is malloc(n)
  EXPECT_NE(q, nullptr);
  m->free(q, m->mem_user_data);
}

TEST(RecyclingMem, CallocZeroesARecycledBlock) {
  nghttp2_mem* m = recycling_mem();
  auto* a = static_cast<char*>(m->malloc(256, m->mem_user_data));
  std::memset(a, 0xab, 256);
  m->free(a, m->mem_user_data);
  auto* b = static_cast<char*>(m->calloc(4, 64, m->mem_user_data));
  EXPECT_EQ(static_cast<void*>(b), static_cast<void*>(a));
  for (int i = 0; i < 256; ++i) ASSERT_EQ(b[i], 0) << i;
  m->free(b, m->mem_user_data);
  m->free(nullptr, m->mem_user_data);
}

}  // namespace
}  // namespace portico::http2
