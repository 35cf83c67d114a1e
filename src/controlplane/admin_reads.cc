// AdminService's reads (admin_service.h): etcd first, linearizable; the in-memory copy when etcd cannot
// answer (marked X-Portico-Stale), or for a list when one cheap etcd read proves the copy current.
#include <nlohmann/json.hpp>

#include "controlplane/admin_service.h"
#include "controlplane/admin_values.h"

namespace portico::controlplane {

using admin::AdminResponse;
using admin::error_response;
using namespace detail;

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
      return error_response(
          400, std::string(name) + " must be an integer from 1" + (slot == &page_size ? " to 500" : ""));
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

}  // namespace portico::controlplane
