// SnapshotBuilder: builds snapshots for a configuration that changes a few resources at a time (a data plane
// fed by control-plane deltas), in time proportional to the change rather than to the configuration.
//
// It keeps the validated models of the last snapshot it built. A delta (resources added, changed or removed,
// as JSON) is validated resource by resource with the loader's own validators, then the cross-resource rules
// are checked for what the change touches: the changed routes and every route relying on a changed or removed
// service, upstream or plugin config (found by a scan of the route models: cheap compared to a rebuild). The
// routes so touched go to the snapshot's overlay layer, which is rebuilt (small); the base layer is kept and
// the base routes the overlay replaces or that were removed are masked. Upstream runtimes whose spec did not
// change are reused, so balancer state survives. When the overlay outgrows `max_overlay_routes`, or when a
// change touches every route (a global rule's body limit), the whole configuration is rebuilt into a new
// base.
//
// Deltas assume routes ordered by id (the documents of the sync protocol are): a base built from routes in
// another order (a file) refuses deltas (apply() returns Outcome::no_base).
//
// Not thread-safe: one thread at a time (the config applier serialises callers). The background rebuild
// reads only immutable layers and copies.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/loader.h"
#include "config/model.h"
#include "snapshot/snapshot.h"

namespace portico::snapshot {

// One resource added, changed or removed: `kind` is a document section ("routes", "upstreams", ...), `value`
// the resource's JSON text, null when it was removed.
struct ResourceChange {
  std::string_view kind;
  std::string_view id;
  const std::string* value = nullptr;
};

struct SnapshotBuilderOptions {
  // Overlay size (routes) above which the whole configuration is rebuilt into a new base. The overlay layer
  // is rebuilt by every delta, so this bounds a delta's cost (a few microseconds per overlay route).
  size_t max_overlay_routes = 512;
  // Past max_overlay_routes, rebuild on a thread of its own while deltas keep going to the overlay (the
  // next delta after it finishes installs it), so no delta waits for a whole rebuild; only an overlay 8
  // times over the limit (a bulk import) or a change touching every route rebuilds in the delta's call.
  // False: rebuild in the call (tests).
  bool rebuild_in_background = true;
};

class SnapshotBuilder {
 public:
  SnapshotBuilder(BuildContext context, SnapshotBuilderOptions options = {});
  ~SnapshotBuilder();
  SnapshotBuilder(const SnapshotBuilder&) = delete;
  SnapshotBuilder& operator=(const SnapshotBuilder&) = delete;

  // A snapshot of a whole validated configuration; later deltas apply on top of it. Null with `error` on an
  // internal failure (the previous state is kept).
  std::shared_ptr<const Snapshot> build(config::Config config, std::string hash, std::string source,
                                        uint64_t generation, std::string* error);

  enum class Outcome {
    built,    // `snapshot` holds the new snapshot
    invalid,  // the changes break a rule: `errors` says which (paths like "routes/r1.upstream_id"); nothing
              // kept
    no_base,  // nothing to apply to (no build yet, a base not ordered by id, or an internal failure): build()
  };
  struct Result {
    Outcome outcome = Outcome::no_base;
    std::shared_ptr<const Snapshot> snapshot;
    std::vector<config::FieldError> errors;  // at most config::kMaxErrors
    bool errors_truncated = false;
    bool rebuilt = false;  // the whole configuration was rebuilt (overlay full, or every route touched)
    std::string internal_error;
  };
  // Applies `changes` to the configuration of the last snapshot built here. A kind this version does not know
  // is an error; a change of a resource to its current value is harmless.
  Result apply(std::span<const ResourceChange> changes, std::string hash, std::string source,
               uint64_t generation);

  // Blocks until a background rebuild, if one runs, has finished (its result is installed by the next
  // apply()). For tests and benchmarks.
  void wait_for_background_rebuild();

  // The content hash of the last snapshot built here (empty before the first, or after an internal failure).
  const std::string& hash() const;

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace portico::snapshot
