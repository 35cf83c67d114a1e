// Per-thread recycling of what an HTTP/2 stream allocates anew each time: the memory of its Session and
// H2Stream (RecyclingAllocator, for std::allocate_shared) and the Session's head string (StringCache).
// Under h2load -m 100 a worker starts and ends a hundred streams per loop turn; glibc's per-thread cache
// keeps 7 chunks of a size, so most of these went through malloc's slow path (measured: malloc and free were
// ~20% of the worker's instructions). The objects are still constructed and destroyed per stream (their state
// starts clean); only their memory is kept.
//
// Bounded: kMaxSpare blocks per type and strings per thread; a string that grew past kMaxKeptString is freed.
// Thread-local, so no locks: each worker is one thread. Memory freed on another thread (a Session destroyed
// with its io_context after the worker thread ended) goes to that thread's cache, or to the system once the
// thread's cache is gone.
#pragma once

#include <cstddef>
#include <new>
#include <string>
#include <vector>

#include "base/thread_cache.h"

namespace portico::proxy {

namespace recycling_detail {

// Blocks of sizeof(T): one free list per type and thread.
template <typename T>
class BlockCache {
 public:
  static constexpr size_t kMaxSpare = 256;

  static BlockCache* get() { return base::this_thread_instance<BlockCache>(); }
  ~BlockCache() {
    for (void* p : spare_) ::operator delete(p);
  }
  void* take() {
    if (spare_.empty()) return ::operator new(sizeof(T));
    void* p = spare_.back();
    spare_.pop_back();
    return p;
  }
  void give(void* p) {
    if (spare_.size() >= kMaxSpare) {
      ::operator delete(p);
      return;
    }
    spare_.push_back(p);
  }

 private:
  std::vector<void*> spare_;
};

}  // namespace recycling_detail

// An allocator for std::allocate_shared: single objects come from (and go back to) the thread's BlockCache
// of their type; arrays and anything else from operator new.
template <typename T>
struct RecyclingAllocator {
  using value_type = T;
  RecyclingAllocator() = default;
  template <typename U>
  RecyclingAllocator(const RecyclingAllocator<U>&) {}  // NOLINT: rebinding, as the standard requires

  T* allocate(size_t n) {
    if (n == 1) {
      if (auto* c = recycling_detail::BlockCache<T>::get()) return static_cast<T*>(c->take());
    }
    return static_cast<T*>(::operator new(n * sizeof(T)));
  }
  void deallocate(T* p, size_t n) {
    if (n == 1) {
      if (auto* c = recycling_detail::BlockCache<T>::get()) {
        c->give(p);
        return;
      }
    }
    ::operator delete(p);
  }
  template <typename U>
  bool operator==(const RecyclingAllocator<U>&) const {
    return true;
  }
};

// Strings with their capacity kept (cleared), per thread.
class StringCache {
 public:
  static constexpr size_t kMaxSpare = 256;
  static constexpr size_t kMaxKeptString = 16 * 1024;

  static std::string take() {
    StringCache* c = get();
    if (c == nullptr || c->spare_.empty()) return std::string();
    std::string s = std::move(c->spare_.back());
    c->spare_.pop_back();
    return s;
  }
  static void give(std::string&& s) {
    StringCache* c = get();
    if (c == nullptr || s.capacity() <= 15 || s.capacity() > kMaxKeptString ||
        c->spare_.size() >= kMaxSpare) {
      return;
    }
    s.clear();
    c->spare_.push_back(std::move(s));
  }

 private:
  static StringCache* get() { return base::this_thread_instance<StringCache>(); }
  std::vector<std::string> spare_;
};

}  // namespace portico::proxy
