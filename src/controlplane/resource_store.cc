#include "controlplane/resource_store.h"

#include <openssl/evp.h>

#include <nlohmann/json.hpp>
#include <unordered_set>

#include "base/log.h"
#include "config/validate.h"

namespace portico::controlplane {

using nlohmann::json;

bool validate_value(Kind kind, const json& value, config::Errors& errors) {
  config::ValidateOptions options;
  options.id_required = false;
  switch (kind) {
    case Kind::routes:
      return config::validate_route(value, "", errors, options).has_value();
    case Kind::services:
      return config::validate_service(value, "", errors, options).has_value();
    case Kind::upstreams:
      return config::validate_upstream(value, "", errors, options).has_value();
    case Kind::consumers:
      return config::validate_consumer(value, "", errors, options).has_value();
    case Kind::ssls:
      return config::validate_ssl(value, "", errors, options).has_value();
    case Kind::global_rules:
      return config::validate_global_rule(value, "", errors, options).has_value();
    case Kind::plugin_configs:
      return config::validate_plugin_config(value, "", errors, options).has_value();
  }
  return false;
}

namespace {

std::string string_field(const json& v, const char* name) {
  auto it = v.find(name);
  if (it == v.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

std::string describe(const config::Errors& errors) {
  std::string out;
  for (const config::FieldError& e : errors.list()) {
    if (!out.empty()) out += "; ";
    out += e.path.empty() ? e.reason : e.path + ": " + e.reason;
  }
  return out;
}

}  // namespace

ResourceStore::ResourceStore(std::string prefix) : prefix_(std::move(prefix)) {}

std::string ResourceStore::key_of(Kind kind, std::string_view id) const {
  std::string key = prefix_;
  key += '/';
  key += info(kind).name;
  key += '/';
  key += id;
  return key;
}

bool ResourceStore::admit(const store::KeyValue& kv, Kind& kind, Entry& out, std::string& reason) const {
  std::string_view rest(kv.key);
  if (!rest.starts_with(prefix_) || rest.size() <= prefix_.size() || rest[prefix_.size()] != '/')
    return false;
  rest.remove_prefix(prefix_.size() + 1);
  size_t slash = rest.find('/');
  if (slash == std::string_view::npos || !kind_of(rest.substr(0, slash), kind)) {
    reason = "not a resource key";
    return false;
  }
  std::string_view id = rest.substr(slash + 1);
  if (!valid_id(id)) {
    reason = "invalid id '" + std::string(id) + "'";
    return false;
  }
  json value = json::parse(kv.value, nullptr, false);
  if (value.is_discarded()) {
    reason = "value is not valid JSON";
    return false;
  }
  config::Errors errors;
  if (!validate_value(kind, value, errors)) {
    reason = describe(errors);
    return false;
  }
  const std::string_view id_field = info(kind).id_field;
  if (auto it = value.find(id_field); it != value.end() && it->is_string() && *it != id) {
    reason = std::string(id_field) + " '" + it->get<std::string>() + "' differs from the key's";
    return false;
  }
  out.id = std::string(id);
  out.value = kv.value;
  out.create_revision = kv.create_revision;
  out.mod_revision = kv.mod_revision;
  out.upstream_id = string_field(value, "upstream_id");
  out.service_id = string_field(value, "service_id");
  out.plugin_config_id = string_field(value, "plugin_config_id");
  return true;
}

void ResourceStore::remove_key(const std::string& key) {
  rejected_.erase(key);
  std::string_view rest(key);
  if (!rest.starts_with(prefix_) || rest.size() <= prefix_.size()) return;
  rest.remove_prefix(prefix_.size() + 1);
  size_t slash = rest.find('/');
  Kind kind;
  if (slash == std::string_view::npos || !kind_of(rest.substr(0, slash), kind)) return;
  auto& entries = tables_[static_cast<size_t>(kind)].entries;
  if (auto it = entries.find(rest.substr(slash + 1)); it != entries.end()) entries.erase(it);
}

void ResourceStore::reset(const store::ResponseHeader& header, std::vector<store::KeyValue> all) {
  std::array<KindTable, kKindCount> tables;
  std::map<std::string, RejectedKey> rejected;
  for (const store::KeyValue& kv : all) {
    Kind kind;
    Entry entry;
    std::string reason;
    if (admit(kv, kind, entry, reason)) {
      std::string id = entry.id;
      tables[static_cast<size_t>(kind)].entries.emplace(std::move(id), std::move(entry));
    } else if (!reason.empty()) {
      rejected[kv.key] = RejectedKey{kv.key, kv.mod_revision, reason};
    }
  }
  for (const auto& [key, r] : rejected) {
    PORTICO_LOG(warn, "etcd key %s skipped (the rest of the config is used): %s", key.c_str(),
                r.reason.c_str());
  }
  {
    std::unique_lock lock(mu_);
    tables_ = std::move(tables);
    rejected_ = std::move(rejected);
    revision_ = header.revision;
    cluster_id_ = header.cluster_id;
    loaded_ = true;
  }
  PORTICO_LOG(info, "config copy loaded from etcd: revision %lld, %zu keys",
              static_cast<long long>(header.revision), all.size());
  notify(header.revision);
}

void ResourceStore::apply(const store::ResponseHeader& header, std::vector<store::WatchEvent>& events) {
  // Parse and validate outside the lock: readers are never held up by a large batch.
  struct Change {
    const store::WatchEvent* event;
    Kind kind;
    Entry entry;
    bool admitted;
    std::string reason;
  };
  std::vector<Change> changes;
  changes.reserve(events.size());
  for (const store::WatchEvent& ev : events) {
    Change c{&ev, Kind::routes, {}, false, {}};
    if (ev.type == store::WatchEvent::Type::put) c.admitted = admit(ev.kv, c.kind, c.entry, c.reason);
    if (!c.admitted && !c.reason.empty()) {
      PORTICO_LOG(warn, "etcd key %s at revision %lld skipped (the previous value is dropped too): %s",
                  ev.kv.key.c_str(), static_cast<long long>(ev.kv.mod_revision), c.reason.c_str());
    }
    changes.push_back(std::move(c));
  }
  {
    std::unique_lock lock(mu_);
    for (Change& c : changes) {
      const std::string& key = c.event->kv.key;
      remove_key(key);
      if (c.admitted) {
        std::string id = c.entry.id;
        tables_[static_cast<size_t>(c.kind)].entries.insert_or_assign(std::move(id), std::move(c.entry));
      } else if (!c.reason.empty()) {
        rejected_[key] = RejectedKey{key, c.event->kv.mod_revision, c.reason};
      }
    }
    if (header.revision > revision_) revision_ = header.revision;
  }
  notify(header.revision);
}

void ResourceStore::set_connected(bool connected, const std::string& why) {
  std::unique_lock lock(mu_);
  stale_ = !connected;
  stale_reason_ = connected ? std::string() : why;
}

void ResourceStore::on_change(std::function<void(int64_t)> listener) {
  std::unique_lock lock(mu_);
  listeners_.push_back(std::move(listener));
}

void ResourceStore::notify(int64_t revision) {
  std::vector<std::function<void(int64_t)>> listeners;
  {
    std::shared_lock lock(mu_);
    listeners = listeners_;
  }
  for (auto& l : listeners) l(revision);
}

std::optional<Entry> ResourceStore::get(Kind kind, std::string_view id) const {
  std::shared_lock lock(mu_);
  const auto& entries = tables_[static_cast<size_t>(kind)].entries;
  auto it = entries.find(id);
  if (it == entries.end()) return std::nullopt;
  return it->second;
}

std::vector<Entry> ResourceStore::list(Kind kind) const {
  std::shared_lock lock(mu_);
  std::vector<Entry> out;
  const auto& entries = tables_[static_cast<size_t>(kind)].entries;
  out.reserve(entries.size());
  for (const auto& [id, e] : entries) out.push_back(e);
  return out;
}

size_t ResourceStore::count(Kind kind) const {
  std::shared_lock lock(mu_);
  return tables_[static_cast<size_t>(kind)].entries.size();
}

int64_t ResourceStore::revision() const {
  std::shared_lock lock(mu_);
  return revision_;
}

bool ResourceStore::loaded() const {
  std::shared_lock lock(mu_);
  return loaded_;
}

bool ResourceStore::stale() const {
  std::shared_lock lock(mu_);
  return stale_;
}

std::string ResourceStore::stale_reason() const {
  std::shared_lock lock(mu_);
  return stale_reason_;
}

uint64_t ResourceStore::cluster_id() const {
  std::shared_lock lock(mu_);
  return cluster_id_;
}

std::vector<RejectedKey> ResourceStore::rejected() const {
  std::shared_lock lock(mu_);
  std::vector<RejectedKey> out;
  for (const auto& [k, r] : rejected_) out.push_back(r);
  return out;
}

std::vector<std::string> ResourceStore::referrers(Kind kind, std::string_view id, size_t limit) const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  auto scan = [&](Kind from, std::string Entry::*field) {
    for (const auto& [rid, e] : tables_[static_cast<size_t>(from)].entries) {
      if (out.size() >= limit) return;
      if (e.*field == id) out.push_back(std::string(info(from).noun) + " [" + rid + "]");
    }
  };
  switch (kind) {
    case Kind::upstreams:
      scan(Kind::routes, &Entry::upstream_id);
      scan(Kind::services, &Entry::upstream_id);
      break;
    case Kind::services:
      scan(Kind::routes, &Entry::service_id);
      break;
    case Kind::plugin_configs:
      scan(Kind::routes, &Entry::plugin_config_id);
      break;
    default:
      break;
  }
  return out;
}

config::LoadResult ResourceStore::assemble() const {
  std::array<std::vector<Entry>, kKindCount> copy;
  {
    std::shared_lock lock(mu_);
    for (size_t k = 0; k < kKindCount; ++k) {
      copy[k].reserve(tables_[k].entries.size());
      for (const auto& [id, e] : tables_[k].entries) copy[k].push_back(e);
    }
  }
  config::LoadResult result;
  EVP_MD_CTX* md = EVP_MD_CTX_new();
  EVP_DigestInit_ex(md, EVP_sha256(), nullptr);
  auto hash_part = [md](std::string_view s) { EVP_DigestUpdate(md, s.data(), s.size() + 1); };

  // Referenced ids that exist, so dangling references drop the referrer instead of failing everything.
  std::array<std::unordered_set<std::string>, kKindCount> ids;
  for (size_t k = 0; k < kKindCount; ++k) {
    for (const Entry& e : copy[k]) ids[k].insert(e.id);
  }
  auto resolves = [&](Kind kind, const std::string& id) {
    return id.empty() || ids[static_cast<size_t>(kind)].contains(id);
  };

  config::Config& cfg = result.config;
  config::Errors errors;
  config::ValidateOptions options;
  options.id_required = false;
  for (size_t k = 0; k < kKindCount; ++k) {
    const Kind kind = kKinds[k].kind;
    for (const Entry& e : copy[k]) {
      if (!resolves(Kind::upstreams, e.upstream_id) || !resolves(Kind::services, e.service_id) ||
          !resolves(Kind::plugin_configs, e.plugin_config_id)) {
        PORTICO_LOG(warn, "%s [%s] left out of the data plane config: it references a missing resource",
                    std::string(kKinds[k].noun).c_str(), e.id.c_str());
        continue;
      }
      json value = json::parse(e.value, nullptr, false);
      if (value.is_discarded()) continue;  // admit() already refused it
      std::string path = std::string(kKinds[k].name) + "/" + e.id;
      hash_part(kKinds[k].name);
      hash_part(e.id);
      hash_part(e.value);
      switch (kind) {
        case Kind::routes:
          if (auto r = config::validate_route(value, path, errors, options)) {
            r->id = e.id;
            cfg.routes.push_back(std::move(*r));
          }
          break;
        case Kind::services:
          if (auto s = config::validate_service(value, path, errors, options)) {
            s->id = e.id;
            cfg.services.push_back(std::move(*s));
          }
          break;
        case Kind::upstreams:
          if (auto u = config::validate_upstream(value, path, errors, options)) {
            u->id = e.id;
            cfg.upstreams.push_back(std::move(*u));
          }
          break;
        case Kind::consumers:
          if (auto c = config::validate_consumer(value, path, errors, options))
            cfg.consumers.push_back(std::move(*c));
          break;
        case Kind::ssls:
          if (auto s = config::validate_ssl(value, path, errors, options)) {
            s->id = e.id;
            cfg.ssls.push_back(std::move(*s));
          }
          break;
        case Kind::global_rules:
          if (auto g = config::validate_global_rule(value, path, errors, options)) {
            g->id = e.id;
            cfg.global_rules.push_back(std::move(*g));
          }
          break;
        case Kind::plugin_configs:
          if (auto p = config::validate_plugin_config(value, path, errors, options)) {
            p->id = e.id;
            cfg.plugin_configs.push_back(std::move(*p));
          }
          break;
      }
    }
  }
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int digest_len = 0;
  EVP_DigestFinal_ex(md, digest, &digest_len);
  EVP_MD_CTX_free(md);
  static const char kHex[] = "0123456789abcdef";
  for (unsigned i = 0; i < digest_len; ++i) {
    result.content_hash += kHex[digest[i] >> 4];
    result.content_hash += kHex[digest[i] & 15];
  }
  if (errors.total() == 0) config::check_config(cfg, errors);
  result.errors_truncated = errors.truncated();
  result.errors = errors.take();
  result.ok = result.errors.empty();
  return result;
}

}  // namespace portico::controlplane
