// The per-thread size-class allocator behind the portico executable's operator new (base/thread_alloc.h).
// This binary links thread_alloc.cc, so every new and delete here goes through it.
#include "base/thread_alloc.h"

#include <gtest/gtest.h>
#include <openssl/crypto.h>

#include <cstdint>
#include <new>
#include <thread>
#include <vector>

namespace ta = portico::base::thread_alloc;

namespace {

class ThreadAlloc : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!ta::enabled()) GTEST_SKIP() << "compiled out under a sanitizer (its allocator must see every block)";
  }
};

// Opaque to the optimizer, so the new/delete pairs below are not elided.
void* volatile sink;
void* allocate(size_t n) {
  sink = ::operator new(n);
  return sink;
}

// First in the file: OpenSSL takes an allocator only before its first allocation, and nothing before this
// test uses OpenSSL.
TEST_F(ThreadAlloc, OpenSslAllocatesFromTheSameLists) {
  ASSERT_TRUE(ta::serve_openssl());
  void* a = OPENSSL_malloc(300);
  ASSERT_NE(a, nullptr);
  const size_t before = ta::cached_bytes();
  OPENSSL_free(a);
  EXPECT_EQ(ta::cached_bytes(), before + 304);
  void* b = OPENSSL_malloc(290);  // same class
  EXPECT_EQ(b, a);
  // Grown past the pooled sizes and shrunk again by glibc's realloc: still a block the lists may keep.
  auto* grown = static_cast<unsigned char*>(OPENSSL_realloc(b, 64 * 1024));
  ASSERT_NE(grown, nullptr);
  grown[64 * 1024 - 1] = 1;
  void* shrunk = OPENSSL_realloc(grown, 100);
  ASSERT_NE(shrunk, nullptr);
  OPENSSL_free(shrunk);
  OPENSSL_free(OPENSSL_zalloc(0));
}

TEST_F(ThreadAlloc, SizedDeleteKeepsTheBlockForTheNextNewOfItsClass) {
  void* a = allocate(200);
  const size_t before = ta::cached_bytes();
  ::operator delete(a, 200);
  EXPECT_EQ(ta::cached_bytes(), before + 208);  // the 16-byte class that holds 200 bytes
  void* b = allocate(193);                      // same class
  EXPECT_EQ(a, b);
  EXPECT_EQ(ta::cached_bytes(), before);
  ::operator delete(b, 193);
}

TEST_F(ThreadAlloc, UnsizedDeleteFindsTheClassFromMalloc) {
  // Coroutine frames come back this way (GCC frees them with the unsized operator delete).
  void* a = allocate(1104);
  const auto address = reinterpret_cast<uintptr_t>(a);
  const size_t before = ta::cached_bytes();
  ::operator delete(a);
  EXPECT_EQ(ta::cached_bytes(), before + 1104);
  void* b = allocate(1104);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(b), address);
  ::operator delete(b);
}

TEST_F(ThreadAlloc, LargeBlocksGoBackToMalloc) {
  const size_t before = ta::cached_bytes();
  void* a = allocate(ta::kMaxPooledSize + 1);
  ::operator delete(a, ta::kMaxPooledSize + 1);
  void* b = allocate(64 * 1024);
  ::operator delete(b);
  EXPECT_EQ(ta::cached_bytes(), before);
}

TEST_F(ThreadAlloc, AThreadKeepsAtMostItsBound) {
  std::vector<void*> blocks;
  for (size_t kept = 0; kept < 2 * ta::kMaxCachedBytes; kept += ta::kMaxPooledSize) {
    blocks.push_back(allocate(ta::kMaxPooledSize));
  }
  for (void* p : blocks) ::operator delete(p, ta::kMaxPooledSize);
  EXPECT_LE(ta::cached_bytes(), ta::kMaxCachedBytes);
  EXPECT_GT(ta::cached_bytes(), ta::kMaxCachedBytes - ta::kMaxPooledSize);
}

TEST_F(ThreadAlloc, ABlockFreedOnAnotherThreadJoinsThatThreadsLists) {
  void* a = allocate(512);
  const size_t mine = ta::cached_bytes();
  size_t theirs_before = 0, theirs_after = 0;
  void* reused = nullptr;
  std::thread([&] {
    theirs_before = ta::cached_bytes();
    ::operator delete(a, 512);
    theirs_after = ta::cached_bytes();
    reused = allocate(512);
    ::operator delete(reused, 512);
  }).join();
  EXPECT_EQ(theirs_after, theirs_before + 512);
  EXPECT_EQ(reused, a);
  EXPECT_LT(ta::cached_bytes(), mine + 512);  // not ours (std::thread's own state may have moved by a little)
}

TEST_F(ThreadAlloc, ZeroBytesIsAUniquePointer) {
  void* a = allocate(0);
  void* b = allocate(0);
  EXPECT_NE(a, nullptr);
  EXPECT_NE(a, b);
  ::operator delete(a);
  ::operator delete (b, size_t{0});
}

TEST_F(ThreadAlloc, FailureCallsTheNewHandlerThenThrows) {
  static int calls = 0;
  std::set_new_handler([] {
    ++calls;
    std::set_new_handler(nullptr);  // the next failure throws
  });
  EXPECT_THROW(allocate(SIZE_MAX / 2), std::bad_alloc);
  EXPECT_EQ(calls, 1);
  EXPECT_EQ(::operator new(SIZE_MAX / 2, std::nothrow), nullptr);
}

TEST_F(ThreadAlloc, ArraysAndContainersRoundTrip) {
  for (int round = 0; round < 1000; ++round) {
    std::vector<std::vector<int>> nested(17);
    for (size_t i = 0; i < nested.size(); ++i) nested[i].assign(i * 13 + round % 7, static_cast<int>(i));
    for (size_t i = 0; i < nested.size(); ++i) {
      for (int v : nested[i]) ASSERT_EQ(v, static_cast<int>(i));
    }
    auto* array = new uint64_t[round % 300 + 1];
    array[0] = 1;
    delete[] array;
  }
}

}  // namespace
