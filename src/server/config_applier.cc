#include "server/config_applier.h"

#include <malloc.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdio>
#include <ctime>

#include "base/log.h"
#include "config/loader.h"
#include "status/metrics.h"
#include "upstream/health.h"

namespace portico::server {
namespace {

double unix_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

// CPU time of the calling thread.
double thread_cpu_ms() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// Changes when the file is replaced (rename), rewritten or touched.
std::string file_identity(const std::string& path) {
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "missing";
  return std::to_string(st.st_ino) + ":" + std::to_string(st.st_size) + ":" +
         std::to_string(st.st_mtim.tv_sec) + "." + std::to_string(st.st_mtim.tv_nsec);
}

}  // namespace

ConfigApplier::ConfigApplier(std::string path, double interval_seconds, snapshot::BuildContext context,
                             Publish publish)
    : path_(std::move(path)), interval_(interval_seconds), context_(context), publish_(std::move(publish)) {}

ConfigApplier::~ConfigApplier() {
  stop();
}

bool ConfigApplier::apply_now() {
  apply(true);
  return has_config();
}

void ConfigApplier::start() {
  thread_ = std::thread([this] { run(); });
}

void ConfigApplier::stop() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  cv_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void ConfigApplier::request_reload() {
  {
    std::lock_guard lock(mu_);
    reload_ = true;
  }
  cv_.notify_all();
}

ApplierStatus ConfigApplier::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

void ConfigApplier::submit(Produce produce, std::string source, int64_t revision) {
  {
    std::lock_guard lock(mu_);
    pending_ = std::move(produce);
    pending_source_ = std::move(source);
    pending_revision_ = revision;
  }
  cv_.notify_all();
}

void ConfigApplier::run() {
  auto interval =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::duration<double>(interval_));
  while (true) {
    bool forced = false;
    Produce produce;
    std::string source;
    int64_t revision = 0;
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, interval, [this] { return stop_ || reload_ || pending_; });
      if (stop_) return;
      forced = reload_;
      reload_ = false;
      produce = std::move(pending_);
      pending_ = nullptr;
      source = pending_source_;
      revision = pending_revision_;
    }
    if (produce) {
      auto started = std::chrono::steady_clock::now();
      apply_loaded(produce(), source, source + " revision " + std::to_string(revision), revision, started);
    } else if (!path_.empty()) {
      if (forced) PORTICO_LOG(info, "reload requested (SIGHUP)");
      apply(forced);
    }
    release_retired();
  }
}

bool ConfigApplier::apply(bool forced) {
  if (path_.empty()) return has_config();
  std::string identity = file_identity(path_);
  if (!forced && identity == file_identity_) return true;
  file_identity_ = identity;
  auto started = std::chrono::steady_clock::now();
  return apply_loaded(config::load_file(path_), "file", path_, 0, started);
}

bool ConfigApplier::reject(const std::string& why) {
  PORTICO_LOG(error, "config rejected, the last good config keeps serving: %s", why.c_str());
  double now = unix_now();
  if (context_.metrics) {
    context_.metrics->config_apply_failures.fetch_add(1);
    context_.metrics->config_last_failure.store(now);
  }
  std::lock_guard lock(mu_);
  status_.last_error = why;
  status_.last_failure = now;
  return false;
}

bool ConfigApplier::apply_loaded(config::LoadResult loaded, const std::string& source,
                                 const std::string& origin, int64_t revision,
                                 std::chrono::steady_clock::time_point started, bool for_deltas,
                                 std::string* error) {
  std::lock_guard build(build_mu_);
  if (!loaded.ok) {
    if (error != nullptr) *error = loaded.describe();
    return reject(loaded.describe(origin));
  }
  // Touched, not changed (for deltas, the builder must hold it too: after a failed delta it holds nothing).
  if (current_ && loaded.content_hash == current_->hash &&
      (!for_deltas || (builder_ && builder_->hash() == current_->hash))) {
    // A source repaired back to what serves (a broken file fixed to its last good content) has nothing to
    // apply, and the earlier error no longer describes it.
    std::lock_guard lock(mu_);
    if (!status_.last_error.empty()) {
      PORTICO_LOG(info, "config source %s matches the serving config again (generation %llu): error cleared",
                  origin.c_str(), static_cast<unsigned long long>(current_->generation));
      status_.last_error.clear();
    }
    status_.revision = revision;
    status_.source = source;
    return true;
  }
  auto loaded_at = std::chrono::steady_clock::now();
  uint64_t generation = current_ ? current_->generation + 1 : 1;
  std::string why;
  std::shared_ptr<const snapshot::Snapshot> snap;
  if (for_deltas) {
    if (!builder_) builder_ = std::make_unique<snapshot::SnapshotBuilder>(context_);
    snap = builder_->build(std::move(loaded.config), loaded.content_hash, source, generation, &why);
  } else {
    builder_.reset();  // a file or etcd config: deltas never apply to it
    snap = snapshot::build(std::move(loaded.config), loaded.content_hash, source, generation, context_, &why);
  }
  if (!snap) {
    if (error != nullptr) *error = why;
    return reject(origin + ": " + why);
  }
  install(std::move(snap), revision, "", started, loaded_at);
  return true;
}

