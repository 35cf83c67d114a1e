#include "controlplane/resource_store.h"

#include <algorithm>

#include <nlohmann/json.hpp>
#include <set>
#include <unordered_set>

#include "base/log.h"
#include "config/json_input.h"
#include "config/validate.h"

namespace portico::controlplane {

using nlohmann::json;

std::string reference_id(const json& v) {
  if (v.is_string()) return v.get<std::string>();
  if (v.is_number_integer() && v.get<int64_t>() >= 1) return std::to_string(v.get<int64_t>());
  if (v.is_number_unsigned()) return std::to_string(v.get<uint64_t>());
  return {};
}

std::vector<std::pair<std::string, std::string>> plugin_upstream_refs(const json& resource) {
  std::vector<std::pair<std::string, std::string>> out;
  auto plugins = resource.find("plugins");
  if (plugins == resource.end() || !plugins->is_object()) return out;
  auto split = plugins->find("traffic-split");
  if (split == plugins->end() || !split->is_object()) return out;
  auto rules = split->find("rules");
  if (rules == split->end() || !rules->is_array()) return out;
  for (size_t i = 0; i < rules->size(); ++i) {
    const json& rule = (*rules)[i];
    auto ups = rule.is_object() ? rule.find("weighted_upstreams") : rule.end();
    if (ups == rule.end() || !ups->is_array()) continue;
    for (size_t j = 0; j < ups->size(); ++j) {
      const json& wu = (*ups)[j];
      auto id = wu.is_object() ? wu.find("upstream_id") : wu.end();
      if (id == wu.end()) continue;
      out.emplace_back(reference_id(*id), "plugins.traffic-split.rules[" + std::to_string(i) +
                                              "].weighted_upstreams[" + std::to_string(j) + "].upstream_id");
    }
  }
  return out;
}

std::optional<std::pair<std::string, std::string>> client_cert_ref(Kind kind, const json& resource) {
  const json* upstream = &resource;
  std::string path = "tls.client_cert_id";
  if (kind == Kind::routes || kind == Kind::services) {
    auto it = resource.find("upstream");
    if (it == resource.end() || !it->is_object()) return std::nullopt;
    upstream = &*it;
    path = "upstream." + path;
  } else if (kind != Kind::upstreams) {
    return std::nullopt;
  }
  auto tls = upstream->find("tls");
  if (tls == upstream->end() || !tls->is_object()) return std::nullopt;
  auto id = tls->find("client_cert_id");
  if (id == tls->end()) return std::nullopt;
  return std::pair{reference_id(*id), std::move(path)};
}

bool is_client_ssl(const json& ssl) {
  auto type = ssl.find("type");
  return type != ssl.end() && *type == "client";
}

bool validate_value(Kind kind, const json& value, config::Errors& errors,
                    std::vector<config::LimitGroup>* groups) {
  config::ValidateOptions options;
  options.id_required = false;
  auto done = [groups](const auto& resource) {
    if (!resource) return false;
    if constexpr (requires { resource->plugins; }) {
      if (groups != nullptr) *groups = config::limit_groups(resource->plugins);
    }
    return true;
  };
  switch (kind) {
    case Kind::routes:
      return done(config::validate_route(value, "", errors, options));
    case Kind::services:
      return done(config::validate_service(value, "", errors, options));
    case Kind::upstreams:
      return done(config::validate_upstream(value, "", errors, options));
    case Kind::consumers:
      return done(config::validate_consumer(value, "", errors, options));
    case Kind::ssls:
      return done(config::validate_ssl(value, "", errors, options));
    case Kind::global_rules:
      return done(config::validate_global_rule(value, "", errors, options));
    case Kind::plugin_configs:
      return done(config::validate_plugin_config(value, "", errors, options));
    case Kind::credentials:
      return done(config::validate_credential(value, "", errors, options));
  }
  return false;
}

namespace {

std::string string_field(const json& v, const char* name) {
  auto it = v.find(name);
  return it == v.end() ? std::string() : reference_id(*it);
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
  // A credential's id is "<username>/credentials/<id>": its key is below its consumer's.
  key += kind == Kind::credentials ? info(Kind::consumers).name : info(kind).name;
  key += '/';
  key += id;
  return key;
}

bool ResourceStore::admit(const store::KeyValue& kv, Kind& kind, Entry& out, std::string& reason) const {
  std::string_view rest(kv.key);
  if (!rest.starts_with(prefix_) || rest.size() <= prefix_.size() || rest[prefix_.size()] != '/')
    return false;
  std::string_view id;
  if (!parse_key(kv.key, kind, id)) {
    reason = "not a resource key";
    return false;
  }
  std::string_view username, own_id;
  if (kind == Kind::credentials ? !config::split_credential_id(id, username, own_id) : !valid_id(id)) {
    reason = "invalid id '" + std::string(id) + "'";
    return false;
  }
  // The Admin API's reader: a hand-written value too deep to copy or dump safely, or with a repeated
  // key, is refused like any invalid value (logged, skipped, listed in rejected()).
  config::Errors parse_errors;
  std::optional<json> parsed = config::parse_json(kv.value, parse_errors);
  if (!parsed) {
    reason = "value is not valid JSON: " + describe(parse_errors);
    return false;
  }
  json& value = *parsed;
  if (!value.is_object()) {
    reason = "value is not a JSON object";
    return false;
  }
  const std::string_view id_field = info(kind).id_field;
  // A credential's value names its own id, as APISIX writes it ("key-1"), or its full id.
  if (auto it = value.find(id_field); it != value.end() && reference_id(*it) != id &&
                                      (kind != Kind::credentials || reference_id(*it) != own_id)) {
    reason = std::string(id_field) + " " + it->dump() + " differs from the key's";
    return false;
  }
  // The id is always in the value (a hand-written key may leave it to the key), so the value stands on its
  // own, and it is validated with the id the data planes will see: what is admitted here, they accept.
  value[id_field] = std::string(id);
  config::Errors errors;
  if (!validate_value(kind, value, errors, &out.limit_groups)) {
    reason = describe(errors);
    return false;
  }
  out.id = std::string(id);
  // Canonical text (keys sorted, compact), so every process hashes the same bytes for the same resource.
  out.value = value.dump();
  out.create_revision = kv.create_revision;
  out.mod_revision = kv.mod_revision;
  out.upstream_id = string_field(value, "upstream_id");
  out.service_id = string_field(value, "service_id");
  out.plugin_config_id = string_field(value, "plugin_config_id");
  out.has_upstream = sets_upstream(value);
  for (auto& [ref, field] : plugin_upstream_refs(value)) out.split_upstream_ids.push_back(std::move(ref));
  if (auto ref = client_cert_ref(kind, value)) out.client_cert_id = std::move(ref->first);
  out.client_ssl = kind == Kind::ssls && is_client_ssl(value);
  return true;
}

bool ResourceStore::parse_key(std::string_view key, Kind& kind, std::string_view& id) const {
  if (!key.starts_with(prefix_) || key.size() <= prefix_.size() + 1 || key[prefix_.size()] != '/')
    return false;
  key.remove_prefix(prefix_.size() + 1);
  size_t slash = key.find('/');
  if (slash == std::string_view::npos || !kind_of(key.substr(0, slash), kind)) return false;
  id = key.substr(slash + 1);
  // consumers/<username>/credentials/<id>
  if (kind == Kind::consumers && id.find('/') != std::string_view::npos) kind = Kind::credentials;
  return true;
}

void ResourceStore::remove_key(const std::string& key) {
  rejected_.erase(key);
  Kind kind;
  std::string_view id;
  if (!parse_key(key, kind, id)) return;
  auto& entries = tables_[static_cast<size_t>(kind)].entries;
  if (auto it = entries.find(id); it != entries.end()) entries.erase(it);
  journal_.emplace_back(kind, std::string(id));
}

bool ResourceStore::wait_for_revision(int64_t revision, double seconds) const {
  auto reached = [&] {
    std::shared_lock lock(mu_);
    return loaded_ && !stale_ && revision_ >= revision;
  };
  std::unique_lock lock(revision_mu_);
  return revision_cv_.wait_for(lock, std::chrono::duration<double>(seconds), reached);
}

std::vector<Entry> ResourceStore::page(Kind kind, size_t begin, size_t count, size_t& total,
                                       std::string_view id_prefix) const {
  std::shared_lock lock(mu_);
  const auto& entries = tables_[static_cast<size_t>(kind)].entries;
  std::vector<Entry> out;
  if (!id_prefix.empty()) {  // a consumer's credentials: few
    total = 0;
    for (auto it = entries.lower_bound(id_prefix); it != entries.end() && it->first.starts_with(id_prefix);
         ++it, ++total) {
      if (total >= begin && out.size() < count) out.push_back(it->second);
    }
    return out;
  }
  total = entries.size();
  if (begin >= total) return out;
  auto it = entries.begin();
  std::advance(it, static_cast<std::ptrdiff_t>(begin));
  for (; it != entries.end() && out.size() < count; ++it) out.push_back(it->second);
  return out;
}

bool ResourceStore::has_rejected(Kind kind) const {
  std::shared_lock lock(mu_);
  const std::string dir = key_of(kind, "");
  auto it = rejected_.lower_bound(dir);
  return it != rejected_.end() && it->first.starts_with(dir);
}

ResourceStore::Cursor ResourceStore::cursor(int64_t* revision) const {
  std::shared_lock lock(mu_);
  if (revision != nullptr) *revision = revision_;
  return Cursor{epoch_, journal_start_ + journal_.size()};
}

bool ResourceStore::changes_since(Cursor since, std::vector<Touched>& out, Cursor& now,
                                  int64_t& revision) const {
  std::shared_lock lock(mu_);
  const uint64_t end = journal_start_ + journal_.size();
  if (since.epoch != epoch_ || since.position < journal_start_ || since.position > end) return false;
  std::set<std::pair<Kind, std::string_view>> seen;
  for (uint64_t p = since.position; p < end; ++p) {
    const auto& [kind, id] = journal_[p - journal_start_];
    if (!seen.emplace(kind, id).second) continue;
    const auto& entries = tables_[static_cast<size_t>(kind)].entries;
    auto it = entries.find(id);
    out.push_back(Touched{kind, id, it == entries.end() ? std::nullopt : std::optional<Entry>(it->second)});
  }
  now = Cursor{epoch_, end};
  revision = revision_;
  return true;
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
    ++epoch_;
    journal_.clear();
    journal_start_ = 0;
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
    if (journal_.size() > kJournalMax) {  // readers that far behind read everything instead
      const size_t drop = journal_.size() / 2;
      journal_.erase(journal_.begin(), journal_.begin() + static_cast<std::ptrdiff_t>(drop));
      journal_start_ += drop;
    }
  }
  notify(header.revision);
}

void ResourceStore::set_connected(bool connected, const std::string& why) {
  {
    std::unique_lock lock(mu_);
    stale_ = !connected;
    stale_reason_ = connected ? std::string() : why;
  }
  { std::lock_guard wake(revision_mu_); }
  revision_cv_.notify_all();
}

void ResourceStore::on_change(std::function<void(int64_t)> listener) {
  std::unique_lock lock(mu_);
  listeners_.push_back(std::move(listener));
}

void ResourceStore::notify(int64_t revision) {
  { std::lock_guard wake(revision_mu_); }  // a waiter between its check and its wait cannot miss this
  revision_cv_.notify_all();
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

std::vector<std::pair<Kind, std::string>> ResourceStore::referrers(Kind kind, std::string_view id,
                                                                   size_t limit) const {
  std::shared_lock lock(mu_);
  std::vector<std::pair<Kind, std::string>> out;
  auto scan = [&](Kind from, std::string Entry::*field) {
    for (const auto& [rid, e] : tables_[static_cast<size_t>(from)].entries) {
      if (out.size() >= limit) return;
      if (e.*field == id) out.emplace_back(from, rid);
    }
  };
  switch (kind) {
    case Kind::upstreams:
      scan(Kind::routes, &Entry::upstream_id);
      scan(Kind::services, &Entry::upstream_id);
      // ... and through traffic-split, from routes, services and plugin configs.
      for (Kind from : {Kind::routes, Kind::services, Kind::plugin_configs}) {
        for (const auto& [rid, e] : tables_[static_cast<size_t>(from)].entries) {
          if (out.size() >= limit) break;
          if (std::find(e.split_upstream_ids.begin(), e.split_upstream_ids.end(), id) !=
                  e.split_upstream_ids.end() &&
              std::find(out.begin(), out.end(), std::pair<Kind, std::string>(from, rid)) == out.end()) {
            out.emplace_back(from, rid);
          }
        }
      }
      break;
    case Kind::services:
      scan(Kind::routes, &Entry::service_id);
      break;
    case Kind::plugin_configs:
      scan(Kind::routes, &Entry::plugin_config_id);
      break;
    case Kind::ssls:
      scan(Kind::upstreams, &Entry::client_cert_id);
      scan(Kind::services, &Entry::client_cert_id);
      scan(Kind::routes, &Entry::client_cert_id);
      break;
    default:
      break;
  }
  return out;
}

std::optional<std::pair<Kind, std::string>> ResourceStore::limit_group_mismatch(
    const config::LimitGroup& group, Kind self_kind, std::string_view self_id) const {
  std::shared_lock lock(mu_);
  for (Kind kind : kLimitGroupKinds) {
    for (const auto& [id, e] : tables_[static_cast<size_t>(kind)].entries) {
      if (e.limit_groups.empty() || (kind == self_kind && id == self_id)) continue;
      for (const config::LimitGroup& g : e.limit_groups) {
        if (g.name == group.name && g.digest != group.digest) return std::pair{kind, id};
      }
    }
  }
  return std::nullopt;
}

std::vector<std::string> ResourceStore::routes_relying_on(std::string_view service_id, size_t limit) const {
  std::shared_lock lock(mu_);
  std::vector<std::string> out;
  for (const auto& [rid, e] : tables_[static_cast<size_t>(Kind::routes)].entries) {
    if (out.size() >= limit) break;
    if (e.service_id == service_id && !e.has_upstream) out.push_back(rid);
  }
  return out;
}

sync::ResourceSet ResourceStore::publishable() const {
  std::array<std::vector<Entry>, kKindCount> copy;
  {
    std::shared_lock lock(mu_);
    for (size_t k = 0; k < kKindCount; ++k) {
      copy[k].reserve(tables_[k].entries.size());
      for (const auto& [id, e] : tables_[k].entries) copy[k].push_back(e);
    }
  }
  // Every cross-resource rule of the data plane's loader (config::check_config) is applied here, leaving out
  // what breaks one instead of letting one resource make every data plane refuse everything. Only values
  // written into etcd by hand (or a race the Admin API's transactions do not cover) can break one; each is
  // logged. Kinds are walked so that what a resource refers to is settled before it: upstreams and plugin
  // configs first, then services, then routes.
  std::array<std::unordered_set<std::string>, kKindCount> kept;
  std::unordered_set<std::string> services_with_upstream;
  std::unordered_set<std::string> client_ssls;
  const std::function<bool(const std::string&)> client_ssl = [&](const std::string& id) {
    return client_ssls.contains(id);
  };
  const std::function<bool(Kind, const std::string&)> is_kept = [&](Kind kind, const std::string& id) {
    return kept[static_cast<size_t>(kind)].contains(id);
  };
  const std::function<bool(const std::string&)> has_upstream = [&](const std::string& id) {
    return services_with_upstream.contains(id);
  };
  constexpr Kind kOrder[] = {Kind::ssls,        Kind::upstreams,    Kind::plugin_configs, Kind::consumers,
                             Kind::credentials, Kind::global_rules, Kind::services,       Kind::routes};
  for (Kind kind : kOrder) {
    const size_t k = static_cast<size_t>(kind);
    for (const Entry& e : copy[k]) {
      if (const char* why = left_out_because(kind, e, is_kept, has_upstream, client_ssl)) {
        PORTICO_LOG(warn, "%s [%s] left out of the data plane config: %s",
                    std::string(kKinds[k].noun).c_str(), e.id.c_str(), why);
        continue;
      }
      if (kind == Kind::services && e.has_upstream) services_with_upstream.insert(e.id);
      if (e.client_ssl) client_ssls.insert(e.id);
      kept[k].insert(e.id);
    }
  }
  sync::ResourceSet set;
  for (size_t k = 0; k < kKindCount; ++k) {
    for (Entry& e : copy[k]) {
      if (kept[k].contains(e.id)) set.put(kKinds[k].name, std::move(e.id), std::move(e.value));
    }
  }
  return set;
}

const char* ResourceStore::left_out_because(
    Kind kind, const Entry& e, const std::function<bool(Kind, const std::string&)>& kept,
    const std::function<bool(const std::string&)>& service_has_upstream,
    const std::function<bool(const std::string&)>& client_ssl) {
  if (kind == Kind::credentials) {
    std::string_view username, own_id;
    if (!config::split_credential_id(e.id, username, own_id) || !kept(Kind::consumers, std::string(username)))
      return "its consumer does not exist";
    return nullptr;
  }
  if ((!e.upstream_id.empty() && !kept(Kind::upstreams, e.upstream_id)) ||
      (!e.service_id.empty() && !kept(Kind::services, e.service_id)) ||
      (!e.plugin_config_id.empty() && !kept(Kind::plugin_configs, e.plugin_config_id))) {
    return "it references a missing resource";
  }
  // The data plane's loader refuses a whole document whose upstream names a missing or server ssl.
  if (!e.client_cert_id.empty() && !client_ssl(e.client_cert_id))
    return "its upstream's tls.client_cert_id names no ssl of type client";
  if (kind == Kind::routes && !e.has_upstream &&
      (e.service_id.empty() || !service_has_upstream(e.service_id))) {
    return "it has no upstream (neither its own nor its service's)";
  }
  return nullptr;
}

bool sets_upstream(const nlohmann::json& resource) {
  return resource.contains("upstream") || resource.contains("upstream_id");
}

config::LoadResult ResourceStore::assemble() const {
  return load_set(publishable());
}

config::LoadResult load_set(const sync::ResourceSet& set) {
  // The same document and loader a data plane uses: what traditional serves is what data planes serve.
  config::LoadResult result = config::parse_text(set.document(), config::Format::json, false);
  result.content_hash = set.content_hash();
  return result;
}

}  // namespace portico::controlplane
