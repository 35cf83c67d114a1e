#include "base/thread_alloc.h"

#include <malloc.h>
#include <openssl/crypto.h>
#include <pthread.h>

#include <cstdint>
#include <cstdlib>
#include <new>

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define PORTICO_THREAD_ALLOC 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer) || __has_feature(memory_sanitizer)
#define PORTICO_THREAD_ALLOC 0
#endif
#endif
#ifndef PORTICO_THREAD_ALLOC
#define PORTICO_THREAD_ALLOC 1
#endif

namespace portico::base::thread_alloc {
namespace {

constexpr size_t kClasses = kMaxPooledSize / kGranule;  // class c holds blocks of (c + 1) * kGranule bytes

struct FreeBlock {
  FreeBlock* next;
};

enum class State : uint8_t { unused, live, gone };

// Trivially constructible and destructible, so a thread reaches it without a guard; on_thread_exit (below)
// frees the lists when the thread ends.
struct Lists {
  FreeBlock* head[kClasses];
  size_t bytes;
  State state;
};
constinit thread_local Lists lists{};

// Back to malloc: at thread exit, and before an allocation fails for want of memory.
void release_lists() {
  for (FreeBlock*& head : lists.head) {
    while (head != nullptr) {
      FreeBlock* next = head->next;
      std::free(head);
      head = next;
    }
  }
  lists.bytes = 0;
}

// A pthread key's destructor, not a thread_local's: registering a thread_local destructor allocates (and
// glibc aborts the process when that fails: a thread's first delete under memory exhaustion would end it),
// while pthread_setspecific keeps a thread's first keys' values in the thread itself. Key destructors run
// after the thread's thread_local destructors, whose deletes are still kept until then.
void on_thread_exit(void*) {
  lists.state = State::gone;
  release_lists();
}

// The first block a thread keeps arranges for on_thread_exit (a thread that never frees keeps nothing).
[[gnu::noinline]] bool start_keeping() {
  if (lists.state == State::gone) return false;
  static pthread_key_t key;
  static const bool have_key = pthread_key_create(&key, on_thread_exit) == 0;
  if (!have_key || pthread_setspecific(key, &lists) != 0) return false;
  lists.state = State::live;
  return true;
}

// malloc, and once more after what this thread keeps went back to it; null when both fail.
void* malloc_or_release(size_t size) {
  if (void* p = std::malloc(size)) return p;
  if (lists.bytes == 0) return nullptr;
  release_lists();
  return std::malloc(size);
}

void* malloc_or_throw(size_t size) {
  for (;;) {
    if (void* p = malloc_or_release(size)) return p;
    std::new_handler handler = std::get_new_handler();
    if (handler == nullptr) throw std::bad_alloc();
    handler();
  }
}

// A kept block for `size` bytes, or null: then `size` becomes what to ask malloc for.
[[gnu::always_inline]] inline void* take(size_t& size) {
  if (size - 1 < kMaxPooledSize) {  // 1..kMaxPooledSize; 0 wraps around and takes malloc's path
    const size_t c = (size - 1) / kGranule;
    if (FreeBlock* block = lists.head[c]) {
      lists.head[c] = block->next;
      lists.bytes -= (c + 1) * kGranule;
      return block;
    }
    size = (c + 1) * kGranule;  // the class's size, so the block can serve any request of its class later
  } else if (size == 0) {
    size = 1;
  }
  return nullptr;
}

[[gnu::always_inline]] inline void* allocate(size_t size) {
  if (void* p = take(size)) return p;
  return malloc_or_throw(size);
}

// `c`: a class whose size the block is known to hold.
[[gnu::always_inline]] inline void keep_or_free(void* p, size_t c) {
  const size_t bytes = (c + 1) * kGranule;
  if ((lists.state == State::live || start_keeping()) && lists.bytes + bytes <= kMaxCachedBytes) {
    auto* block = static_cast<FreeBlock*>(p);
    block->next = lists.head[c];
    lists.head[c] = block;
    lists.bytes += bytes;
    return;
  }
  std::free(p);
}

void deallocate_sized(void* p, size_t size) {
  if (p == nullptr) return;
  // The size new was called with, so the block is at least its class's size (allocate rounded it up).
  if (size - 1 < kMaxPooledSize) return keep_or_free(p, (size - 1) / kGranule);
  std::free(p);
}

void deallocate(void* p) {
  if (p == nullptr) return;
  // Without the size: malloc's own record of the block bounds it from below. A block of class c was
  // malloc'ed with (c + 1) * kGranule bytes and glibc reports at least that; any class whose size fits in
  // what glibc reports may keep it.
  const size_t usable = malloc_usable_size(p);
  if (usable >= kGranule && usable < kMaxPooledSize + kGranule) {
    const size_t c = usable / kGranule - 1;
    return keep_or_free(p, c < kClasses ? c : kClasses - 1);
  }
  std::free(p);
}

}  // namespace

#if PORTICO_THREAD_ALLOC
namespace {

// OpenSSL's side: a null on failure instead of an exception, and every block a malloc block (so OpenSSL's
// realloc may be glibc's own).
void* openssl_malloc(size_t size, const char*, int) {
  if (void* p = take(size)) return p;
  return malloc_or_release(size);
}

void* openssl_realloc(void* p, size_t size, const char* file, int line) {
  if (p == nullptr) return openssl_malloc(size, file, line);
  if (size == 0) {
    deallocate(p);
    return nullptr;
  }
  return std::realloc(p, size);
}

void openssl_free(void* p, const char*, int) {
  deallocate(p);
}

}  // namespace
#endif

bool serve_openssl() {
#if PORTICO_THREAD_ALLOC
  return CRYPTO_set_mem_functions(openssl_malloc, openssl_realloc, openssl_free) == 1;
#else
  return false;
#endif
}

size_t cached_bytes() {
  return lists.bytes;
}

bool enabled() {
  return PORTICO_THREAD_ALLOC != 0;
}

}  // namespace portico::base::thread_alloc

#if PORTICO_THREAD_ALLOC
namespace ta = portico::base::thread_alloc;

void* operator new(size_t size) {
  return ta::allocate(size);
}
void* operator new[](size_t size) {
  return ta::allocate(size);
}
void* operator new(size_t size, const std::nothrow_t&) noexcept {
  try {
    return ta::allocate(size);
  } catch (...) {
    return nullptr;
  }
}
void* operator new[](size_t size, const std::nothrow_t&) noexcept {
  try {
    return ta::allocate(size);
  } catch (...) {
    return nullptr;
  }
}
void operator delete(void* p) noexcept {
  ta::deallocate(p);
}
void operator delete[](void* p) noexcept {
  ta::deallocate(p);
}
void operator delete(void* p, size_t size) noexcept {
  ta::deallocate_sized(p, size);
}
void operator delete[](void* p, size_t size) noexcept {
  ta::deallocate_sized(p, size);
}
void operator delete(void* p, const std::nothrow_t&) noexcept {
  ta::deallocate(p);
}
void operator delete[](void* p, const std::nothrow_t&) noexcept {
  ta::deallocate(p);
}
#endif
