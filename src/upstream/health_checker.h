// Active health checks: one checker per process (not per worker) on its own thread and event loop. It probes
// every node of every upstream that has `checks.active`, at the configured intervals, and writes the
// outcome into the nodes' shared NodeHealth. The snapshot builder hands it the current target set after each
// config apply; nodes that keep their (upstream, address) keep their state and schedule.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "config/model.h"
#include "tls/client_context.h"
#include "upstream/health.h"

namespace portico::upstream {

struct ProbeTarget {
  std::string upstream_key;  // upstream id, or "route:<id>" / "service:<id>" for inline upstreams
  config::ActiveCheck spec;
  std::string address;      // IP literal
  uint16_t port = 0;        // already resolved from spec.port or the node's port
  std::string host_header;  // spec.host or the node's host
  std::shared_ptr<NodeHealth> health;
  // spec.type "https": the client context (verifying as spec.https_verify_certificate says); null otherwise,
  // or when its material did not load (then every probe fails).
  std::shared_ptr<const tls::ClientContext> tls;
};

class ActiveHealthChecker {
 public:
  ActiveHealthChecker();
  ~ActiveHealthChecker();  // stops the thread
  ActiveHealthChecker(const ActiveHealthChecker&) = delete;
  ActiveHealthChecker& operator=(const ActiveHealthChecker&) = delete;

  void start();
  void stop();
  // Replaces the set of probed targets. Thread-safe; the probes switch over on the checker's thread.
  void set_targets(std::vector<ProbeTarget> targets);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::upstream
