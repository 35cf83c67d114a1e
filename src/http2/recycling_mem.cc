#include "http2/recycling_mem.h"

#include <nghttp2/nghttp2.h>

#include <cstddef>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "base/thread_cache.h"

namespace portico::http2 {
namespace {

constexpr size_t kHeader = 16;  // keeps the payload 16-byte aligned, as malloc's
constexpr size_t kClass = 64;
constexpr size_t kMaxBlock = 1024;
constexpr size_t kClasses = kMaxBlock / kClass;  // class c holds payloads of up to (c + 1) * kClass bytes
constexpr size_t kMaxSpare = 512;
constexpr size_t kLarge = kClasses;  // the header's mark for a block malloc'd at its own size

struct Cache {
  std::vector<void*> spare[kClasses];
  ~Cache() {
    for (auto& list : spare) {
      for (void* p : list) std::free(p);
    }
  }
};

Cache* cache() {
  return base::this_thread_instance<Cache>();
}

size_t& size_class(void* block) {
  return *static_cast<size_t*>(block);
}

void* payload(void* block) {
  return static_cast<char*>(block) + kHeader;
}

void* block_of(void* p) {
  return static_cast<char*>(p) - kHeader;
}

void* do_malloc(size_t size, void*) {
  if (size == 0) size = 1;
  if (size > kMaxBlock) {
    void* b = std::malloc(kHeader + size);
    if (b == nullptr) return nullptr;
    size_class(b) = kLarge;
    return payload(b);
  }
  const size_t c = (size - 1) / kClass;
  Cache* cc = cache();
  void* b = nullptr;
  if (cc != nullptr && !cc->spare[c].empty()) {
    b = cc->spare[c].back();
    cc->spare[c].pop_back();
  } else {
    b = std::malloc(kHeader + (c + 1) * kClass);
    if (b == nullptr) return nullptr;
  }
  size_class(b) = c;
  return payload(b);
}

// Under AddressSanitizer (the fuzz targets) every block goes back to malloc, so a use after free stays
// visible.
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kRecycle = false;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kRecycle = false;
#else
constexpr bool kRecycle = true;
#endif
#else
constexpr bool kRecycle = true;
#endif

void do_free(void* p, void*) {
  if (p == nullptr) return;
  void* b = block_of(p);
  const size_t c = size_class(b);
  Cache* cc = cache();
  if (!kRecycle || c == kLarge || cc == nullptr || cc->spare[c].size() >= kMaxSpare) {
    std::free(b);
    return;
  }
  cc->spare[c].push_back(b);
}

void* do_calloc(size_t n, size_t size, void* u) {
  if (size != 0 && n > static_cast<size_t>(-1) / size) return nullptr;
  void* p = do_malloc(n * size, u);
  if (p != nullptr) std::memset(p, 0, n * size);
  return p;
}

void* do_realloc(void* p, size_t size, void* u) {
  if (p == nullptr) return do_malloc(size, u);
  if (size == 0) {
    do_free(p, u);
    return nullptr;
  }
  void* b = block_of(p);
  const size_t c = size_class(b);
  if (c == kLarge) {
    void* nb = std::realloc(b, kHeader + size);
    if (nb == nullptr) return nullptr;
    if (size <= kMaxBlock) {
      // Shrunk into class range: stays a large block (its allocation is not a class size).
      size_class(nb) = kLarge;
    }
    return payload(nb);
  }
  const size_t have = (c + 1) * kClass;
  if (size <= have) return p;
  void* q = do_malloc(size, u);
  if (q == nullptr) return nullptr;
  std::memcpy(q, p, have);
  do_free(p, u);
  return q;
}

nghttp2_mem g_mem{nullptr, do_malloc, do_free, do_calloc, do_realloc};

}  // namespace

nghttp2_mem* recycling_mem() {
  return &g_mem;
}

}  // namespace portico::http2
