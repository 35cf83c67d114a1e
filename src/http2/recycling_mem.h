// An nghttp2 allocator (nghttp2_mem) that keeps small freed blocks per thread for reuse. nghttp2 allocates
// per stream (its stream state, header buffers, outbound items) and frees it when the stream closes; with a
// hundred streams starting and ending per loop turn, glibc's per-thread cache (7 chunks a size) sends most of
// these through malloc's slow path. Blocks up to kMaxBlock bytes are kept in 64-byte size classes, at most
// kMaxSpare per class and thread; larger ones go to malloc. Each block carries its class in a 16-byte header
// (nghttp2's free and realloc do not pass the size). Thread-local, no locks; a block freed on another thread
// joins that thread's cache. Used by the server codec (the client codec is unchanged).
#pragma once

#include <nghttp2/nghttp2.h>

namespace portico::http2 {

// The allocator (static storage; its functions use the calling thread's cache).
nghttp2_mem* recycling_mem();

}  // namespace portico::http2
