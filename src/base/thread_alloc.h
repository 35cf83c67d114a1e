// The process's global operator new and delete (the unaligned forms; thread_alloc.cc replaces them in the
// portico executable only): a per-thread free list per 16-byte size class, up to kMaxPooledSize bytes, in
// front of malloc.
//
// Why: an HTTP/2 connection with 100 streams in flight starts and ends a hundred requests per loop turn, and
// each request allocates ~14 coroutine frames of 64 to 1,104 bytes. Asio's per-thread recycling keeps a few
// blocks per thread and glibc's tcache 7 per size, so most frames went through malloc's slow path: malloc
// and free were ~15% of a worker's instructions per HTTP/2 request (docs/benchmarks.md, THREADALLOC).
// Coroutine frames reach this allocator because BOOST_ASIO_DISABLE_AWAITABLE_FRAME_RECYCLING is set
// project-wide (root CMakeLists.txt).
//
// Contract: every thread has its own lists, so neither path takes a lock. A block freed on another thread
// than the one that allocated it joins the freeing thread's lists (every block is a malloc block of at least
// its class's size, so any thread may reuse or free it). Bounded: a thread keeps at most kMaxCachedBytes;
// beyond that, and for larger blocks, delete is free(). A thread's lists are freed when it exits (what it
// deletes after that goes to free(); the main thread's lists are left to the process's exit). When malloc
// fails, the thread's lists go back to malloc and it is tried again; then allocation failure behaves as the
// standard's operator new: the new_handler is called, then std::bad_alloc is thrown. A delete never
// allocates, so it cannot fail under memory exhaustion. Under AddressSanitizer the replacement is compiled
// out, so use-after-free stays detectable (valgrind's memcheck replaces operator new itself: there only
// OpenSSL's blocks go through the lists).
#pragma once

#include <cstddef>

namespace portico::base::thread_alloc {

constexpr size_t kGranule = 16;
constexpr size_t kMaxPooledSize = 2048;
constexpr size_t kMaxCachedBytes = size_t{4} << 20;

// Routes OpenSSL's allocations (CRYPTO_malloc, ~240 per TLS handshake) through the same lists. Call first
// thing in main: OpenSSL refuses once it has allocated. False when it refused or the lists are compiled out.
bool serve_openssl();

// Bytes the calling thread keeps on its free lists now (for tests and diagnostics); 0 where the replacement
// is compiled out or not linked.
size_t cached_bytes();
// True when the replacement is active in this binary.
bool enabled();

}  // namespace portico::base::thread_alloc
