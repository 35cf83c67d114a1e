// The status listener, apart from the proxy listeners: GET /healthz (alive), /readyz (200 once a complete
// config serves and until draining starts), /metrics (Prometheus text) and /status/config (JSON). It runs
// on its own thread and event loop, so a scrape never competes with proxy traffic on a worker, and answers
// from callbacks given by the server (any of which may be called from the status thread).
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace portico::status {

struct StatusHandlers {
  std::function<bool()> ready;
  std::function<std::string()> metrics;
  std::function<std::string()> config_json;
};

class StatusServer {
 public:
  explicit StatusServer(StatusHandlers handlers);
  ~StatusServer();
  StatusServer(const StatusServer&) = delete;
  StatusServer& operator=(const StatusServer&) = delete;

  // Binds "host:port" (throws std::system_error on failure); then start() serves on a new thread.
  void listen(const std::string& address);
  void start();
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace portico::status
