// AdminService (admin_service.h): the request's target, then the writes (PUT, POST, PATCH) and deletes,
// each one etcd transaction guarded by compares; the reads are in admin_reads.cc, the answers and values they
// share in admin_values.h.
#include "controlplane/admin_service.h"

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/log.h"
#include "config/json_input.h"
#include "config/validate.h"
#include "controlplane/admin_values.h"

namespace portico::controlplane {

using admin::AdminRequest;
using admin::AdminResponse;
using admin::error_response;
using nlohmann::json;
using namespace detail;

namespace {

constexpr int kMaxAttempts = 5;

AdminResponse not_allowed(std::string_view message, bool collection, bool post_allowed) {
  AdminResponse r = error_response(405, message);
  r.headers.emplace_back(
      "Allow", collection ? (post_allowed ? "GET, PUT, POST" : "GET, PUT") : "GET, PUT, PATCH, DELETE");
  return r;
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

}  // namespace

AdminService::AdminService(store::EtcdClient& etcd, store::EtcdClient& fast_etcd, store::Mirror& mirror,
                           ResourceStore& copy)
    : etcd_(etcd), fast_etcd_(fast_etcd), mirror_(mirror), copy_(copy) {}

store::EtcdClient& AdminService::client() {
  return copy_.stale() ? fast_etcd_ : etcd_;
}

AdminResponse AdminService::handle(const AdminRequest& req) {
  if (stopping_) return error_response(503, "this control plane is shutting down");
  // "/routes", "/routes/", "/routes/1", "/routes/1/upstream/nodes"
  std::string_view path = req.path;
  if (path.starts_with('/')) path.remove_prefix(1);
  size_t slash = path.find('/');
  std::string_view kind_name = path.substr(0, slash);
  Target t;
  if (!kind_of(kind_name, t.kind)) {
    return error_response(
        404, "unknown resource type '" + std::string(kind_name) +
                 "' (routes, services, upstreams, consumers, ssls, global_rules, plugin_configs)");
  }
  if (slash != std::string_view::npos) {
    std::string_view rest = path.substr(slash + 1);
    size_t next = rest.find('/');
    t.id = std::string(rest.substr(0, next));
    if (next != std::string_view::npos) t.sub_path = std::string(rest.substr(next));
    if (t.id.empty() && !t.sub_path.empty()) return error_response(404, "empty resource id in the path");
    if (!t.id.empty() && !valid_id(t.id)) {
      return error_response(
          400, "invalid " + std::string(info(t.kind).noun) + " id '" + t.id + "': " + std::string(kIdRule));
    }
    // APISIX 3.x credentials: /consumers/<username>/credentials[/<id>]
    std::string_view sub = t.sub_path;
    if (t.kind == Kind::consumers && (sub == "/credentials" || sub.starts_with("/credentials/"))) {
      sub.remove_prefix(std::string_view("/credentials").size());
      if (sub.starts_with('/')) sub.remove_prefix(1);
      if (sub.find('/') != std::string_view::npos) return error_response(404, "unknown credential path");
      t.kind = Kind::credentials;
      t.owner = std::move(t.id);
      t.id = std::string(sub);
      t.sub_path.clear();
      if (!t.id.empty() && !valid_id(t.id)) {
        return error_response(400, "invalid credential id '" + t.id + "': " + std::string(kIdRule));
      }
      return handle_credential(t, req);
    }
  }
  if (!t.sub_path.empty() && req.method != "PATCH") {
    return error_response(404,
                          "sub-paths are only for PATCH (e.g. PATCH /apisix/admin/routes/1/upstream/nodes)");
  }
  const bool collection = t.id.empty();
  const bool post_allowed = info(t.kind).post_allowed;
  if (req.method == "GET") return collection ? list(t, req.query) : get_one(t);
  if (req.method == "PUT") return write(t, req);
  if (req.method == "POST") {
    if (!collection) {
      return not_allowed("POST creates with a server-made id: POST to the collection, or PUT to an id",
                         collection, post_allowed);
    }
    if (!post_allowed) {
      return not_allowed("POST is not available for " + std::string(info(t.kind).name) +
                             ": PUT it with its " + std::string(info(t.kind).id_field),
                         collection, post_allowed);
    }
    return write(t, req);
  }
  if (req.method == "PATCH") {
    if (collection) return not_allowed("PATCH needs a resource id", collection, post_allowed);
    return write(t, req);
  }
  if (req.method == "DELETE") {
    if (collection) return not_allowed("DELETE needs a resource id", collection, post_allowed);
    return remove(t, req);
  }
  return not_allowed("method " + req.method + " is not supported", collection, post_allowed);
}

// APISIX answers POST and PATCH on credentials with 405 (its credential resource does not support them).
AdminResponse AdminService::handle_credential(const Target& t, const AdminRequest& req) {
  const bool collection = t.id.empty();
  auto refuse = [&](std::string_view message) {
    AdminResponse r = error_response(405, message);
    r.headers.emplace_back("Allow", collection ? "GET, PUT" : "GET, PUT, DELETE");
    return r;
  };
  if (req.method == "GET") return collection ? list(t, req.query) : get_one(t);
  if (req.method == "PUT") return write(t, req);
  if (req.method == "DELETE") {
    if (collection) return refuse("DELETE needs a credential id");
    return remove(t, req);
  }
  return refuse("method " + req.method + " is not supported for credentials (PUT creates and replaces)");
}

AdminResponse AdminService::write(const Target& target, const AdminRequest& req) {
  if (stopping_) return error_response(503, "this control plane is shutting down");
  const KindInfo& ki = info(target.kind);
  const std::string id_field(ki.id_field);
  config::Errors parse_errors;
  std::optional<json> parsed = config::parse_json(req.body, parse_errors);
  if (!parsed) return invalid(parse_errors, "invalid request body: ");
  json body = std::move(*parsed);
  const bool patch = req.method == "PATCH";
  // Each segment of a sub-path is a level of the patched value (PATCH builds the missing ones).
  if (static_cast<size_t>(std::count(target.sub_path.begin(), target.sub_path.end(), '/')) >=
      config::kMaxNesting) {
    return error_response(400, "the PATCH sub-path is deeper than a resource may nest (" +
                                   std::to_string(config::kMaxNesting) + " levels)");
  }
  if (!patch && !body.is_object()) return error_response(400, "the request body must be a JSON object");

  Target t = target;
  bool create_only = req.if_none_match == "*";
  if (!req.if_none_match.empty() && !create_only)
    return error_response(400, "If-None-Match supports only '*'");
  if (req.method == "POST") {
    if (body.contains(id_field)) {
      return error_response(400, "POST makes the " + id_field + " itself; PUT to /apisix/admin/" +
                                     std::string(ki.name) + "/<" + id_field + "> to choose it");
    }
    t.id = generate_id();
    create_only = true;  // a generated id never replaces anything, even on a collision or a retry
  } else if (!patch) {
    auto it = body.find(id_field);
    if (it != body.end()) {
      std::string body_id = reference_id(*it);
      if (body_id.empty()) return error_response(400, id_field + ": must be a string");
      if (t.id.empty()) {
        t.id = body_id;
      } else if (body_id != t.id) {
        return error_response(400, "wrong " + std::string(ki.noun) + " " + id_field + ": the URL says '" +
                                       t.id + "' and the body says '" + body_id + "'");
      }
    }
    if (t.id.empty()) {
      return error_response(400,
                            "missing " + std::string(ki.noun) + " " + id_field + " (in the URL or the body)");
    }
    if (!valid_id(t.id)) {
      return error_response(400, id_field + ": " + std::string(kIdRule));
    }
  }
  int64_t if_match = -1;
  if (!req.if_match.empty() && !parse_revision_tag(req.if_match, if_match)) {
    return error_response(400, "If-Match must be a modifiedIndex (a number, optionally quoted)");
  }

  const std::string key = copy_.key_of(t.kind, t.copy_id());
  store::EtcdClient& etcd = client();
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    // A credential needs its consumer, until the write commits (compared in the transaction); deleting the
    // consumer deletes its credentials in the same transaction.
    std::string owner_key;
    if (t.kind == Kind::credentials) {
      store::RangeRequest q;
      q.key = owner_key = copy_.key_of(Kind::consumers, t.owner);
      q.count_only = true;
      store::RangeResult qr;
      store::Status qs = etcd.range(q, qr);
      if (!qs.ok()) return store_failure(qs);
      if (qr.count == 0) return error_response(404, "consumer not found");
    }
    // 1. Read the resource.
    store::RangeRequest read;
    read.key = key;
    store::RangeResult found;
    store::Status s = etcd.range(read, found);
    if (!s.ok()) return store_failure(s);
    const bool exists = !found.kvs.empty();
    const int64_t observed = exists ? found.kvs.front().mod_revision : 0;
    if (if_match >= 0 && (!exists || observed != if_match)) {
      return error_response(412, exists ? "modifiedIndex is " + std::to_string(observed) +
                                              ", If-Match asked for " + std::to_string(if_match)
                                        : std::string(ki.noun) +
                                              " does not exist; If-Match asked for modifiedIndex " +
                                              std::to_string(if_match));
    }
    if (create_only && exists) {
      return error_response(412, std::string(ki.noun) + " '" + t.id + "' already exists (If-None-Match: *)");
    }
    json current;
    bool stored_usable = true;
    if (exists) {
      std::optional<json> stored = parse_stored(found.kvs.front().value);
      stored_usable = stored && stored->is_object();
      current = stored_usable ? std::move(*stored) : json::object();
    }
    json value = patch ? json() : body;
    if (patch) {
      if (!exists) return not_found();
      // A value written into etcd by hand that is not a readable object: a merge onto nothing would quietly
      // drop every field the patch does not name (a service its upstream, and the routes relying on it).
      if (!stored_usable) {
        return error_response(409, "the stored value of " + std::string(ki.noun) + " '" + t.id +
                                       "' is not a readable JSON object; replace it whole with PUT");
      }
      value = current;
      std::string why;
      if (!apply_patch(value, t.sub_path, body, why)) return error_response(400, why);
      if (!value.is_object()) return error_response(400, "the patched value must stay a JSON object");
      // A body under a sub-path adds the sub-path's depth to its own.
      if (config::nested_deeper_than(value, config::kMaxNesting)) {
        return error_response(400, "the patched value would nest deeper than " +
                                       std::to_string(config::kMaxNesting) + " levels (" + t.sub_path +
                                       " plus the body's own nesting)");
      }
      if (auto it = value.find(id_field); it != value.end() && reference_id(*it) != t.id) {
        return error_response(400, id_field + " cannot be changed by PATCH");
      }
    }
    value[id_field] = t.id;
    const int64_t now = unix_now();
    if (exists && current.contains("create_time") && current["create_time"].is_number_integer()) {
      value["create_time"] = current["create_time"];
    } else {
      value["create_time"] = now;
    }
    value["update_time"] = now;
    // 2. Secrets are encrypted before they go anywhere (docs/secrets.md).
    if (config::Errors e; !encrypt_secrets(t.kind, value, e)) return invalid(e);
    // 3. Validate with the data plane's validator (which decrypts the secrets), a credential under the full
    // id data planes know it by.
    config::Errors errors;
    std::vector<config::LimitGroup> groups;
    if (t.kind == Kind::credentials) {
      json checked = value;
      checked["id"] = t.copy_id();
      if (!validate_value(t.kind, checked, errors)) return invalid(errors);
    } else if (!validate_value(t.kind, value, errors, &groups)) {
      return invalid(errors);
    }
    // 4. References must resolve, and keep resolving until the write commits (compared in the transaction).
    store::Txn txn;
    txn.compare.push_back(store::Compare{
        key, {}, store::Compare::Target::mod_revision, store::Compare::Result::equal, observed, {}});
    if (!owner_key.empty()) {
      txn.compare.push_back(store::Compare{
          owner_key, {}, store::Compare::Target::create_revision, store::Compare::Result::greater, 0, {}});
    }
    WriteChecks checks;
    if (std::optional<AdminResponse> refused = check_references(t, value, groups, txn, checks))
      return *refused;
    const std::string text = value.dump();
    txn.success.push_back(store::Op{store::Op::Type::put, key, {}, text, 0, false});
    txn.failure.push_back(store::Op{store::Op::Type::range, key, {}, {}, 0, false});
    // 5. Commit, or find out who won.
    store::TxnResult wr;
    s = etcd.txn(txn, wr);
    bool committed = s.ok() && wr.succeeded;
    int64_t modified = committed ? wr.header.revision : 0;
    int64_t created = exists ? found.kvs.front().create_revision : modified;
    const bool outcome_unknown =
        (!s.ok() && s.maybe_applied) || (s.ok() && !wr.succeeded && wr.ambiguous_retry);
    if (outcome_unknown) {
      // An attempt timed out after it was sent and may have committed, so a failed compare may be our own
      // write: if etcd holds exactly what we wrote, it is ours. (Only then: two writers sending identical
      // bytes must still conflict.)
      store::RangeResult now_rr;
      store::Status qs = etcd.range(read, now_rr);
      if (qs.ok() && !now_rr.kvs.empty() && now_rr.kvs.front().value == text) {
        committed = true;
        modified = now_rr.kvs.front().mod_revision;
        created = now_rr.kvs.front().create_revision;
      } else if (!s.ok()) {
        return store_failure(s);
      }
    } else if (!s.ok()) {
      return store_failure(s);
    }
    if (committed) {
      // Acknowledge once this replica's copy holds the write too (normally milliseconds), so what it serves
      // next (reads, the traditional proxy, data planes) already includes it.
      mirror_.wait_for(modified, 2.0);
      AdminResponse r{exists ? 200 : 201, item_json(t.kind, key, text, created, modified), {}};
      add_revision_headers(r, modified, modified);
      return r;
    }
    // The compare failed. If the resource itself changed, that is a lost race: with If-Match / If-None-Match
    // the caller asked to be told; otherwise read again and redo. If only a referenced resource changed, the
    // next attempt re-checks it (and answers 400 if it is gone).
    const std::vector<store::KeyValue>& now_kvs = wr.responses.empty() ? found.kvs : wr.responses.front().kvs;
    const int64_t now_mod = now_kvs.empty() ? 0 : now_kvs.front().mod_revision;
    if (now_mod != observed && (if_match >= 0 || create_only)) {
      return error_response(412,
                            std::string(ki.noun) + " '" + t.id + "' was changed concurrently; read it again");
    }
    // A scan's compare may have failed: the copy must catch up before it is trusted again.
    if (checks.groups_seen >= 0 || checks.ssl_users_scanned) mirror_.wait_for(wr.header.revision, 1.0);
  }
  return error_response(409, std::string(ki.noun) + " '" + t.id + "' keeps changing concurrently; try again");
}

AdminResponse AdminService::remove(const Target& t, const AdminRequest& req) {
  if (stopping_) return error_response(503, "this control plane is shutting down");
  const KindInfo& ki = info(t.kind);
  int64_t if_match = -1;
  if (!req.if_match.empty() && !parse_revision_tag(req.if_match, if_match)) {
    return error_response(400, "If-Match must be a modifiedIndex (a number, optionally quoted)");
  }
  const std::string key = copy_.key_of(t.kind, t.copy_id());
  store::EtcdClient& etcd = client();
  auto deleted = [&](int64_t revision) {
    if (revision > 0) mirror_.wait_for(revision, 2.0);
    AdminResponse r{200, "{\"deleted\":" + quote(t.id) + ",\"key\":" + quote(key) + "}", {}};
    add_revision_headers(r, revision, 0);
    return r;
  };
  const bool referable = t.kind == Kind::upstreams || t.kind == Kind::services ||
                         t.kind == Kind::plugin_configs || t.kind == Kind::ssls;
  // The kinds whose values may refer to the deleted one: none of them may change between scan and delete.
  const std::vector<Kind> referring_kinds =
      t.kind == Kind::ssls ? std::vector<Kind>{Kind::upstreams, Kind::services, Kind::routes}
                           : std::vector<Kind>{Kind::routes, Kind::services, Kind::plugin_configs};
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    store::RangeRequest q;
    q.key = key;
    store::RangeResult rr;
    store::Status s = etcd.range(q, rr);
    if (!s.ok()) return store_failure(s);
    if (rr.kvs.empty()) return not_found();
    const int64_t observed = rr.kvs.front().mod_revision;
    if (if_match >= 0 && observed != if_match) {
      return error_response(412, "modifiedIndex is " + std::to_string(observed) + ", If-Match asked for " +
                                     std::to_string(if_match));
    }
    store::Txn txn;
    txn.compare.push_back(store::Compare{
        key, {}, store::Compare::Target::mod_revision, store::Compare::Result::equal, observed, {}});
    if (referable) {
      // Still in use? The scan runs over the copy at revision `seen`; the transaction then proves that no
      // route or service changed after it, so a reference created meanwhile cannot slip through.
      const int64_t seen = copy_.revision();
      std::vector<std::pair<Kind, std::string>> users = copy_.referrers(t.kind, t.id);
      if (!users.empty()) {
        // The copy may be a moment behind etcd (a referrer deleted just now): believe etcd before refusing.
        std::string names;
        bool confirmed = true;
        for (const auto& [kind, id] : users) {
          store::RangeRequest uq;
          uq.key = copy_.key_of(kind, id);
          store::RangeResult ur;
          store::Status us = etcd.range(uq, ur);
          if (!us.ok()) return store_failure(us);
          std::optional<json> stored = ur.kvs.empty() ? std::nullopt : parse_stored(ur.kvs.front().value);
          json v = stored ? std::move(*stored) : json();
          const char* field = t.kind == Kind::upstreams  ? "upstream_id"
                              : t.kind == Kind::services ? "service_id"
                                                         : "plugin_config_id";
          bool refers = v.is_object() && v.contains(field) && reference_id(v[field]) == t.id;
          if (!refers && t.kind == Kind::upstreams && v.is_object()) {
            for (const auto& [ref_id, ref_field] : plugin_upstream_refs(v)) refers |= ref_id == t.id;
          }
          if (t.kind == Kind::ssls && v.is_object()) {
            auto ref = client_cert_ref(kind, v);
            refers = ref && ref->first == t.id;
          }
          if (!refers) {
            confirmed = false;
            mirror_.wait_for(ur.kvs.empty() ? seen + 1 : ur.kvs.front().mod_revision, 1.0);
            break;
          }
          names += (names.empty() ? "" : ", ") + std::string(info(kind).noun) + " [" + id + "]";
        }
        if (confirmed) {
          return error_response(
              400, "can not delete this " + std::string(ki.noun) + ", " + names + " is still using it now");
        }
        continue;
      }
      for (Kind k : referring_kinds) {
        const std::string dir = copy_.key_of(k, "");
        txn.compare.push_back(store::Compare{dir,
                                             store::prefix_end(dir),
                                             store::Compare::Target::mod_revision,
                                             store::Compare::Result::less,
                                             seen + 1,
                                             {}});
      }
    }
    txn.success.push_back(store::Op{store::Op::Type::delete_range, key, {}, {}, 0, false});
    if (t.kind == Kind::consumers) {  // its credentials go with it, as in APISIX
      const std::string credentials =
          copy_.key_of(Kind::credentials, t.id + std::string(config::kCredentialsInfix));
      txn.success.push_back(store::Op{
          store::Op::Type::delete_range, credentials, store::prefix_end(credentials), {}, 0, false});
    }
    txn.failure.push_back(store::Op{store::Op::Type::range, key, {}, {}, 0, false});
    store::TxnResult wr;
    s = etcd.txn(txn, wr);
    const bool outcome_unknown =
        (!s.ok() && s.maybe_applied) || (s.ok() && !wr.succeeded && wr.ambiguous_retry);
    if (outcome_unknown) {
      store::RangeResult again;
      if (etcd.range(q, again).ok() && again.kvs.empty()) return deleted(again.header.revision);  // it landed
    }
    if (!s.ok()) return store_failure(s);
    if (wr.succeeded) return deleted(wr.header.revision);
    // Lost a race: 412 only if the resource itself changed; a route or service changing elsewhere just means
    // the copy must catch up before the scan is trusted.
    const std::vector<store::KeyValue>& now_kvs = wr.responses.empty() ? rr.kvs : wr.responses.front().kvs;
    if (now_kvs.empty()) return not_found();
    if (now_kvs.front().mod_revision != observed && if_match >= 0) {
      return error_response(412, std::string(ki.noun) + " '" + t.id + "' was changed concurrently");
    }
    mirror_.wait_for(wr.header.revision, 1.0);
  }
  return error_response(409, std::string(ki.noun) + " '" + t.id + "' keeps changing concurrently; try again");
}

void AdminService::stop() {
  stopping_ = true;
}

}  // namespace portico::controlplane
