// Process-wide Redis targets (README.md).
//
// The Registry is owned by the server and outlives every snapshot's use of it. At start-up the server
// attaches each worker's io_context (attach_worker), before any worker runs. Plugins, when a snapshot is
// built (any thread), ask for the Target of their Options: equal Options (Options::key) give the same
// Target while some plugin holds it, so routes sharing a Redis share its connections and its circuit
// breaker. On the request path a plugin asks the Target for its worker's Client.
#pragma once

#include <atomic>
#include <cstddef>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "redis/client.h"

namespace boost::asio {
class io_context;
}

namespace portico::redis {

struct RegistryCore;
struct TargetShared;

class Target : public std::enable_shared_from_this<Target> {
 public:
  ~Target();  // any thread: each worker's Client is destroyed on its worker (posted)
  Target(const Target&) = delete;
  Target& operator=(const Target&) = delete;

  const Options& options() const { return options_; }
  // Worker `worker`'s client, created on first use. Call only on that worker's thread. Null after
  // Registry::shutdown(): callers skip their call (e.g. a lease released while the loop is torn down).
  Client* client(size_t worker);
  // False while the circuit breaker is open. Any thread.
  bool available() const;

 private:
  friend class Registry;
  friend class Client;
  friend struct ClientCore;
  friend class Connection;
  Target(Options options, std::shared_ptr<RegistryCore> core);

  Options options_;
  std::string key_;
  std::shared_ptr<RegistryCore> core_;
  std::vector<std::unique_ptr<Client>> clients_;  // slot i written only by worker i
  // Options, breakers and TLS context, shared with the clients: a client whose destruction was posted to
  // its worker may still run handlers after the Target is gone.
  std::shared_ptr<TargetShared> shared_;
};

class Registry {
 public:
  Registry();
  ~Registry();
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Start-up, before workers run: worker `index` runs on `context`.
  void attach_worker(size_t index, boost::asio::io_context& context);
  size_t workers() const;
  // Worker `worker`'s event loop, for timers a plugin runs there (null when none is attached: tests). Any
  // thread; the loop outlives every snapshot.
  boost::asio::io_context* context(size_t worker) const;

  // The Target for `options` (same key: the same Target while it is held). Any thread.
  std::shared_ptr<Target> target(const Options& options);

  // Prometheus text of every live target: portico_redis_calls_total{target,mode,result},
  // portico_redis_node_up{target,mode,node} and portico_redis_circuit_opens_total{target,mode,node}. Any
  // thread (the status listener's).
  std::string render_metrics() const;

  // After the workers stopped (threads joined), before their io_contexts are destroyed: destroys every
  // Client (pending calls complete `shutdown`). Targets still held afterwards have no clients, and
  // Target::client() returns null from then on.
  void shutdown();

 private:
  std::shared_ptr<RegistryCore> core_;
};

}  // namespace portico::redis
