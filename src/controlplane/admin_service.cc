#include "controlplane/admin_service.h"

#include <openssl/rand.h>

#include <algorithm>
#include <chrono>
#include <nlohmann/json.hpp>
#include <optional>

#include "base/log.h"
#include "config/json_input.h"
#include "config/plugin_secrets.h"
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

// An etcd failure as an answer. Only Code::unavailable means "no quorum"; a request etcd refused (too large,
// invalid) is the client's to fix, and an unknown outcome must not be reported as "nothing was written".
AdminResponse store_failure(const store::Status& s) {
  switch (s.code) {
    case store::Code::invalid:
      return error(s.message.find("too large") != std::string::npos ? 413 : 400,
                   "etcd refused the request: " + s.message);
    case store::Code::unavailable:
      if (s.maybe_applied) {
        return error(503, "etcd did not confirm the write in time (" + s.message +
                              "): it may still be applied; read the resource before retrying");
      }
      return error(503, "etcd unavailable (" + s.message +
                            "): nothing was written; writes are refused until etcd has a quorum again");
    default:
      return error(500, "etcd answered unexpectedly: " + s.message);
  }
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
  return parse_decimal(text, out);
}

json errors_json(const config::Errors& errors) {
  json list = json::array();
  for (const config::FieldError& e : errors.list()) list.push_back({{"path", e.path}, {"reason", e.reason}});
  return list;
}

AdminResponse invalid(const config::Errors& errors, std::string_view what = "invalid configuration: ") {
  std::string summary;
  for (const config::FieldError& e : errors.list()) {
    if (!summary.empty()) summary += "; ";
    summary += e.path.empty() ? e.reason : e.path + ": " + e.reason;
  }
  if (errors.truncated()) summary += "; ...";
  json body = {{"error_msg", std::string(what) + summary}, {"errors", errors_json(errors)}};
  return AdminResponse{400, body.dump(), {}};
}

// A value read from etcd, through the strict reader: a value written by hand may be anything, and a tree too
// deep to copy or dump safely is never built. Null when it is not acceptable JSON.
std::optional<json> parse_stored(const std::string& text) {
  config::Errors ignored(1);
  return config::parse_json(text, ignored);
}

// The value as shown to clients: an SSL's private keys never leave the control plane, and a consumer's or a
// credential's secrets are shown as tokens only. A credential shows its own id, as APISIX stores it (the copy
// holds the full one, "<username>/credentials/<id>", which is the key's tail).
std::string presentable(Kind kind, const std::string& key, const std::string& raw) {
  std::optional<json> parsed = parse_stored(raw);
  if (!parsed) return quote(raw);  // written into etcd by hand; shown as a string
  json& v = *parsed;
  if (!v.is_object()) return v.dump();
  if (kind == Kind::ssls) {
    v.erase("key");
    v.erase("keys");
  }
  if (kind == Kind::consumers || kind == Kind::credentials) {
    if (auto plugins = v.find("plugins"); plugins != v.end()) config::conceal_secret_fields(*plugins);
  }
  if (kind == Kind::credentials) v["id"] = key.substr(key.rfind('/') + 1);
  return v.dump();
}

std::string item_json(Kind kind, const std::string& key, const std::string& value, int64_t created,
                      int64_t modified) {
  return "{\"key\":" + quote(key) + ",\"value\":" + presentable(kind, key, value) +
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
  std::string id;        // empty: the collection; a credential's own id ("key-1")
  std::string sub_path;  // PATCH only: "/upstream/nodes"
  std::string owner;     // credentials: the consumer's username

  // The id in the copy: a credential's full id "<owner>/credentials/<id>".
  std::string copy_id() const {
    return kind == Kind::credentials ? owner + std::string(config::kCredentialsInfix) + id : id;
  }
};

