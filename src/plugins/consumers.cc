// The consumer index (consumers.h).
#include "plugins/consumers.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

namespace portico::plugins {

Sha256 sha256(std::string_view data) {
  Sha256 out;
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
  return out;
}

size_t Sha256Hash::operator()(const Sha256& d) const {
  size_t h;
  std::memcpy(&h, d.data(), sizeof h);  // already uniformly distributed
  return h;
}

namespace {

// Credential "values" claimed by more than one consumer, per plugin: those are left out.
template <typename Map, typename Key>
void add_unique(Map& map, std::set<Key>& conflicts, Key key, typename Map::mapped_type value,
                std::string_view what, std::vector<std::string>& problems) {
  if (conflicts.contains(key)) return;
  const ConsumerRuntime* who = value.consumer;
  auto [it, inserted] = map.emplace(key, std::move(value));
  if (!inserted) {
    problems.push_back(std::string(what) + " of consumer '" + who->username + "' is also used by consumer '" +
                       it->second.consumer->username + "': neither authenticates with it");
    map.erase(it);
    conflicts.insert(std::move(key));
  }
}

}  // namespace

std::shared_ptr<const ConsumerIndex> ConsumerIndex::build(const std::vector<config::Consumer>& consumers,
                                                          const BuildEnv& env, PluginCache& cache,
                                                          std::vector<std::string>& problems) {
  auto index = std::make_shared<ConsumerIndex>();
  index->consumers_.reserve(consumers.size());
  index->by_name_.reserve(consumers.size());
  std::set<Sha256> key_conflicts;
  std::set<std::string> basic_conflicts, jwt_conflicts;
  for (const config::Consumer& c : consumers) {
    auto runtime = std::make_unique<ConsumerRuntime>();
    runtime->username = c.username;
    config::PluginMap others;
    for (const config::PluginSpec& spec : c.plugins) {
      if (spec.disabled || !spec.conf) continue;
      const nlohmann::json& conf = *spec.conf;
      if (spec.name == "key-auth") {
        const std::string& key = conf.at("key").get_ref<const std::string&>();
        add_unique(index->keys_, key_conflicts, sha256(key), KeyCredential{key, runtime.get(), {}},
                   "key-auth key", problems);
      } else if (spec.name == "basic-auth") {
        const std::string& user = conf.at("username").get_ref<const std::string&>();
        const std::string& password = conf.at("password").get_ref<const std::string&>();
        add_unique(index->basic_, basic_conflicts, user, BasicCredential{sha256(password), runtime.get(), {}},
                   "basic-auth username", problems);
      } else if (spec.name == "jwt-auth") {
        std::string error;
        JwtCredential credential;
        credential.conf = spec.conf;
        credential.consumer = runtime.get();
        credential.lifetime_grace_period = conf.value("lifetime_grace_period", int64_t{0});
        credential.verifier = make_jwt_verifier(conf, &error);
        if (!credential.verifier) {
          problems.push_back("jwt-auth of consumer '" + c.username + "': " + error);
          continue;
        }
        add_unique(index->jwt_, jwt_conflicts, conf.at("key").get<std::string>(), std::move(credential),
                   "jwt-auth key", problems);
      } else {
        others.push_back(spec);
      }
    }
    if (!others.empty()) {
      const config::PluginMap* layers[] = {&others};
      std::string error;
      runtime->chain = compile_chain(layers, env, cache, &error);
      if (!runtime->chain && !error.empty()) problems.push_back("consumer '" + c.username + "': " + error);
    }
    index->by_name_.emplace(runtime->username, runtime.get());
    index->consumers_.push_back(std::move(runtime));
  }
  return index;
}

const ConsumerIndex::KeyCredential* ConsumerIndex::find_key(std::string_view key) const {
  auto it = keys_.find(sha256(key));
  if (it == keys_.end()) return nullptr;
  const std::string& stored = it->second.key;
  // Equal digests make a different key of the same length astronomically unlikely; compare anyway, in
  // constant time.
  if (stored.size() != key.size() || CRYPTO_memcmp(stored.data(), key.data(), key.size()) != 0)
    return nullptr;
  return &it->second;
}

const ConsumerIndex::BasicCredential* ConsumerIndex::find_basic(std::string_view user,
                                                                std::string_view password) const {
  auto it = basic_.find(std::string(user));
  // The digest is computed even for an unknown user, so that the time taken does not tell users apart.
  Sha256 digest = sha256(password);
  if (it == basic_.end()) return nullptr;
  if (CRYPTO_memcmp(digest.data(), it->second.password_digest.data(), digest.size()) != 0) return nullptr;
  return &it->second;
}

const ConsumerIndex::JwtCredential* ConsumerIndex::find_jwt(std::string_view key) const {
  auto it = jwt_.find(std::string(key));
  return it == jwt_.end() ? nullptr : &it->second;
}

const ConsumerRuntime* ConsumerIndex::find_consumer(std::string_view username) const {
  auto it = by_name_.find(username);
  return it == by_name_.end() ? nullptr : it->second;
}

}  // namespace portico::plugins
