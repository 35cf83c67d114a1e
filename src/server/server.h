// The Portico process in standalone mode: it owns the workers, the status listener, the active health
// checker and the config applier, and runs the process life cycle (start, reload, drain, exit).
//
// Threads: the caller's thread runs run() and waits for signals; each worker has its thread; the applier
// thread loads, validates and builds snapshots (never a worker); the status and health-check threads serve
// their own loops.
#pragma once

#include <memory>

#include "proxy/options.h"

namespace portico::server {

class Server {
 public:
  explicit Server(proxy::Options options);
  ~Server();

  // Runs until SIGTERM/SIGINT has drained the process. Returns the process exit code.
  int run();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::server
