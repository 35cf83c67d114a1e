// Consumers at run time: who a request is authenticated as, and the indexes the auth plugins look
// credentials up in, built with the snapshot from the validated consumers (secrets already decrypted by the
// validator). Lookups are O(1) hash lookups; secrets are compared in constant time.
//
// - key-auth: keyed by the SHA-256 of the key, and the key compared with CRYPTO_memcmp, so neither the hash
//   table's probing nor the comparison reveals a key's bytes through timing.
// - basic-auth: keyed by username; the password's SHA-256 compared in constant time (the length is not
//   revealed either).
// - jwt-auth: keyed by the token's key claim; holds the verifier prepared from the consumer's secret or
//   public key.
// A credential value shared by two consumers authenticates neither (ambiguous identity): it is left out of
// the index and reported by build (the Admin API refuses such a write up front).
//
// Immutable after build; shared by every worker.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
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

struct Sha256Hash {
  size_t operator()(const Sha256& d) const;
};

class ConsumerIndex {
 public:
  struct KeyCredential {
    std::string key;
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

  // Builds the index of `consumers`. Conflicts (a key, username or JWT key shared by two consumers) and
  // credentials that cannot be prepared are appended to `problems` (one line each) and left out.
  static std::shared_ptr<const ConsumerIndex> build(const std::vector<config::Consumer>& consumers,
                                                    const BuildEnv& env, PluginCache& cache,
                                                    std::vector<std::string>& problems);

  const KeyCredential* find_key(std::string_view key) const;
  // The credential of `user` when `password` is its password.
  const BasicCredential* find_basic(std::string_view user, std::string_view password) const;
  const JwtCredential* find_jwt(std::string_view key) const;
  const ConsumerRuntime* find_consumer(std::string_view username) const;

  size_t size() const { return consumers_.size(); }

 private:
  std::vector<std::unique_ptr<ConsumerRuntime>> consumers_;
  std::unordered_map<std::string_view, const ConsumerRuntime*> by_name_;
  std::unordered_map<Sha256, KeyCredential, Sha256Hash> keys_;
  std::unordered_map<std::string, BasicCredential> basic_;
  std::unordered_map<std::string, JwtCredential> jwt_;
};

}  // namespace portico::plugins
