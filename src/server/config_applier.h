// The config applier: the one thread that turns a configuration into a published snapshot. Its input is
// either a declarative file, which it watches (polling its identity every interval; a forced reload on
// SIGHUP) and loads and validates as a whole, or configurations submitted by the control plane (traditional
// role). It builds the snapshot (router, upstream runtimes) and hands it to every worker. A file that fails
// to load or validate is logged with the path of each offending field and counted; the last good snapshot
// keeps serving. Old snapshots are released on this thread, never on a worker, so freeing a large config
// never stalls a request.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "config/loader.h"
#include "snapshot/snapshot.h"
#include "snapshot/snapshot_builder.h"

namespace portico::server {

struct ApplierStatus {
  uint64_t generation = 0;
  std::string hash;
  size_t routes = 0;
  std::string source;
  int64_t revision = 0;  // etcd revision of the config (submitted configs); 0 for files
  std::string last_error;
  double last_success = 0;  // unix seconds
  double last_failure = 0;
};

class ConfigApplier {
 public:
  using Publish = std::function<void(std::shared_ptr<const snapshot::Snapshot>)>;

  using Produce = std::function<config::LoadResult()>;

  // `path` empty: no file; configurations arrive through submit().
  ConfigApplier(std::string path, double interval_seconds, snapshot::BuildContext context, Publish publish);
  ~ConfigApplier();

  // Loads the file once on the caller's thread (start-up). Returns true if a config now serves.
  bool apply_now();
  void start();  // starts the watch thread
  void stop();
  void request_reload();  // thread-safe (SIGHUP)
  // Thread-safe. Asks the applier thread to call `produce` and apply what it returns. Submissions that arrive
  // while one is being applied are coalesced: only the latest runs. `revision` is reported in status().
  void submit(Produce produce, std::string source, int64_t revision);

  // Data planes: applies a whole validated config at once, on the caller's thread (serialised with the
  // applier thread). False with `error` when it cannot be built (the last good config keeps serving).
  bool apply_config(config::LoadResult loaded, const std::string& source, int64_t revision,
                    std::string& error);

  enum class DeltaOutcome { applied, refused, no_base };
  // Data planes: applies `changes` on top of what is served, at a cost proportional to the change
  // (snapshot::SnapshotBuilder), on the caller's thread. `base_hash` is the content hash the changes start
  // from: no_base when that is not what is served (or nothing was applied with apply_config before); the
  // caller then loads the whole config. refused: the changes break a rule, `error` names each offending
  // field; the last good config keeps serving.
  DeltaOutcome apply_changes(std::span<const snapshot::ResourceChange> changes, const std::string& base_hash,
                             std::string hash, const std::string& source, int64_t revision,
                             std::string& error);

  bool has_config() const { return has_config_.load(); }
  ApplierStatus status() const;

 private:
  bool apply(bool forced);
  // Builds and publishes a whole config: through builder_ when deltas will follow (`for_deltas`), else once.
  // False (with `error`, if not null, describing why) when it is refused; the last good config keeps serving.
  bool apply_loaded(config::LoadResult loaded, const std::string& source, const std::string& origin,
                    int64_t revision, std::chrono::steady_clock::time_point started, bool for_deltas = false,
                    std::string* error = nullptr);
  bool reject(const std::string& why);
  // Publishes `snap`, made current; the rest of a successful apply (status, metrics, log). Under build_mu_.
  void install(std::shared_ptr<const snapshot::Snapshot> snap, int64_t revision, const char* how,
               std::chrono::steady_clock::time_point started,
               std::chrono::steady_clock::time_point loaded_at);
  void run();
  void release_retired();

  std::string path_;
  double interval_;
  snapshot::BuildContext context_;
  Publish publish_;

  std::mutex build_mu_;    // held while a config is built and published; guards current_, retired_, builder_
  mutable std::mutex mu_;  // guards status_, reload_, stop_
  std::condition_variable cv_;
  ApplierStatus status_;
  bool reload_ = false;
  Produce pending_;
  std::string pending_source_;
  int64_t pending_revision_ = 0;
  bool stop_ = false;
  std::atomic<bool> has_config_{false};
  std::string file_identity_;
  std::shared_ptr<const snapshot::Snapshot> current_;
  std::vector<std::shared_ptr<const snapshot::Snapshot>> retired_;
  std::unique_ptr<snapshot::SnapshotBuilder> builder_;  // data planes: what apply_changes applies on
  std::thread thread_;
};

}  // namespace portico::server
