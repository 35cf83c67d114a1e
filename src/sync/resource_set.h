// A set of configuration resources as canonical JSON text, keyed by (kind, id): what a control plane exports
// and what a data plane holds and caches. Canonical means nlohmann's compact dump (object keys sorted), so
// the same resource has the same bytes on every process, and the content hash below is comparable across
// control planes, data planes, cache files and S3 objects.
//
// Value type. Const members may be called from several threads at once (content_hash() fills its cache under
// a lock of its own); anything that changes the set needs exclusive access (copy it to hand it to another
// thread that changes it).
#pragma once

#include <array>
#include <cstdint>
#include <map>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portico::sync {

// Resource kinds in their canonical order (the order of the document and of the hash). A kind is only ever
// added at the end, so that every existing kind keeps its index in the hash.
inline constexpr std::array<std::string_view, 8> kKindNames = {
    "routes", "services", "upstreams", "consumers", "ssls", "global_rules", "plugin_configs", "credentials"};
// document() always writes the kinds before this index; later ones only when they hold something, so that a
// configuration without them has the bytes (and the content hash) an earlier version gives it, and data
// planes of that version still load it: control planes and data planes can be upgraded one at a time until
// the newer kinds are used.
inline constexpr size_t kAlwaysWrittenKinds = 7;

// Index of `kind` in kKindNames, or -1.
int kind_index(std::string_view kind);

// One change between two states: `value` empty = the resource was removed.
struct ResourceChange {
  std::string kind;
  std::string id;
  std::optional<std::string> value;  // canonical JSON text
};

// The number of hash buckets per kind (content_hash()). Part of the hash definition: never change it.
inline constexpr size_t kHashBuckets = 1024;

// The hash bucket of a resource id: FNV-1a 64 of the id's bytes, modulo kHashBuckets (its low 10 bits).
size_t hash_bucket(std::string_view id);

class ResourceSet {
 public:
  ResourceSet() = default;
  // Copies keep the source's hash cache (a copy of a hashed set hashes in O(changes) too).
  ResourceSet(const ResourceSet& other);
  ResourceSet(ResourceSet&& other) noexcept;  // leaves `other` empty
  ResourceSet& operator=(const ResourceSet& other);
  ResourceSet& operator=(ResourceSet&& other) noexcept;
  ~ResourceSet();

  // `value` must already be canonical (canonicalize() below); `kind` one of kKindNames (else ignored, false).
  bool put(std::string_view kind, std::string id, std::string value);
  bool erase(std::string_view kind, std::string_view id);
  void apply(const std::vector<ResourceChange>& changes);
  void apply(std::vector<ResourceChange>&& changes);  // moves the ids and values in
  // apply(), and returns the changes that undo it: apply(undo) gives back the set as it was, whatever
  // `changes` held (repeated ids, removals of absent resources, unknown kinds). The previous values are moved
  // into the undo list, not copied, so the whole round trip costs O(changes).
  std::vector<ResourceChange> apply_with_undo(const std::vector<ResourceChange>& changes);
  void clear();

  size_t size() const;
  const std::string* find(std::string_view kind, std::string_view id) const;

  // Lower-case hex SHA-256 root of a two-level Merkle hash:
  //   bucket digest D(k, b) = SHA-256 over the resources of kind k whose id falls in bucket b
  //                           (hash_bucket), ids in byte order, each fed as kind '\0' id '\0' value '\0';
  //   root                  = SHA-256 over u32be(k) u32be(b) D(k, b) for every non-empty bucket, k in
  //                           kKindNames order (its index), b ascending.
  // An empty set hashes the empty input (docs/sync-protocol.md, "The content hash", has the byte-level
  // definition). Bucket digests are cached: after put/erase/apply only the buckets they touched are
  // rehashed, so a one-resource change at 100k resources costs tens of microseconds instead of a pass over
  // every byte. The first call builds the cache in one pass, at the cost of a flat hash.
  std::string content_hash() const;

  // The standalone-shaped JSON document {"routes":[...],"services":[...],...} (every kind present, possibly
  // empty, except kinds from kAlwaysWrittenKinds on, present only when not empty), values verbatim, kinds in
  // kKindNames order, ids in byte order. config::parse_text(document,
  // Format::json) loads it.
  std::string document() const;

  // Parses a document() back (a missing kind is empty). Each item must be an object naming its id (`id`, or
  // `username` for consumers); items are canonicalized. False with `error` on any problem (nothing is kept
  // then).
  static bool from_document(std::string_view text, ResourceSet& out, std::string& error);

  // What turns `from` into `to`: every resource added, changed or removed, kinds in kKindNames order, ids in
  // byte order.
  static std::vector<ResourceChange> diff(const ResourceSet& from, const ResourceSet& to);

  bool operator==(const ResourceSet& other) const { return kinds_ == other.kinds_; }

 private:
  using Map = std::map<std::string, std::string, std::less<>>;
  using Entry = Map::value_type;

  // The hash cache of one bucket. `entries` point into kinds_ (map nodes never move while they live, and
  // swapping maps keeps them valid), sorted by id.
  struct Bucket {
    std::vector<const Entry*> entries;
    std::array<unsigned char, 32> digest{};
    bool dirty = true;
  };

  // Sets (`value`) or removes (nullopt) resource `id` of kind index `k`; returns what was there before
  // (moved out; nullopt: nothing). Keeps the hash cache in step.
  std::optional<std::string> replace(size_t k, std::string&& id, std::optional<std::string>&& value);
  void indexed(size_t k, const Entry& e);    // a new entry
  void unindexed(size_t k, const Entry& e);  // an entry about to be erased
  void touched(size_t k, std::string_view id);
  void swap(ResourceSet& other) noexcept;

  std::array<Map, kKindNames.size()> kinds_;

  // The hash cache: guarded by hash_mu_ in const members; mutators have exclusive access. buckets_[k] is
  // empty until kind k is first hashed (so sets that are never hashed pay nothing), then kHashBuckets buckets
  // that every change keeps in step. hash_ is the content hash, empty when stale.
  mutable std::mutex hash_mu_;
  mutable std::array<std::vector<Bucket>, kKindNames.size()> buckets_;
  mutable std::string hash_;
};

// The longest value that is taken through a DOM (nlohmann parse + dump, about 20 bytes of memory per byte
// of text, and a DOM's destructor allocates, so running out of memory there ends the process): values that
// are already canonical, as every control plane sends them, are taken verbatim at any size. A control plane
// never sends a longer non-canonical one (etcd refuses values over 1.5 MiB by default).
inline constexpr size_t kMaxNonCanonicalBytes = size_t{4} << 20;

// Parses JSON text and dumps it canonically; false (out untouched) if it is not valid JSON, or if it is not
// canonical already and longer than kMaxNonCanonicalBytes.
bool canonicalize(std::string_view json_text, std::string& out);

}  // namespace portico::sync
