// The control plane's in-memory copy of every resource, fed by store::Mirror (the etcd watch). The Admin API
// reads from it (once it has caught up with etcd's revision), the reference checks scan it, and in the
// traditional role the data plane's configuration is assembled from it.
//
// Every value is checked when it arrives: one that the strict JSON reader refuses (config/json_input.h: not
// JSON, a repeated key, nesting past 64 levels) or that fails its kind's validator (written into etcd by
// hand, or by a newer Portico) is logged and kept out of the copy, so nothing downstream ever sees it; it is
// listed in rejected() until it is fixed or deleted.
//
// Thread-safety: the mutators (reset, apply, set_connected) are called by the mirror thread only; every
// other method may be called from any thread. on_change listeners run on the mirror thread after each
// mutation and must not block for long.
#pragma once

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <vector>

#include <array>
#include <nlohmann/json_fwd.hpp>

#include "config/limit_groups.h"
#include "config/loader.h"
#include "config/validate.h"
#include "controlplane/resources.h"
#include "store/etcd_client.h"
#include "sync/resource_set.h"

namespace portico::controlplane {

struct Entry {
  std::string id;
  std::string value;  // the JSON stored in etcd, canonical (sync::canonicalize): keys sorted, compact
  int64_t create_revision = 0;
  int64_t mod_revision = 0;
  // References held by this resource (routes and services), for delete checks without re-parsing.
  std::string upstream_id;
  std::string service_id;
  std::string plugin_config_id;
  bool has_upstream = false;                    // sets `upstream` or `upstream_id` (routes and services)
  std::vector<std::string> split_upstream_ids;  // named by its traffic-split (plugin_upstream_refs)
  std::string
      client_cert_id;       // the ssl its upstream's tls.client_cert_id names (upstreams, routes, services)
  bool client_ssl = false;  // an ssl of type client (ssls)
  std::vector<config::LimitGroup> limit_groups;  // its limit-count's group (config/limit_groups.h)
};

struct RejectedKey {
  std::string key;
  int64_t mod_revision = 0;
  std::string reason;  // "routes/bad: uri: must be a string, got a number (5)"
};

class ResourceStore {
 public:
  // `prefix` is the etcd prefix without trailing slash ("/apisix"); keys are prefix/<kind>/<id>.
  explicit ResourceStore(std::string prefix);

  const std::string& prefix() const { return prefix_; }
  // prefix/<kind>/<id>; a credential's: prefix/consumers/<username>/credentials/<id> (its id is the full one)
  std::string key_of(Kind kind, std::string_view id) const;

  // --- mirror thread ---
  void reset(const store::ResponseHeader& header, std::vector<store::KeyValue> all);
  void apply(const store::ResponseHeader& header, std::vector<store::WatchEvent>& events);
  void set_connected(bool connected, const std::string& why);

  // Called after every reset / apply with the new revision.
  void on_change(std::function<void(int64_t revision)> listener);

  // --- any thread ---
  std::optional<Entry> get(Kind kind, std::string_view id) const;
  std::vector<Entry> list(Kind kind) const;
  int64_t revision() const;
  bool loaded() const;  // a first full read has happened
  bool stale() const;   // etcd unreachable: what this holds may be behind
  std::string stale_reason() const;
  uint64_t cluster_id() const;
  std::vector<RejectedKey> rejected() const;
  size_t count(Kind kind) const;

  // Resources that reference `kind`/`id`, for the delete check: routes and services (upstream_id, service_id,
  // plugin_config_id, traffic-split), and for an ssl the upstreams, services and routes whose upstream names
  // it as tls.client_cert_id. At most `limit`.
  std::vector<std::pair<Kind, std::string>> referrers(Kind kind, std::string_view id,
                                                      size_t limit = 10) const;
  // Routes naming service `service_id` with no upstream of their own (they need the service's).
  std::vector<std::string> routes_relying_on(std::string_view service_id, size_t limit = 10) const;
  // A resource other than `self_kind`/`self_id` whose limit-count names `group` with another configuration
  // (routes, services, plugin configs, global rules, consumers; a scan, paid only by writes naming a group).
  std::optional<std::pair<Kind, std::string>> limit_group_mismatch(const config::LimitGroup& group,
                                                                   Kind self_kind,
                                                                   std::string_view self_id) const;

  // What data planes get: every resource of the copy, except those whose references do not resolve (only
  // possible for values written into etcd by hand; logged), so one bad key cannot hold back every other
  // change.
  sync::ResourceSet publishable() const;
  // The rule publishable() applies to one resource: null when `e` (of `kind`) is published, else why not.
  // `kept(kind, id)`: whether that resource is published; `service_has_upstream(id)`: whether that published
  // service sets an upstream; `client_ssl(id)`: whether that published ssl is of type client.
  static const char* left_out_because(Kind kind, const Entry& e,
                                      const std::function<bool(Kind, const std::string&)>& kept,
                                      const std::function<bool(const std::string&)>& service_has_upstream,
                                      const std::function<bool(const std::string&)>& client_ssl);