AdminService::AdminService(store::EtcdClient& etcd, store::EtcdClient& fast_etcd, store::Mirror& mirror,
                           ResourceStore& copy)
    : etcd_(etcd), fast_etcd_(fast_etcd), mirror_(mirror), copy_(copy) {}

store::EtcdClient& AdminService::client() {
  return copy_.stale() ? fast_etcd_ : etcd_;
}

AdminResponse AdminService::handle(const AdminRequest& req) {
  if (stopping_) return error(503, "this control plane is shutting down");
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
      return error(
          400, "invalid " + std::string(info(t.kind).noun) + " id '" + t.id + "': " + std::string(kIdRule));
    }
    // APISIX 3.x credentials: /consumers/<username>/credentials[/<id>]
    std::string_view sub = t.sub_path;
    if (t.kind == Kind::consumers && (sub == "/credentials" || sub.starts_with("/credentials/"))) {
      sub.remove_prefix(std::string_view("/credentials").size());
      if (sub.starts_with('/')) sub.remove_prefix(1);
      if (sub.find('/') != std::string_view::npos) return error(404, "unknown credential path");
      t.kind = Kind::credentials;
      t.owner = std::move(t.id);
      t.id = std::string(sub);
      t.sub_path.clear();
      if (!t.id.empty() && !valid_id(t.id)) {
        return error(400, "invalid credential id '" + t.id + "': " + std::string(kIdRule));
      }
      return handle_credential(t, req);
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

// APISIX answers POST and PATCH on credentials with 405 (its credential resource does not support them).
AdminResponse AdminService::handle_credential(const Target& t, const AdminRequest& req) {
  const bool collection = t.id.empty();
  auto refuse = [&](std::string_view message) {
    AdminResponse r = error(405, message);
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

AdminResponse AdminService::get_one(const Target& t) {
  const std::string key = copy_.key_of(t.kind, t.copy_id());
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
  // etcd cannot answer: the copy is the best there is, and says so (if it was ever loaded).
  if (!copy_.loaded()) return store_failure(s);
  std::optional<Entry> e = copy_.get(t.kind, t.copy_id());
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
    if (slot && (!parse_decimal(value, *slot) || *slot < 1 || *slot > 1000000 ||
                 (slot == &page_size && *slot > 500))) {
      return error(400,
                   std::string(name) + " must be an integer from 1" + (slot == &page_size ? " to 500" : ""));
    }
    if (amp == std::string::npos) break;
    pos = amp + 1;
  }
  // A consumer's credentials are keys below its own (APISIX), so the consumers' directory holds credential
  // keys too, which a list of consumers leaves out.
  const std::string id_prefix =
      t.kind == Kind::credentials ? t.owner + std::string(config::kCredentialsInfix) : std::string();
  const std::string dir = copy_.key_of(t.kind, id_prefix);
  auto nested = [&](std::string_view key) {
    return t.kind == Kind::consumers && key.substr(dir.size()).find('/') != std::string_view::npos;
  };
  struct Row {
    std::string key, value;
    int64_t created, modified;
  };
  size_t begin = 0, count = SIZE_MAX;
  if (page_size > 0 || page > 0) {
    if (page_size == 0) page_size = 10;
    if (page == 0) page = 1;
    begin = static_cast<size_t>((page - 1) * page_size);
    count = static_cast<size_t>(page_size);
  }
  std::vector<Row> rows;  // the page
  size_t total = 0;
  int64_t revision = 0;
  bool stale = false;
  auto from_copy = [&] {
    for (Entry& e : copy_.page(t.kind, begin, count, total, id_prefix)) {
      rows.push_back(Row{copy_.key_of(t.kind, e.id), std::move(e.value), e.create_revision, e.mod_revision});
    }
  };
  store::Status s;
  if (t.kind == Kind::credentials) {
    // The credentials of a consumer that does not exist: APISIX answers 404.
    store::RangeRequest owner;
    owner.key = copy_.key_of(Kind::consumers, t.owner);
    owner.count_only = true;
    store::RangeResult found;
    s = client().range(owner, found);
    if (s.ok() && found.count == 0) return not_found();
  }
  // One cheap linearizable read (the newest key of the kind by mod_revision, keys only, and the count) tells
  // whether the copy holds what etcd holds now: once the copy has applied that mod_revision and counts as
  // many keys, no put can be missing (it would be newer) and no delete either (the counts would differ). The
  // copy then answers (a page of 100k routes without reading 100k values from etcd). Keys the copy left out
  // (invalid values written by hand) are listed by etcd only, so then etcd answers.
  store::RangeRequest rq;
  rq.key = dir;
  rq.range_end = store::prefix_end(dir);
  rq.keys_only = true;
  rq.limit = 1;
  rq.sort_order = store::RangeRequest::SortOrder::descend;
  rq.sort_target = store::RangeRequest::SortTarget::mod_revision;
  store::RangeResult rr;
  // A consumer's few credentials are read from etcd; only the kinds that may be large are worth the check.
  if (s.ok() && t.kind != Kind::credentials) s = client().range(rq, rr);
  const int64_t newest = rr.kvs.empty() ? 0 : rr.kvs.front().mod_revision;
  const size_t in_copy =
      copy_.count(t.kind) + (t.kind == Kind::consumers ? copy_.count(Kind::credentials) : 0);
  if (s.ok() && t.kind != Kind::credentials && !copy_.stale() && !copy_.has_rejected(t.kind) &&
      copy_.wait_for_revision(newest, 0.5) && static_cast<int64_t>(in_copy) == rr.count) {
    revision = rr.header.revision;
    from_copy();
  } else if (s.ok()) {
    rq = store::RangeRequest{};
    rq.key = dir;
    rq.range_end = store::prefix_end(dir);
    s = client().range(rq, rr);
    if (s.ok()) {
      revision = rr.header.revision;
      total = 0;
      rows.clear();
      for (store::KeyValue& kv : rr.kvs) {
        if (nested(kv.key)) continue;
        if (total++ >= begin && rows.size() < count) {
          rows.push_back(Row{std::move(kv.key), std::move(kv.value), kv.create_revision, kv.mod_revision});
        }
      }
    }
  }
  if (!s.ok()) {
    if (!copy_.loaded()) return store_failure(s);
    stale = true;
    revision = copy_.revision();
    from_copy();
  }
  std::string body = "{\"total\":" + std::to_string(total) + ",\"list\":[";
  for (size_t i = 0; i < rows.size(); ++i) {
    if (i != 0) body += ',';
    body += item_json(t.kind, rows[i].key, rows[i].value, rows[i].created, rows[i].modified);
  }
  body += "]}";
  AdminResponse r{200, std::move(body), {}};
  add_revision_headers(r, revision, 0);
  if (stale) r.headers.emplace_back("X-Portico-Stale", "true");
  return r;
}

AdminResponse AdminService::write(const Target& target, const AdminRequest& req) {
  if (stopping_) return error(503, "this control plane is shutting down");
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
    return error(400, "the PATCH sub-path is deeper than a resource may nest (" +
                          std::to_string(config::kMaxNesting) + " levels)");
  }
  if (!patch && !body.is_object()) return error(400, "the request body must be a JSON object");

  Target t = target;
  bool create_only = req.if_none_match == "*";
  if (!req.if_none_match.empty() && !create_only) return error(400, "If-None-Match supports only '*'");
  if (req.method == "POST") {
    if (body.contains(id_field)) {
      return error(400, "POST makes the " + id_field + " itself; PUT to /apisix/admin/" +
                            std::string(ki.name) + "/<" + id_field + "> to choose it");
    }
    t.id = generate_id();
    create_only = true;  // a generated id never replaces anything, even on a collision or a retry
  } else if (!patch) {
    auto it = body.find(id_field);
    if (it != body.end()) {
      std::string body_id = reference_id(*it);
      if (body_id.empty()) return error(400, id_field + ": must be a string");
      if (t.id.empty()) {
        t.id = body_id;
      } else if (body_id != t.id) {
        return error(400, "wrong " + std::string(ki.noun) + " " + id_field + ": the URL says '" + t.id +
                              "' and the body says '" + body_id + "'");
      }
    }
    if (t.id.empty()) {
      return error(400, "missing " + std::string(ki.noun) + " " + id_field + " (in the URL or the body)");
    }
    if (!valid_id(t.id)) {
      return error(400, id_field + ": " + std::string(kIdRule));
    }
  }
  int64_t if_match = -1;
  if (!req.if_match.empty() && !parse_revision_tag(req.if_match, if_match)) {
    return error(400, "If-Match must be a modifiedIndex (a number, optionally quoted)");
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
      if (qr.count == 0) return error(404, "consumer not found");
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
      return error(412, exists ? "modifiedIndex is " + std::to_string(observed) + ", If-Match asked for " +
                                     std::to_string(if_match)
                               : std::string(ki.noun) + " does not exist; If-Match asked for modifiedIndex " +
                                     std::to_string(if_match));
    }
    if (create_only && exists) {
      return error(412, std::string(ki.noun) + " '" + t.id + "' already exists (If-None-Match: *)");
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
        return error(409, "the stored value of " + std::string(ki.noun) + " '" + t.id +
                              "' is not a readable JSON object; replace it whole with PUT");
      }
      value = current;
      std::string why;
      if (!apply_patch(value, t.sub_path, body, why)) return error(400, why);
      if (!value.is_object()) return error(400, "the patched value must stay a JSON object");
      // A body under a sub-path adds the sub-path's depth to its own.
      if (config::nested_deeper_than(value, config::kMaxNesting)) {
        return error(400, "the patched value would nest deeper than " + std::to_string(config::kMaxNesting) +
                              " levels (" + t.sub_path + " plus the body's own nesting)");
      }
      if (auto it = value.find(id_field); it != value.end() && reference_id(*it) != t.id) {
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
    // 2. Secrets are encrypted before they go anywhere (docs/secrets.md); a token sent back is kept only if
    // this keyring reads it.
    if (t.kind == Kind::consumers || t.kind == Kind::credentials) {
      if (auto plugins = value.find("plugins"); plugins != value.end()) {
        std::string field, why;
        if (!config::encrypt_secret_fields(*plugins, field, why)) {
          config::Errors e;
          e.add("plugins." + field, why);
          return invalid(e);
        }
      }
    }
    // 3. Validate with the data plane's validator (which decrypts the secrets), a credential under the full
    // id data planes know it by.
    config::Errors errors;
    if (t.kind == Kind::credentials) {
      json checked = value;
      checked["id"] = t.copy_id();
      if (!validate_value(t.kind, checked, errors)) return invalid(errors);
    } else if (!validate_value(t.kind, value, errors)) {
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
    for (const Reference& ref : references_of(t.kind)) {
      auto it = value.find(ref.field);
      if (it == value.end()) continue;
      const std::string ref_id = reference_id(*it);
      const std::string ref_key = copy_.key_of(ref.kind, ref_id);
      store::RangeRequest q;
      q.key = ref_key;
      store::RangeResult qr;
      store::Status qs = etcd.range(q, qr);
      if (!qs.ok()) return store_failure(qs);
      if (qr.kvs.empty()) {
        config::Errors e;
        e.add(ref.field, std::string(info(ref.kind).noun) + " \"" + ref_id + "\" does not exist");
        return invalid(e);
      }
      // A route without an upstream of its own needs its service's: the service must keep it until the route
      // commits, so the compare pins the service's version, not just its existence.
      const bool needs_service_upstream = t.kind == Kind::routes && ref.kind == Kind::services &&
                                          !value.contains("upstream") && !value.contains("upstream_id");
      if (needs_service_upstream) {
        std::optional<json> service = parse_stored(qr.kvs.front().value);
        if (!service || !service->is_object() || !sets_upstream(*service)) {
          config::Errors e;
          e.add("service_id", "service \"" + ref_id +
                                  "\" has no upstream and the route sets none (set upstream or upstream_id)");
          return invalid(e);
        }
        txn.compare.push_back(store::Compare{ref_key,
                                             {},
                                             store::Compare::Target::mod_revision,
                                             store::Compare::Result::equal,
                                             qr.kvs.front().mod_revision,
                                             {}});
      } else {
        txn.compare.push_back(store::Compare{
            ref_key, {}, store::Compare::Target::create_revision, store::Compare::Result::greater, 0, {}});
      }
    }
    // A service losing its upstream must not strand routes that rely on it.
    if (t.kind == Kind::services && !value.contains("upstream") && !value.contains("upstream_id")) {
      std::vector<std::string> routes = copy_.routes_relying_on(t.id);
      if (!routes.empty()) {
        std::string names;
        for (const std::string& r : routes) names += (names.empty() ? "route [" : ", route [") + r + "]";
        config::Errors e;
        e.add("upstream", "required: " + names + " uses this service's upstream and sets none of its own");
        return invalid(e);
      }
    }
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
      return error(412, std::string(ki.noun) + " '" + t.id + "' was changed concurrently; read it again");
    }
  }
  return error(409, std::string(ki.noun) + " '" + t.id + "' keeps changing concurrently; try again");
}

AdminResponse AdminService::remove(const Target& t, const AdminRequest& req) {
  if (stopping_) return error(503, "this control plane is shutting down");
  const KindInfo& ki = info(t.kind);
  int64_t if_match = -1;
  if (!req.if_match.empty() && !parse_revision_tag(req.if_match, if_match)) {
    return error(400, "If-Match must be a modifiedIndex (a number, optionally quoted)");
  }
  const std::string key = copy_.key_of(t.kind, t.copy_id());
  store::EtcdClient& etcd = client();
  auto deleted = [&](int64_t revision) {
    if (revision > 0) mirror_.wait_for(revision, 2.0);
    AdminResponse r{200, "{\"deleted\":" + quote(t.id) + ",\"key\":" + quote(key) + "}", {}};
    add_revision_headers(r, revision, 0);
    return r;
  };
  const bool referable =
      t.kind == Kind::upstreams || t.kind == Kind::services || t.kind == Kind::plugin_configs;
  for (int attempt = 0; attempt < kMaxAttempts; ++attempt) {
    store::RangeRequest q;
    q.key = key;
    store::RangeResult rr;
    store::Status s = etcd.range(q, rr);
    if (!s.ok()) return store_failure(s);
    if (rr.kvs.empty()) return not_found();
    const int64_t observed = rr.kvs.front().mod_revision;
    if (if_match >= 0 && observed != if_match) {
      return error(412, "modifiedIndex is " + std::to_string(observed) + ", If-Match asked for " +
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
          if (!v.is_object() || !v.contains(field) || reference_id(v[field]) != t.id) {
            confirmed = false;
            mirror_.wait_for(ur.kvs.empty() ? seen + 1 : ur.kvs.front().mod_revision, 1.0);
            break;
          }
          names += (names.empty() ? "" : ", ") + std::string(info(kind).noun) + " [" + id + "]";
        }
        if (confirmed) {
          return error(
              400, "can not delete this " + std::string(ki.noun) + ", " + names + " is still using it now");
        }
        continue;
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
      return error(412, std::string(ki.noun) + " '" + t.id + "' was changed concurrently");
    }
    mirror_.wait_for(wr.header.revision, 1.0);
  }
  return error(409, std::string(ki.noun) + " '" + t.id + "' keeps changing concurrently; try again");
}

void AdminService::stop() {
  stopping_ = true;
}

}  // namespace portico::controlplane
