// The consumer index (consumers.h).
#include "plugins/consumers.h"

#include <openssl/crypto.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstring>
#include <set>
#include <unordered_map>

#include <nlohmann/json.hpp>

namespace portico::plugins {

Sha256 sha256(std::string_view data) {
  Sha256 out;
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), out.data());
  return out;
}

namespace {
size_t process_seed() {
  size_t seed = 0;
  if (RAND_bytes(reinterpret_cast<unsigned char*>(&seed), sizeof seed) != 1) seed = 0x9e3779b97f4a7c15ull;
  return seed;
}
}  // namespace

size_t SecretHash::operator()(std::string_view s) const {
  static const size_t seed = process_seed();
  return std::_Hash_bytes(s.data(), s.size(), seed);
}

bool SecretEqual::operator()(std::string_view a, std::string_view b) const {
  return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

namespace {

// Inserts a credential unless its value is blocked; a value claimed twice is removed and blocked.
template <typename Map, typename Blocked, typename Key>
void add_unique(Map& map, Blocked& blocked, const Key& key, typename Map::mapped_type value,
                std::string_view what, std::vector<std::string>& problems) {
  if (blocked.contains(key)) return;
  const ConsumerRuntime* who = value.consumer;
  auto [it, inserted] = map.emplace(key, std::move(value));
  if (!inserted) {
    problems.push_back(std::string(what) + " of consumer '" + who->username + "' is also used by consumer '" +
                       it->second.consumer->username + "': neither authenticates with it");
    map.erase(it);
    blocked.insert(key);
  }
}

}  // namespace

void ConsumerIndex::add_credential(ConsumerRuntime* runtime, const config::PluginSpec& spec,
                                   const std::string& credential_id, std::vector<std::string>& problems) {
  const nlohmann::json& conf = *spec.conf;
  if (spec.name == "key-auth") {
    const std::string& key = conf.at("key").get_ref<const std::string&>();
    add_unique(keys_, blocked_keys_, key, KeyCredential{runtime, credential_id}, "key-auth key", problems);
  } else if (spec.name == "basic-auth") {
    const std::string& user = conf.at("username").get_ref<const std::string&>();
    const std::string& password = conf.at("password").get_ref<const std::string&>();
    add_unique(basic_, blocked_basic_, user, BasicCredential{sha256(password), runtime, credential_id},
               "basic-auth username", problems);
  } else if (spec.name == "jwt-auth") {
    std::string error;
    JwtCredential credential;
    credential.conf = spec.conf;
    credential.consumer = runtime;
    credential.credential_id = credential_id;
    credential.lifetime_grace_period = conf.value("lifetime_grace_period", int64_t{0});
    credential.verifier = make_jwt_verifier(conf, &error);
    if (!credential.verifier) {
      problems.push_back("jwt-auth of consumer '" + runtime->username + "': " + error);
      return;
    }
    add_unique(jwt_, blocked_jwt_, conf.at("key").get<std::string>(), std::move(credential), "jwt-auth key",
               problems);
  }
}

namespace {
bool is_credential_plugin(std::string_view name) {
  return name == "key-auth" || name == "basic-auth" || name == "jwt-auth";
}
}  // namespace

void ConsumerIndex::add(const config::Consumer& c, std::span<const config::Credential* const> credentials,
                        const BuildEnv& env, PluginCache& cache, std::vector<std::string>& problems) {
  auto runtime = std::make_unique<ConsumerRuntime>();
  runtime->username = c.username;
  config::PluginMap others;
  for (const config::PluginSpec& spec : c.plugins) {
    if (!spec.disabled && spec.conf && !is_credential_plugin(spec.name)) others.push_back(spec);
  }
  if (!others.empty()) {
    // Compiled first: a consumer whose own plugins (an ip-restriction, a consumer-level limit) cannot be
    // built must not authenticate without them, so its credentials are then left out (fail closed).
    const config::PluginMap* layers[] = {&others};
    std::string error;
    runtime->chain = compile_chain(layers, env, cache, &error);
    if (!runtime->chain && !error.empty()) {
      problems.push_back("consumer '" + c.username + "': " + error + "; its credentials are not accepted");
      return;
    }
  }
  static const std::string kOwn;
  for (const config::PluginSpec& spec : c.plugins) {
    if (!spec.disabled && spec.conf && is_credential_plugin(spec.name))
      add_credential(runtime.get(), spec, kOwn, problems);
  }
  // A credential resource holds only an auth plugin (the validator refuses any other); what runs for the
  // consumer it authenticates is the consumer's own chain, as in APISIX.
  for (const config::Credential* credential : credentials) {
    for (const config::PluginSpec& spec : credential->plugins) {
      if (spec.disabled || !spec.conf || !is_credential_plugin(spec.name)) continue;
      add_credential(runtime.get(), spec, credential->credential_id, problems);
    }
  }
  by_name_.emplace(runtime->username, runtime.get());
  consumers_.push_back(std::move(runtime));
}

void ConsumerIndex::add_all(const std::vector<config::Consumer>& consumers,
                            const std::vector<config::Credential>& credentials, const BuildEnv& env,
                            PluginCache& cache, std::vector<std::string>& problems) {
  std::unordered_map<std::string_view, std::vector<const config::Credential*>> by_user;
  for (const config::Credential& credential : credentials)
    by_user[credential.username].push_back(&credential);
  for (const config::Consumer& c : consumers) {
    auto it = by_user.find(c.username);
    if (it == by_user.end()) {
      add(c, {}, env, cache, problems);
      continue;
    }
    add(c, it->second, env, cache, problems);
    by_user.erase(it);
  }
  for (const auto& [user, orphans] : by_user) {
    for (const config::Credential* credential : orphans) {
      problems.push_back("credential '" + credential->id + "': its consumer is not defined");
    }
  }
}

std::shared_ptr<const ConsumerIndex> ConsumerIndex::build(const std::vector<config::Consumer>& consumers,
                                                          const std::vector<config::Credential>& credentials,
                                                          const BuildEnv& env, PluginCache& cache,
                                                          std::vector<std::string>& problems) {
  auto index = std::make_shared<ConsumerIndex>();
  index->consumers_.reserve(consumers.size());
  index->by_name_.reserve(consumers.size());
  index->keys_.reserve(consumers.size() + credentials.size());
  index->add_all(consumers, credentials, env, cache, problems);
  return index;
}

std::shared_ptr<const ConsumerIndex> ConsumerIndex::layer(
    std::shared_ptr<const ConsumerIndex> base, const std::vector<config::Consumer>& changed,
    const std::vector<config::Credential>& changed_credentials, const std::vector<std::string>& masked,
    const BuildEnv& env, PluginCache& cache, std::vector<std::string>& problems) {
  auto index = std::make_shared<ConsumerIndex>();
  const ConsumerIndex& whole = *base->whole();
  index->masked_.insert(masked.begin(), masked.end());
  index->add_all(changed, changed_credentials, env, cache, problems);
  // A value the overlay claims that a live base consumer holds too is ambiguous: blocked in both. So is a
  // value the base already blocked (two base consumers held it): which base consumers held it is not kept,
  // so it stays blocked until the next whole build, even when the change resolved the conflict.
  auto live_in_base = [&](const ConsumerRuntime* owner) { return owner != nullptr && !index->masked(owner); };
  auto block_shared = [&](auto& mine, const auto& theirs, const auto& theirs_blocked, auto& blocked,
                          std::string_view what) {
    for (auto it = mine.begin(); it != mine.end();) {
      auto other = theirs.find(it->first);
      const bool shared = other != theirs.end() && live_in_base(other->second.consumer);
      if (shared || theirs_blocked.contains(it->first)) {
        problems.push_back(
            std::string(what) + " of consumer '" + it->second.consumer->username + "' is also used by " +
            (shared ? "consumer '" + other->second.consumer->username + "'" : "other consumers") +
            ": neither authenticates with it");
        blocked.insert(it->first);
        it = mine.erase(it);
      } else {
        ++it;
      }
    }
  };
  block_shared(index->keys_, whole.keys_, whole.blocked_keys_, index->blocked_keys_, "key-auth key");
  block_shared(index->basic_, whole.basic_, whole.blocked_basic_, index->blocked_basic_,
               "basic-auth username");
  block_shared(index->jwt_, whole.jwt_, whole.blocked_jwt_, index->blocked_jwt_, "jwt-auth key");
  index->base_ = base->is_layer() ? base->base_ : std::move(base);
  return index;
}

const ConsumerIndex::KeyCredential* ConsumerIndex::find_key(std::string_view key) const {
  if (auto it = keys_.find(key); it != keys_.end()) return &it->second;
  if (!base_ || blocked_keys_.contains(key)) return nullptr;
  auto b = base_->keys_.find(key);
  return b != base_->keys_.end() && !masked(b->second.consumer) ? &b->second : nullptr;
}

const ConsumerIndex::BasicCredential* ConsumerIndex::find_basic(std::string_view user,
                                                                std::string_view password) const {
  // The digest is computed even for an unknown user, so that the time taken does not tell users apart.
  const Sha256 digest = sha256(password);
  const BasicCredential* found = nullptr;
  if (auto it = basic_.find(user); it != basic_.end()) {
    found = &it->second;
  } else if (base_ && !blocked_basic_.contains(user)) {
    auto b = base_->basic_.find(user);
    if (b != base_->basic_.end() && !masked(b->second.consumer)) found = &b->second;
  }
  if (found == nullptr) return nullptr;
  if (CRYPTO_memcmp(digest.data(), found->password_digest.data(), digest.size()) != 0) return nullptr;
  return found;
}

const ConsumerIndex::JwtCredential* ConsumerIndex::find_jwt(std::string_view key) const {
  if (auto it = jwt_.find(key); it != jwt_.end()) return &it->second;
  if (!base_ || blocked_jwt_.contains(key)) return nullptr;
  auto b = base_->jwt_.find(key);
  return b != base_->jwt_.end() && !masked(b->second.consumer) ? &b->second : nullptr;
}

const ConsumerRuntime* ConsumerIndex::find_consumer(std::string_view username) const {
  if (auto it = by_name_.find(username); it != by_name_.end()) return it->second;
  if (!base_) return nullptr;
  const ConsumerRuntime* c = base_->find_consumer(username);
  return c != nullptr && !masked(c) ? c : nullptr;
}

}  // namespace portico::plugins
