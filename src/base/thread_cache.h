// this_thread_instance<T>(): the calling thread's own T, for per-thread caches without locks (recycled
// memory, spare buffers). Returns null while the thread's thread-locals are being destroyed: an object
// released late (a Session or stream destroyed at thread or process exit) must find the cache gone rather
// than touch a destroyed one. Any thread may call it; each gets its own instance.
#pragma once

namespace portico::base {

template <typename T>
T* this_thread_instance() {
  thread_local T instance;
  thread_local bool alive = true;  // trivially destructible: still readable after `instance` is destroyed
  struct Guard {
    bool& flag;
    ~Guard() { flag = false; }
  };
  thread_local Guard guard{alive};  // constructed after `instance`, so destroyed before it
  return alive ? &instance : nullptr;
}

}  // namespace portico::base
