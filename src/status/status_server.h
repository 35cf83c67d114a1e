// The status listener, apart from the proxy listeners: GET /healthz (alive), /readyz (200 once a complete
// config serves and until draining starts), /metrics (Prometheus text) and /status/config (JSON). It runs
// on its own thread and event loop, so a scrape never competes with proxy traffic on a worker, and answers
// from callbacks given by the server (any of which may be called from the status thread).
//
// It keeps a spare descriptor (base::ReserveDescriptor): when the process is out of descriptors it frees the
// spare to accept one connection at a time and answer it, so a health checker reads "503 not ready" instead
// of timing out; past that it backs off like every listener (base::AcceptBackoff).
#pragma once

#include <functional>
#include <memory>
#include <string>

namespace portico::status {

struct StatusHandlers {
  // True when ready; otherwise false with `reason` set (sent in the 503 body).
  std::function<bool(std::string& reason)> ready;
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
