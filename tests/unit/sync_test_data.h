// Test data shared by the unit_sync tests.
#pragma once

#include <gtest/gtest.h>

#include <cstddef>
#include <cstdio>
#include <string>

#include "sync/resource_set.h"

namespace portico::sync::testing {

// 100k route values of ~300 bytes (canonical), ids r000000..r099999; `bytes` (if not null) receives the
// total size of the values.
inline ResourceSet routes_100k(size_t* bytes = nullptr) {
  ResourceSet s;
  if (bytes != nullptr) *bytes = 0;
  for (int i = 0; i < 100000; ++i) {
    char buf[640];
    std::snprintf(buf, sizeof buf,
                  R"({"id":"r%06d","uri":"/api/v1/service-%05d/items/*","methods":["GET","POST"],)"
                  R"("hosts":["svc-%05d.example.internal"],"desc":"route %06d of team-%03d",)"
                  R"("upstream":{"type":"roundrobin","nodes":{"10.0.%d.%d:8080":1}},)"
                  R"("plugins":{"limit-count":{"count":%d,"time_window":60}},"priority":%d})",
                  i, i % 5000, i % 5000, i, i % 300, i / 250 % 256, i % 250, 100 + i % 900, i % 10);
    std::string value;
    EXPECT_TRUE(canonicalize(buf, value));
    if (bytes != nullptr) *bytes += value.size();
    char id[16];
    std::snprintf(id, sizeof id, "r%06d", i);
    s.put("routes", id, std::move(value));
  }
  return s;
}

}  // namespace portico::sync::testing