  // A point in the copy's change journal, for changes_since().
  struct Cursor {
    uint64_t epoch = 0;  // bumped by every reset(): a whole reload cannot be told as changes
    uint64_t position = 0;
  };
  // A resource touched after some point, with its entry now (nullopt: it is not in the copy any more).
  struct Touched {
    Kind kind;
    std::string id;
    std::optional<Entry> entry;
  };
  // Where the journal stands now, and (if not null) the copy's revision there.
  Cursor cursor(int64_t* revision = nullptr) const;

  // Waits up to `seconds` until the copy has applied etcd revision `revision`; false if it has not (or it is
  // stale). Lets a reader serve a linearizable answer from the copy after one cheap etcd round trip.
  bool wait_for_revision(int64_t revision, double seconds) const;
  // Entries [begin, begin + count) of `kind` in id order, and the number there are; with `id_prefix`, only
  // the ids that start with it ("jack/credentials/": a consumer's credentials).
  std::vector<Entry> page(Kind kind, size_t begin, size_t count, size_t& total,
                          std::string_view id_prefix = {}) const;
  // Whether some etcd key of `kind` was left out of the copy (invalid), so that only etcd lists it.
  bool has_rejected(Kind kind) const;
  // The resources touched after `since` (each once) with their entries now, and the cursor and revision now,
  // read together. False when that cannot be told: the copy was reloaded whole since, or more changed than
  // the journal keeps (kJournalMax); the caller then reads everything (publishable()).
  bool changes_since(Cursor since, std::vector<Touched>& out, Cursor& now, int64_t& revision) const;
  // publishable() loaded as the data plane's configuration (load_set), for the traditional role.
  config::LoadResult assemble() const;

 private:
  struct KindTable {
    std::map<std::string, Entry, std::less<>> entries;
  };
  // Parses and validates one key-value; true when it belongs in the copy (out filled).
  bool admit(const store::KeyValue& kv, Kind& kind, Entry& out, std::string& reason) const;
  void remove_key(const std::string& key);
  void notify(int64_t revision);
  // prefix/<kind>/<id> -> kind and id (prefix/consumers/<u>/credentials/<id> -> credentials,
  // "<u>/credentials/<id>"); false for other keys.
  bool parse_key(std::string_view key, Kind& kind, std::string_view& id) const;

  static constexpr size_t kJournalMax = 1 << 17;

  std::string prefix_;
  mutable std::shared_mutex mu_;
  mutable std::mutex revision_mu_;  // with revision_cv_: wait_for_revision
  mutable std::condition_variable revision_cv_;
  std::array<KindTable, kKindCount> tables_;
  std::map<std::string, RejectedKey> rejected_;
  int64_t revision_ = 0;
  uint64_t cluster_id_ = 0;
  bool loaded_ = false;
  bool stale_ = true;
  std::string stale_reason_ = "not yet connected to etcd";
  std::vector<std::function<void(int64_t)>> listeners_;
  // Every key apply() touched since the last reset(), oldest first; journal_[0] is at position
  // journal_start_.
  std::vector<std::pair<Kind, std::string>> journal_;
  uint64_t journal_start_ = 0;
  uint64_t epoch_ = 0;
};

// A resource set as the data plane's configuration: its document through the shared loader; content_hash is
// the set's content hash.
config::LoadResult load_set(const sync::ResourceSet& set);

// Whether a route or service value sets an upstream of its own (`upstream` or `upstream_id`).
bool sets_upstream(const nlohmann::json& resource);

// A reference field's id as the validator reads it: a string, or an integer >= 1 in decimal; else empty.
std::string reference_id(const nlohmann::json& v);

// The upstreams a route's, service's or plugin config's traffic-split names: (id, field path relative to the
// value, "plugins.traffic-split.rules[0].weighted_upstreams[1].upstream_id"), in order.
std::vector<std::pair<std::string, std::string>> plugin_upstream_refs(const nlohmann::json& resource);

// The ssl an upstream's (`tls.client_cert_id`), or a route's or service's inline upstream's
// (`upstream.tls.client_cert_id`), names: (id, field path relative to the value); nullopt when none.
std::optional<std::pair<std::string, std::string>> client_cert_ref(Kind kind, const nlohmann::json& resource);

// Whether an ssl value is of type client (APISIX's `type`, "server" by default).
bool is_client_ssl(const nlohmann::json& ssl);

// Validates one resource value of `kind` with the shared validator (config/validate.h). Errors carry paths
// relative to the value ("upstream.nodes[0].port"). The id is not required here (the caller supplies it).
// `groups`, if given, receives the value's limit-count groups.
bool validate_value(Kind kind, const nlohmann::json& value, config::Errors& errors,
                    std::vector<config::LimitGroup>* groups = nullptr);

// The kinds whose plugins may hold a limit-count group.
inline constexpr Kind kLimitGroupKinds[] = {Kind::routes, Kind::services, Kind::plugin_configs,
                                            Kind::global_rules, Kind::consumers};

}  // namespace portico::controlplane
