#include "controlplane/admin_service.h"

#include <openssl/rand.h>

#include <chrono>
#include <nlohmann/json.hpp>

#include "base/log.h"
#include "config/validate.h"

namespace portico::controlplane {

using admin::AdminRequest;
using admin::AdminResponse;
using nlohmann::json;

namespace {

constexpr int kMaxAttempts = 5;

AdminResponse error(int status, std::string_view message) {
  return AdminResponse{status, admin::error_body(message), {}};
}

AdminResponse not_allowed(std::string_view message, bool collection, bool post_allowed) {
  AdminResponse r = error(405, message);
  r.headers.emplace_back(
      "Allow", collection ? (post_allowed ? "GET, PUT, POST" : "GET, PUT") : "GET, PUT, PATCH, DELETE");
  return r;
}

AdminResponse not_found() {
  return AdminResponse{404, R"({"message":"Key not found"})", {}};
}

AdminResponse unavailable(const store::Status& s) {
  return error(503, "etcd unavailable (" + s.message +
                        "): nothing was written; writes are refused until etcd has a quorum again");
}

std::string quote(std::string_view s) {
  return json(std::string(s)).dump();
}

int64_t unix_now() {
  return std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// 20 decimal digits, like the ids APISIX generates: time-ordered, with random low digits so two replicas
// creating at the same moment do not collide (the create transaction would refuse a collision anyway).
std::string generate_id() {
  uint32_t random = 0;
  RAND_bytes(reinterpret_cast<unsigned char*>(&random), sizeof random);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016lld%04u", static_cast<long long>(micros), random % 10000);
  return buf;
}

// "If-Match: 12", "If-Match: \"12\"" or "W/\"12\"" -> 12; false when unparsable.
bool parse_revision_tag(std::string_view text, int64_t& out) {
  if (text.starts_with("W/")) text.remove_prefix(2);
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"') text = text.substr(1, text.size() - 2);
  if (text.empty() || text.size() > 18) return false;
  int64_t v = 0;
  for (char c : text) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = v;
  return true;
}

json errors_json(const config::Errors& errors) {
  json list = json::array();
  for (const config::FieldError& e : errors.list()) list.push_back({{"path", e.path}, {"reason", e.reason}});
  return list;
}

AdminResponse invalid(const config::Errors& errors) {
  std::string summary;
  for (const config::FieldError& e : errors.list()) {
    if (!summary.empty()) summary += "; ";
    summary += e.path.empty() ? e.reason : e.path + ": " + e.reason;
  }
  if (errors.truncated()) summary += "; ...";
  json body = {{"error_msg", "invalid configuration: " + summary}, {"errors", errors_json(errors)}};
  return AdminResponse{400, body.dump(), {}};
}

// The value as shown to clients: an SSL's private keys never leave the control plane.
std::string presentable(Kind kind, const std::string& raw) {
  json v = json::parse(raw, nullptr, false);
  if (v.is_discarded()) return quote(raw);  // written into etcd by hand; shown as a string
  if (kind == Kind::ssls && v.is_object()) {
    v.erase("key");
    v.erase("keys");
  }
  return v.dump();
}

std::string item_json(Kind kind, const std::string& key, const std::string& value, int64_t created,
                      int64_t modified) {
  return "{\"key\":" + quote(key) + ",\"value\":" + presentable(kind, value) +
         ",\"createdIndex\":" + std::to_string(created) + ",\"modifiedIndex\":" + std::to_string(modified) +
         "}";
}

void add_revision_headers(AdminResponse& r, int64_t revision, int64_t modified) {
  if (modified > 0) r.headers.emplace_back("ETag", "\"" + std::to_string(modified) + "\"");
  if (revision > 0) r.headers.emplace_back("X-Portico-Revision", std::to_string(revision));
}

// A JSON merge patch (RFC 7396) at `pointer` ("" = the whole value, which merges; a sub-path replaces).
bool apply_patch(json& value, const std::string& sub_path, const json& patch, std::string& why) {
  if (sub_path.empty()) {
    if (!patch.is_object()) {
      why = "a PATCH body must be a JSON object (a merge patch); to replace a field, PATCH its sub-path";
      return false;
    }
    value.merge_patch(patch);
    return true;
  }
  try {
    json::json_pointer pointer(sub_path);
    if (patch.is_null()) {
      json& parent = value.at(pointer.parent_pointer());
      if (parent.is_object()) parent.erase(pointer.back());
    } else {
      value[pointer] = patch;
    }
  } catch (const json::exception& e) {
    why = "cannot apply the PATCH at '" + sub_path + "': " + e.what();
    return false;
  }
  return true;
}

struct Reference {
  Kind kind;
  const char* field;
};
constexpr Reference kRouteRefs[] = {{Kind::upstreams, "upstream_id"},
                                    {Kind::services, "service_id"},
                                    {Kind::plugin_configs, "plugin_config_id"}};
constexpr Reference kServiceRefs[] = {{Kind::upstreams, "upstream_id"}};

std::span<const Reference> references_of(Kind kind) {
  if (kind == Kind::routes) return kRouteRefs;
  if (kind == Kind::services) return kServiceRefs;
  return {};
}

}  // namespace

struct AdminService::Target {
  Kind kind = Kind::routes;
  std::string id;        // empty: the collection
  std::string sub_path;  // PATCH only: "/upstream/nodes"
};

AdminService::AdminService(store::EtcdClient& etcd, store::EtcdClient& fast_etcd, store::Mirror& mirror,
                           ResourceStore& copy)
    : etcd_(etcd), fast_etcd_(fast_etcd), mirror_(mirror), copy_(copy) {}

store::EtcdClient& AdminService::client() {
  return copy_.stale() ? fast_etcd_ : etcd_;
}

AdminResponse AdminService::handle(const AdminRequest& req) {
  // "/routes", "/routes/", "/routes/1", "/routes/1/upstream/nodes"
  std::string_view path = req.path;
  if (path.starts_with('/')) path.remove_prefix(1);
  size_t slash = path.find('/');
  std::string_view kind_name = path.substr(0, slash);
  Target t;
  if (!kind_of(kind_name, t.kind)) {
    return error(404, "unknown resource type '" + std::string(kind_name) +
                          "' (routes, services, upstreams, consumers, ssls, global_rules, plugin_configs)");
  }
  if (slash != std::string_view::npos) {
    std::string_view rest = path.substr(slash + 1);
    size_t next = rest.find('/');
    t.id = std::string(rest.substr(0, next));
    if (next != std::string_view::npos) t.sub_path = std::string(rest.substr(next));
    if (t.id.empty() && !t.sub_path.empty()) return error(404, "empty resource id in the path");
    if (!t.id.empty() && !valid_id(t.id)) {
      return error(400, "invalid " + std::string(info(t.kind).noun) + " id '" + t.id +
                            "': 1 to 64 characters of a-z A-Z 0-9 - _ .");
    }
  }
  if (!t.sub_path.empty() && req.method != "PATCH") {
    return error(404, "sub-paths are only for PATCH (e.g. PATCH /apisix/admin/routes/1/upstream/nodes)");
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

AdminResponse AdminService::get_one(const Target& t) {
  const std::string key = copy_.key_of(t.kind, t.id);
  store::RangeRequest rq;
  rq.key = key;
  store::RangeResult rr;
  store::Status s = client().range(rq, rr);
  if (s.ok()) {
    if (rr.kvs.empty()) return not_found();
    const store::KeyValue& kv = rr.kvs.front();
    AdminResponse r{200, item_json(t.kind, key, kv.value, kv.create_revision, kv.mod_revision), {}};
    add_revision_headers(r, rr.header.revision, kv.mod_revision);
    return r;
  }
  // etcd cannot answer: the copy is the best there is, and says so.
  std::optional<Entry> e = copy_.get(t.kind, t.id);
  if (!e) return not_found();
  AdminResponse r{200, item_json(t.kind, key, e->value, e->create_revision, e->mod_revision), {}};
  add_revision_headers(r, copy_.revision(), e->mod_revision);
  r.headers.emplace_back("X-Portico-Stale", "true");
  return r;
}

AdminResponse AdminService::list(const Target& t, const std::string& query) {
  // ?page=N&page_size=M (APISIX v3): 1-based pages.
  int64_t page = 0, page_size = 0;
  for (size_t pos = 0; pos < query.size();) {
    size_t amp = query.find('&', pos);
    std::string_view part(query.data() + pos, (amp == std::string::npos ? query.size() : amp) - pos);
    size_t eq = part.find('=');
    std::string_view name = part.substr(0, eq),
                     value = eq == std::string_view::npos ? "" : part.substr(eq + 1);
    int64_t* slot = name == "page" ? &page : name == "page_size" ? &page_size : nullptr;
    if (slot && (!parse_revision_tag(value, *slot) || *slot < 1 || (slot == &page_size && *slot > 500))) {
      return error(400,
                   std::string(name) + " must be an integer from 1" + (slot == &page_size ? " to 500" : ""));
    }
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  const std::string dir = copy_.key_of(t.kind, "");
  struct Row {
    std::string key, value;
    int64_t created, modified;
  };
  std::vector<Row> rows;
  int64_t revision = 0;
  bool stale = false;
  store::RangeRequest rq;
  rq.key = dir;
  rq.range_end = store::prefix_end(dir);
  store::RangeResult rr;
  store::Status s = client().range(rq, rr);
  if (s.ok()) {
    revision = rr.header.revision;
    for (store::KeyValue& kv : rr.kvs) {
      rows.push_back(Row{std::move(kv.key), std::move(kv.value), kv.create_revision, kv.mod_revision});
    }
  } else {
    stale = true;
    revision = copy_.revision();
    for (Entry& e : copy_.list(t.kind)) {
      rows.push_back(Row{dir + e.id, std::move(e.value), e.create_revision, e.mod_revision});
    }
  }
  size_t begin = 0, end = rows.size();
  if (page_size > 0 || page > 0) {
    if (page_size == 0) page_size = 10;
    if (page == 0) page = 1;
    begin = std::min(rows.size(), static_cast<size_t>((page - 1) * page_size));
    end = std::min(rows.size(), begin + static_cast<size_t>(page_size));
  }
  std::string body = "{\"total\":" + std::to_string(rows.size()) + ",\"list\":[";
  for (size_t i = begin; i < end; ++i) {
    if (i != begin) body += ',';
    body += item_json(t.kind, rows[i].key, rows[i].value, rows[i].created, rows[i].modified);
  }
  body += "]}";
  AdminResponse r{200, std::move(body), {}};
  add_revision_headers(r, revision, 0);
  if (stale) r.headers.emplace_back("X-Portico-Stale", "true");
  return r;
}

AdminResponse AdminService::write(const Target& target, const AdminRequest& req) {
  const KindInfo& ki = info(target.kind);
  const std::string id_field(ki.id_field);
  json body = json::parse(req.body, nullptr, false);
  if (body.is_discarded()) return error(400, "invalid JSON in the request body");
  const bool patch = req.method == "PATCH";
  if (!patch && !body.is_object()) return error(400, "the request body must be a JSON object");

  Target t = target;
  if (req.method == "POST") {
    if (body.contains(id_field)) {
      return error(400, "POST makes the " + id_field + " itself; PUT to /apisix/admin/" +
                            std::string(ki.name) + "/<" + id_field + "> to choose it");
    }
    t.id = generate_id();
  } else if (!patch) {
    auto it = body.find(id_field);
    if (it != body.end()) {
      if (!it->is_string() && !it->is_number_integer()) return error(400, id_field + ": must be a string");
      std::string body_id = it->is_string() ? it->get<std::string>() : std::to_string(it->get<int64_t>());
      if (t.id.empty()) {
        t.id = body_id;
      } else if (body_id != t.id) {
        return error(400, "wrong " + std::string(ki.noun) + " " + id_field + ": the URL says '" + t.id +
                              "' and the body says '" + body_id + "'");
      }
    }
    if (t.id.empty())
      return error(400, "missing " + std::string(ki.noun) + " " + id_field + " (in the URL or the body)");
    if (!valid_id(t.id)) return error(400, id_field + ": 1 to 64 characters of a-z A-Z 0-9 - _ .");
  }

  int64_t if_match = -1;
  if (!req.if_match.empty() && !parse_revision_tag(req.if_match, if_match)) {
    return error(400, "If-Match must be a modifiedIndex (a number, optionally quoted)");
  }
  const bool create_only = req.if_none_match == "*";
  if (!req.if_none_match.empty() && !create_only) return error(400, "If-None-Match supports only '*'");

  const std::string key = copy_.key_of(t.kind, t.id);
  store::EtcdClient& etcd = client();
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    // 1. Read the resource and what it references, in one consistent round trip.
    json value = patch ? json() : body;
    std::vector<std::pair<const Reference*, std::string>> refs;  // (reference, referenced id)
    store::Txn read;
    read.success.push_back(store::Op{store::Op::Type::range, key, {}, {}, 0, false});
    store::TxnResult rr;
    store::Status s = etcd.txn(read, rr);
    if (!s.ok()) return unavailable(s);
    const std::vector<store::KeyValue>& found = rr.responses.at(0).kvs;
    const bool exists = !found.empty();
    const int64_t observed = exists ? found.front().mod_revision : 0;
    if (if_match >= 0 && (!exists || observed != if_match)) {
      return error(412, exists ? "modifiedIndex is " + std::to_string(observed) + ", If-Match asked for " +
                                     std::to_string(if_match)
                               : std::string(ki.noun) + " does not exist; If-Match asked for modifiedIndex " +
                                     std::to_string(if_match));
    }
    if (create_only && exists)
      return error(412, std::string(ki.noun) + " '" + t.id + "' already exists (If-None-Match: *)");
    json current;
    if (exists) {
      current = json::parse(found.front().value, nullptr, false);
      if (current.is_discarded() || !current.is_object()) current = json::object();
    }
    if (patch) {
      if (!exists) return not_found();
      value = current;
      std::string why;
      if (!apply_patch(value, t.sub_path, body, why)) return error(400, why);
      if (!value.is_object()) return error(400, "the patched value must stay a JSON object");
      if (auto it = value.find(id_field); it != value.end() && (!it->is_string() || *it != t.id)) {
        return error(400, id_field + " cannot be changed by PATCH");
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
    // 2. Validate with the data plane's validator.
    config::Errors errors;
    if (!validate_value(t.kind, value, errors)) return invalid(errors);
    // 3. References must resolve, and keep resolving until the write commits (compared in the transaction).
    store::Txn txn;
    txn.compare.push_back(store::Compare{
        key, {}, store::Compare::Target::mod_revision, store::Compare::Result::equal, observed, {}});
    for (const Reference& ref : references_of(t.kind)) {
      auto it = value.find(ref.field);
      if (it == value.end() || !it->is_string()) continue;
      const std::string ref_id = it->get<std::string>();
      const std::string ref_key = copy_.key_of(ref.kind, ref_id);
      store::RangeRequest q;
      q.key = ref_key;
      q.count_only = true;
      store::RangeResult qr;
      store::Status qs = etcd.range(q, qr);
      if (!qs.ok()) return unavailable(qs);
      if (qr.count == 0) {
        config::Errors e;
        e.add(ref.field, std::string(info(ref.kind).noun) + " \"" + ref_id + "\" does not exist");
        return invalid(e);
      }
      txn.compare.push_back(store::Compare{
          ref_key, {}, store::Compare::Target::create_revision, store::Compare::Result::greater, 0, {}});
      refs.emplace_back(&ref, ref_id);
    }
    // A route on a service without an upstream needs its own (the data plane's check_config rule).
    if (t.kind == Kind::routes && value.contains("service_id") && !value.contains("upstream") &&
        !value.contains("upstream_id")) {
      store::RangeRequest q;
      q.key = copy_.key_of(Kind::services, value["service_id"].get<std::string>());
      store::RangeResult qr;
      store::Status qs = etcd.range(q, qr);
      if (!qs.ok()) return unavailable(qs);
      if (!qr.kvs.empty()) {
        json service = json::parse(qr.kvs.front().value, nullptr, false);
        if (service.is_object() && !service.contains("upstream") && !service.contains("upstream_id")) {
          config::Errors e;
          e.add("service_id", "service \"" + value["service_id"].get<std::string>() +
                                  "\" has no upstream and the route sets none (set upstream or upstream_id)");
          return invalid(e);
        }
      }
    }
    const std::string text = value.dump();
    txn.success.push_back(store::Op{store::Op::Type::put, key, {}, text, 0, false});
    txn.failure.push_back(store::Op{store::Op::Type::range, key, {}, {}, 0, false});
    // 4. Commit, or find out who won.
    store::TxnResult wr;
    s = etcd.txn(txn, wr);
    bool committed = s.ok() && wr.succeeded;
    int64_t modified = committed ? wr.header.revision : 0;
    int64_t created = exists ? found.front().create_revision : modified;
    const bool outcome_unknown =
        (!s.ok() && s.maybe_applied) || (s.ok() && !wr.succeeded && wr.ambiguous_retry);
    if (outcome_unknown) {
      // An attempt timed out after it was sent and may have committed, so a failed compare may be our own
      // write: if etcd holds exactly what we wrote, it is ours. (Only then: two writers sending identical
      // bytes must still conflict.)
      store::RangeRequest q;
      q.key = key;
      store::RangeResult now_rr;
      store::Status qs = etcd.range(q, now_rr);
      if (qs.ok() && !now_rr.kvs.empty() && now_rr.kvs.front().value == text) {
        committed = true;
        modified = now_rr.kvs.front().mod_revision;
        created = now_rr.kvs.front().create_revision;
      } else if (!s.ok()) {
        return unavailable(s);
      }
    } else if (!s.ok()) {
      return unavailable(s);
    }
    if (committed) {
      AdminResponse r{exists ? 200 : 201, item_json(t.kind, key, text, created, modified), {}};
      add_revision_headers(r, modified, modified);
      return r;
    }
    // Lost a race. With If-Match the caller asked to be told; otherwise read again and redo.
    if (if_match >= 0 || create_only) {
      return error(412, std::string(ki.noun) + " '" + t.id + "' was changed concurrently; read it again");
    }
  }
  return error(409, std::string(ki.noun) + " '" + t.id + "' keeps changing concurrently; try again");
}

AdminResponse AdminService::remove(const Target& t, const AdminRequest& req) {
  const KindInfo& ki = info(t.kind);
  int64_t if_match = -1;
  if (!req.if_match.empty() && !parse_revision_tag(req.if_match, if_match)) {
    return error(400, "If-Match must be a modifiedIndex (a number, optionally quoted)");
  }
  const std::string key = copy_.key_of(t.kind, t.id);
  store::EtcdClient& etcd = client();
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    store::RangeRequest q;
    q.key = key;
    store::RangeResult rr;
    store::Status s = etcd.range(q, rr);
    if (!s.ok()) return unavailable(s);
    if (rr.kvs.empty()) return not_found();
    const int64_t observed = rr.kvs.front().mod_revision;
    if (if_match >= 0 && observed != if_match) {
      return error(412, "modifiedIndex is " + std::to_string(observed) + ", If-Match asked for " +
                            std::to_string(if_match));
    }
    store::Txn txn;
    txn.compare.push_back(store::Compare{
        key, {}, store::Compare::Target::mod_revision, store::Compare::Result::equal, observed, {}});
    // Still in use? The scan runs over the copy at revision `seen`; the transaction then proves that no
    // route or service changed after it, so a reference created meanwhile cannot slip through.
    const bool referable =
        t.kind == Kind::upstreams || t.kind == Kind::services || t.kind == Kind::plugin_configs;
    if (referable) {
      // The copy must hold every route and service etcd has before it is scanned: wait for the newest
      // mod_revision among them (a revision inside the mirrored prefix, so the wait is not fooled by writes
      // elsewhere in etcd).
      int64_t newest = 0;
      for (Kind k : {Kind::routes, Kind::services}) {
        const std::string dir = copy_.key_of(k, "");
        store::RangeRequest nq;
        nq.key = dir;
        nq.range_end = store::prefix_end(dir);
        nq.limit = 1;
        nq.keys_only = true;
        nq.sort_order = store::RangeRequest::SortOrder::descend;
        nq.sort_target = store::RangeRequest::SortTarget::mod_revision;
        store::RangeResult nr;
        store::Status ns = etcd.range(nq, nr);
        if (!ns.ok()) return unavailable(ns);
        if (!nr.kvs.empty()) newest = std::max(newest, nr.kvs.front().mod_revision);
      }
      if (!mirror_.wait_for(newest, 2.0)) {
        return error(503, "this control plane's copy of the config is behind etcd; try again");
      }
      const int64_t seen = copy_.revision();
      std::vector<std::string> users = copy_.referrers(t.kind, t.id);
      if (!users.empty()) {
        std::string names;
        for (const std::string& u : users) names += (names.empty() ? "" : ", ") + u;
        return error(400,
                     "can not delete this " + std::string(ki.noun) + ", " + names + " is still using it now");
      }
      for (Kind k : {Kind::routes, Kind::services}) {
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
    store::TxnResult wr;
    s = etcd.txn(txn, wr);
    if (!s.ok()) {
      if (s.maybe_applied) {
        store::RangeResult again;
        if (etcd.range(q, again).ok() && again.kvs.empty()) s = store::Status{};  // it did land
      }
      if (!s.ok()) return unavailable(s);
    } else if (!wr.succeeded) {
      if (if_match >= 0) return error(412, std::string(ki.noun) + " '" + t.id + "' was changed concurrently");
      continue;  // the resource or a referrer changed: look again
    }
    AdminResponse r{200, "{\"deleted\":" + quote(t.id) + ",\"key\":" + quote(key) + "}", {}};
    add_revision_headers(r, wr.header.revision, 0);
    return r;
  }
  return error(409, std::string(ki.noun) + " '" + t.id + "' keeps changing concurrently; try again");
}

}  // namespace portico::controlplane