bool ConfigApplier::apply_config(config::LoadResult loaded, const std::string& source, int64_t revision,
                                 std::string& error) {
  return apply_loaded(std::move(loaded), source, source + " revision " + std::to_string(revision), revision,
                      std::chrono::steady_clock::now(), true, &error);
}

ConfigApplier::DeltaOutcome ConfigApplier::apply_changes(std::span<const snapshot::ResourceChange> changes,
                                                         const std::string& base_hash, std::string hash,
                                                         const std::string& source, int64_t revision,
                                                         std::string& error) {
  auto started = std::chrono::steady_clock::now();
  std::lock_guard build(build_mu_);
  if (!builder_ || !current_ || builder_->hash() != base_hash || current_->hash != base_hash) {
    return DeltaOutcome::no_base;
  }
  uint64_t generation = current_->generation + 1;
  const double cpu_started = thread_cpu_ms();
  snapshot::SnapshotBuilder::Result result;
  try {
    result = builder_->apply(changes, std::move(hash), source, generation);
  } catch (const std::exception& e) {  // its state may be half changed: the whole config is loaded instead
    PORTICO_LOG(error, "applying a delta failed (%s); loading the whole config instead", e.what());
    builder_.reset();
    return DeltaOutcome::no_base;
  }
  const double cpu_ms = thread_cpu_ms() - cpu_started;
  switch (result.outcome) {
    case snapshot::SnapshotBuilder::Outcome::no_base:
      if (!result.internal_error.empty()) {
        PORTICO_LOG(error, "applying a delta failed (%s); loading the whole config instead",
                    result.internal_error.c_str());
      }
      return DeltaOutcome::no_base;
    case snapshot::SnapshotBuilder::Outcome::invalid: {
      config::LoadResult described;
      described.errors = std::move(result.errors);
      described.errors_truncated = result.errors_truncated;
      error = described.describe();
      reject(source + " revision " + std::to_string(revision) + ": " + error);
      return DeltaOutcome::refused;
    }
    case snapshot::SnapshotBuilder::Outcome::built:
      break;
  }
  // The CPU time tells the cost of the delta apart from waiting for a core (a busy data plane).
  char how[96];
  std::snprintf(how, sizeof how, " (delta of %zu changes, cpu %.2f ms%s)", changes.size(), cpu_ms,
                result.rebuilt ? ", installed a background rebuild" : "");
  install(std::move(result.snapshot), revision, how, started, started);
  return DeltaOutcome::applied;
}

void ConfigApplier::install(std::shared_ptr<const snapshot::Snapshot> snap, int64_t revision, const char* how,
                            std::chrono::steady_clock::time_point started,
                            std::chrono::steady_clock::time_point loaded_at) {
  publish_(snap);
  if (current_) retired_.push_back(std::move(current_));
  current_ = snap;
  has_config_.store(true);
  auto done = std::chrono::steady_clock::now();
  double took_ms = std::chrono::duration<double, std::milli>(done - started).count();
  double load_ms = std::chrono::duration<double, std::milli>(loaded_at - started).count();
  double now = unix_now();
  status::Metrics* metrics = context_.metrics;
  if (metrics) {
    metrics->config_generation.store(snap->generation);
    metrics->config_routes.store(snap->route_count);
    metrics->config_last_success.store(now);
  }
  {
    std::lock_guard lock(mu_);
    status_.generation = snap->generation;
    status_.hash = snap->hash;
    status_.routes = snap->route_count;
    status_.source = snap->source;
    status_.revision = revision;
    status_.last_error.clear();
    status_.last_success = now;
  }
  PORTICO_LOG(info,
              "config applied generation=%llu routes=%zu hash=%s source=%s revision=%lld in %.1f ms "
              "(load+validate %.1f ms, build %.1f ms)%s",
              static_cast<unsigned long long>(snap->generation), snap->route_count, snap->hash.c_str(),
              snap->source.c_str(), static_cast<long long>(revision), took_ms, load_ms, took_ms - load_ms,
              how);
}

void ConfigApplier::release_retired() {
  // A snapshot only this list still holds has no request left on it: free it here, off the workers (and off
  // the data plane's sync thread, which applies deltas).
  std::vector<std::shared_ptr<const snapshot::Snapshot>> unused;
  {
    std::lock_guard build(build_mu_);
    for (auto it = retired_.begin(); it != retired_.end();) {
      if (it->use_count() == 1) {
        unused.push_back(std::move(*it));
        it = retired_.erase(it);
      } else {
        ++it;
      }
    }
  }
  if (unused.empty()) return;
  unused.clear();
  // Health entries of upstreams no snapshot uses any more go with them.
  if (context_.health) context_.health->collect_garbage();
  // A large config is many small allocations; hand the pages back so RSS follows the live config.
  malloc_trim(0);
}

}  // namespace portico::server
