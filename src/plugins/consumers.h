// Consumers at run time: who a request is authenticated as, and the indexes the auth plugins look
// credentials up in, built with the snapshot from the validated consumers (secrets already decrypted by the
// validator). Lookups are O(1) hash lookups; secrets are compared in constant time.
//
// - key-auth: keyed by the key under a hash seeded with a random per-process secret (so bucket timing tells
//   an attacker nothing about stored keys) and compared with CRYPTO_memcmp (no early exit on the first
//   differing byte). A SHA-256 of the key would do too, at ten times the cost per request.
// - basic-auth: keyed by username; the password's SHA-256 compared in constant time (the length is not
//   revealed either).
// - jwt-auth: keyed by the token's key claim; holds the verifier prepared from the consumer's secret or
//   public key.
// A credential value shared by two consumers authenticates neither (ambiguous identity): it is left out of
// the index and logged. (The Admin API accepts such a write: the conflict is between resources, and either
// may be the one the operator is about to fix.)
//
// Layers: a change of a few consumers must not cost a rebuild of 100k. An index is either whole (build) or an
// overlay over a whole one (layer): the overlay holds the consumers changed since the base was built and
// masks the base's entries for them (changed or removed), so a lookup tries the overlay, then the base. The
// snapshot builder rebuilds the overlay per delta (cost: the consumers changed since the base) and folds it
// into a new whole index past a bound. A credential conflict between the overlay and the base blocks the
// value in both; a conflict inside the base that a change resolved stays blocked until the next whole build.
//
// Immutable after build; shared by every worker.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "config/model.h"
#include "plugins/pipeline.h"

namespace portico::plugins {

namespace jwt {
class Verifier;
}

// The verifier of a consumer-side jwt-auth configuration (jwt_auth.cc); null with `error` when its secret or
// public key cannot be used.
std::shared_ptr<const jwt::Verifier> make_jwt_verifier(const nlohmann::json& conf, std::string* error);

class ConsumerRuntime {
 public:
  std::string username;
  std::shared_ptr<const Chain> chain;  // its non-auth plugins; null when none
};

using Sha256 = std::array<uint8_t, 32>;
Sha256 sha256(std::string_view data);

// Hash and equality of secret strings: seeded hash, constant-time comparison (for equal lengths).
struct SecretHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const;
};
// Plain string keys looked up by string_view without a copy.
struct NameHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};
struct SecretEqual {
  using is_transparent = void;
  bool operator()(std::string_view a, std::string_view b) const;
};

class ConsumerIndex {
 public:
  struct KeyCredential {
    const ConsumerRuntime* consumer = nullptr;
    std::string credential_id;  // empty for a credential written in the consumer's own plugins
  };
  struct BasicCredential {
    Sha256 password_digest{};
    const ConsumerRuntime* consumer = nullptr;
    std::string credential_id;
  };
  struct JwtCredential {
    std::shared_ptr<const jwt::Verifier> verifier;
    std::shared_ptr<const nlohmann::json> conf;  // the consumer-side jwt-auth configuration
    int64_t lifetime_grace_period = 0;           // seconds of clock skew allowed on exp and nbf
    const ConsumerRuntime* consumer = nullptr;
    std::string credential_id;
  };

  // Builds the index of `consumers` and their `credentials` (APISIX 3.x credential resources: each
  // authenticates as its consumer, with its credential_id). Conflicts (a key, username or JWT key shared by
  // two consumers) and credentials that cannot be prepared are appended to `problems` (one line each) and
  // left out; so is a credential whose consumer is not in `consumers`.
  static std::shared_ptr<const ConsumerIndex> build(const std::vector<config::Consumer>& consumers,
                                                    const std::vector<config::Credential>& credentials,
                                                    const BuildEnv& env, PluginCache& cache,
                                                    std::vector<std::string>& problems);
  // An overlay over `base` (a whole index): `changed` are the current models of the consumers changed since
  // `base` was built (a consumer whose credentials changed counts as changed), `changed_credentials` every
  // credential of those consumers, `masked` the usernames of every consumer changed or removed since (a
  // superset of `changed`'s).
  static std::shared_ptr<const ConsumerIndex> layer(
      std::shared_ptr<const ConsumerIndex> base, const std::vector<config::Consumer>& changed,
      const std::vector<config::Credential>& changed_credentials, const std::vector<std::string>& masked,
      const BuildEnv& env, PluginCache& cache, std::vector<std::string>& problems);
  // The whole index under this one (itself when it is whole).
  const ConsumerIndex* whole() const { return base_ ? base_.get() : this; }
  static std::shared_ptr<const ConsumerIndex> whole_of(const std::shared_ptr<const ConsumerIndex>& index) {
    return index->base_ ? index->base_ : index;
  }
  bool is_layer() const { return base_ != nullptr; }

  const KeyCredential* find_key(std::string_view key) const;
  // The credential of `user` when `password` is its password.
  const BasicCredential* find_basic(std::string_view user, std::string_view password) const;
  const JwtCredential* find_jwt(std::string_view key) const;
  const ConsumerRuntime* find_consumer(std::string_view username) const;

  size_t size() const { return consumers_.size(); }

 private:
  // Adds every consumer with its credentials (the credential resources of `credentials` whose consumer is
  // among them; conflicts within this index are blocked).
  void add_all(const std::vector<config::Consumer>& consumers,
               const std::vector<config::Credential>& credentials, const BuildEnv& env, PluginCache& cache,
               std::vector<std::string>& problems);
  // Adds `c`: the credentials in its own plugins and the credential resources `credentials` (its own).
  void add(const config::Consumer& c, std::span<const config::Credential* const> credentials,
           const BuildEnv& env, PluginCache& cache, std::vector<std::string>& problems);
  // One auth plugin configuration of `runtime`'s (credential_id empty: from the consumer's own plugins).
  void add_credential(ConsumerRuntime* runtime, const config::PluginSpec& spec,
                      const std::string& credential_id, std::vector<std::string>& problems);
  bool masked(const ConsumerRuntime* consumer) const { return masked_.contains(consumer->username); }

  std::shared_ptr<const ConsumerIndex> base_;        // null: a whole index
  std::unordered_set<std::string> masked_;           // base consumers replaced or removed
  std::set<std::string, std::less<>> blocked_keys_;  // ambiguous values: no lookup finds them
  std::set<std::string, std::less<>> blocked_basic_, blocked_jwt_;
  std::vector<std::unique_ptr<ConsumerRuntime>> consumers_;
  std::unordered_map<std::string_view, const ConsumerRuntime*> by_name_;
  std::unordered_map<std::string, KeyCredential, SecretHash, SecretEqual> keys_;
  std::unordered_map<std::string, BasicCredential, NameHash, std::equal_to<>> basic_;
  std::unordered_map<std::string, JwtCredential, NameHash, std::equal_to<>> jwt_;
};

}  // namespace portico::plugins
