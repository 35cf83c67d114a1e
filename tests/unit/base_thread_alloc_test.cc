// The per-thread size-class allocator behind the portico executable's operator new (base/thread_alloc.h).
// This binary links thread_alloc.cc, so every new and delete here goes through it.
#include "base/thread_alloc.h"

#include <gtest/gtest.h>
#include <openssl/crypto.h>

#include <sys/resource.h>

#include <condition_variable>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <mutex>
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

// malloc whose block escapes through `sink` (or the compiler may drop an allocation nobody uses); false when
// it failed.
bool kept_malloc(size_t n) {
  void* p = std::malloc(n);
  sink = p;
  return p != nullptr;
}

// Caps the address space a little above what the process maps now, then takes what is left in 64 KiB and
// then in small pieces (kept, never freed: the child process exits), so that the next malloc fails.
void exhaust_memory() {
  size_t mapped_kib = 0;
  if (FILE* f = std::fopen("/proc/self/status", "r")) {
    char line[256];
    while (std::fgets(line, sizeof line, f)) std::sscanf(line, "VmSize: %zu kB", &mapped_kib);
    std::fclose(f);
  }
  const rlimit cap{(mapped_kib + 32 * 1024) * 1024, RLIM_INFINITY};
  if (setrlimit(RLIMIT_AS, &cap) != 0) std::_Exit(3);
  for (int i = 0; i < 1 << 20 && kept_malloc(64 * 1024); ++i) {
  }
  // Every small size too: another thread's small malloc may be served from free chunks of its own size.
  for (size_t size = 8; size <= 1024; size += 16) {
    for (int i = 0; i < 1 << 22 && kept_malloc(size); ++i) {
    }
  }
  if (kept_malloc(64 * 1024)) std::_Exit(7);  // not exhausted: the test proves nothing
}

// A thread's first kept block must not allocate: glibc aborts the process when registering a thread_local
// destructor fails, which is what a first delete under memory exhaustion did.
TEST_F(ThreadAlloc, AThreadsFirstDeleteUnderExhaustionDoesNotAbort) {
  EXPECT_EXIT(
      {
        std::mutex m;
        std::condition_variable cv;
        bool go = false;
        void* block = allocate(128);
        std::thread late([&] {  // made (stack and all) before memory runs out
          std::unique_lock lock(m);
          cv.wait(lock, [&] { return go; });
          ::operator delete(block, 128);  // this thread's first delete
        });
        exhaust_memory();
        {
          std::lock_guard lock(m);
          go = true;
        }
        cv.notify_one();
        late.join();
        std::_Exit(0);
      },
      ::testing::ExitedWithCode(0), "");
}

// What a thread keeps goes back to malloc before an allocation is refused.
TEST_F(ThreadAlloc, KeptBlocksAreReleasedBeforeAnAllocationFails) {
  EXPECT_EXIT(
      {
        std::vector<void*> blocks;
        for (size_t kept = 0; kept < ta::kMaxCachedBytes; kept += 1024) blocks.push_back(allocate(1024));
        for (void* p : blocks) ::operator delete(p, 1024);
        if (ta::cached_bytes() < ta::kMaxCachedBytes / 2) std::_Exit(4);
        exhaust_memory();
        try {
          sink = ::operator new(64 * 1024);  // another size than the kept ones
        } catch (const std::bad_alloc&) {
          std::_Exit(5);
        }
        std::_Exit(ta::cached_bytes() == 0 ? 0 : 6);
      },
      ::testing::ExitedWithCode(0), "");
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
