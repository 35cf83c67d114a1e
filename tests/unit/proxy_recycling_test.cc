// Per-thread recycling of per-stream objects (proxy/recycling.h): the memory of an object made with
// allocate_shared comes back for the next one of its type, and head strings keep their capacity.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <thread>

#include "proxy/recycling.h"

namespace portico::proxy {
namespace {

struct Thing {
  explicit Thing(int v) : value(v) {}
  int value;
  char payload[500] = {0};
};

TEST(RecyclingAllocator, TheNextObjectOfATypeReusesTheMemory) {
  auto a = std::allocate_shared<Thing>(RecyclingAllocator<Thing>(), 1);
  const void* first = a.get();
  a.reset();
  auto b = std::allocate_shared<Thing>(RecyclingAllocator<Thing>(), 2);
  EXPECT_EQ(static_cast<const void*>(b.get()), first);
  EXPECT_EQ(b->value, 2);  // constructed anew
  std::weak_ptr<Thing> weak = b;
  b.reset();  // the block stays until the weak reference goes too
  EXPECT_TRUE(weak.expired());
}

TEST(RecyclingAllocator, ObjectsFreedOnAnotherThreadAreSafe) {
  auto a = std::allocate_shared<Thing>(RecyclingAllocator<Thing>(), 3);
  std::thread t([p = std::move(a)]() mutable { p.reset(); });  // joins that thread's cache
  t.join();
  auto b = std::allocate_shared<Thing>(RecyclingAllocator<Thing>(), 4);
  EXPECT_EQ(b->value, 4);
}

TEST(StringCache, AGivenStringComesBackEmptyWithItsCapacity) {
  std::string s(1000, 'x');
  const size_t capacity = s.capacity();
  StringCache::give(std::move(s));
  std::string t = StringCache::take();
  EXPECT_TRUE(t.empty());
  EXPECT_EQ(t.capacity(), capacity);
  StringCache::give(std::string(100000, 'y'));  // too large to keep
  std::string u = StringCache::take();
  EXPECT_LT(u.capacity(), 100000u);
}

}  // namespace
}  // namespace portico::proxy
