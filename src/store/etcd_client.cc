#include "store/etcd_client.h"

#include "store/etcd_json.h"
#include "store/etcd_transport.h"

namespace portico::store {
namespace {

using detail::base64_encode;
using detail::get_i64;
using detail::i64_string;
using detail::Json;

const char* sort_order_name(RangeRequest::SortOrder o) {
  switch (o) {
    case RangeRequest::SortOrder::none:
      return "NONE";
    case RangeRequest::SortOrder::ascend:
      return "ASCEND";
    case RangeRequest::SortOrder::descend:
      return "DESCEND";
  }
  return "NONE";
}

const char* sort_target_name(RangeRequest::SortTarget t) {
  switch (t) {
    case RangeRequest::SortTarget::key:
      return "KEY";
    case RangeRequest::SortTarget::version:
      return "VERSION";
    case RangeRequest::SortTarget::create_revision:
      return "CREATE";
    case RangeRequest::SortTarget::mod_revision:
      return "MOD";
    case RangeRequest::SortTarget::value:
      return "VALUE";
  }
  return "KEY";
}

Json range_json(const RangeRequest& r) {
  Json j = {{"key", base64_encode(r.key)}};
  if (!r.range_end.empty()) j["range_end"] = base64_encode(r.range_end);
  if (r.revision != 0) j["revision"] = i64_string(r.revision);
  if (r.limit != 0) j["limit"] = i64_string(r.limit);
  if (r.keys_only) j["keys_only"] = true;
  if (r.count_only) j["count_only"] = true;
  if (r.serializable) j["serializable"] = true;
  if (r.sort_order != RangeRequest::SortOrder::none) {
    j["sort_order"] = sort_order_name(r.sort_order);
    j["sort_target"] = sort_target_name(r.sort_target);
  }
  return j;
}

Json compare_json(const Compare& c) {
  Json j = {{"key", base64_encode(c.key)}};
  if (!c.range_end.empty()) j["range_end"] = base64_encode(c.range_end);
  switch (c.result) {
    case Compare::Result::equal:
      j["result"] = "EQUAL";
      break;
    case Compare::Result::greater:
      j["result"] = "GREATER";
      break;
    case Compare::Result::less:
      j["result"] = "LESS";
      break;
    case Compare::Result::not_equal:
      j["result"] = "NOT_EQUAL";
      break;
  }
  switch (c.target) {
    case Compare::Target::version:
      j["target"] = "VERSION";
      j["version"] = i64_string(c.number);
      break;
    case Compare::Target::create_revision:
      j["target"] = "CREATE";
      j["create_revision"] = i64_string(c.number);
      break;
    case Compare::Target::mod_revision:
      j["target"] = "MOD";
      j["mod_revision"] = i64_string(c.number);
      break;
    case Compare::Target::value:
      j["target"] = "VALUE";
      j["value"] = base64_encode(c.value);
      break;
  }
  return j;
}

Json op_json(const Op& op) {
  Json j = {{"key", base64_encode(op.key)}};
  if (!op.range_end.empty()) j["range_end"] = base64_encode(op.range_end);
  switch (op.type) {
    case Op::Type::range:
      return {{"request_range", std::move(j)}};
    case Op::Type::put:
      j["value"] = base64_encode(op.value);
      if (op.lease != 0) j["lease"] = i64_string(op.lease);
      if (op.prev_kv) j["prev_kv"] = true;
      return {{"request_put", std::move(j)}};
    case Op::Type::delete_range:
      if (op.prev_kv) j["prev_kv"] = true;
      return {{"request_delete_range", std::move(j)}};
  }
  return j;
}

Status parse_error(const std::string& what) {
  return {Code::internal, "unexpected answer from etcd: " + what};
}

Status parse_range(const Json& j, RangeResult& out) {
  out.header = detail::parse_header(j);
  out.more = detail::get_bool(j, "more");
  out.count = get_i64(j, "count");
  out.kvs.clear();
  auto it = j.find("kvs");
  if (it != j.end() && !detail::parse_kvs(*it, out.kvs)) return parse_error("bad kvs");
  return {};
}

Status parse_op_result(const Json& j, OpResult& out) {
  out = {};
  if (auto it = j.find("response_range"); it != j.end()) {
    auto kvs = it->find("kvs");
    if (kvs != it->end() && !detail::parse_kvs(*kvs, out.kvs)) return parse_error("bad kvs");
  } else if (auto it = j.find("response_put"); it != j.end()) {
    auto prev = it->find("prev_kv");
    if (prev != it->end()) {
      out.kvs.emplace_back();
      if (!detail::parse_kv(*prev, out.kvs.back())) return parse_error("bad prev_kv");
    }
  } else if (auto it = j.find("response_delete_range"); it != j.end()) {
    out.deleted = get_i64(*it, "deleted");
    auto prev = it->find("prev_kvs");
    if (prev != it->end() && !detail::parse_kvs(*prev, out.kvs)) return parse_error("bad prev_kvs");
  } else {
    return parse_error("unknown txn response");
  }
  return {};
}

}  // namespace

std::string prefix_end(std::string_view prefix) {
  std::string end(prefix);
  while (!end.empty()) {
    auto& last = reinterpret_cast<unsigned char&>(end.back());
    if (last < 0xff) {
      ++last;
      return end;
    }
    end.pop_back();
  }
  // Every byte was 0xff (or no prefix): "\0" is etcd's "to the end of the key space".
  return std::string(1, '\0');
}

EtcdClient::EtcdClient(EtcdOptions options)
    : options_(std::move(options)), impl_(std::make_unique<Impl>(options_)) {}

EtcdClient::~EtcdClient() = default;

Status EtcdClient::range(const RangeRequest& request, RangeResult& out) {
  Json j;
  Status s =
      impl_->transport.call("/v3/kv/range", range_json(request).dump(), false, j, nullptr, request.cancel);
  if (!s.ok()) return s;
  return parse_range(j, out);
}

Status EtcdClient::txn(const Txn& txn, TxnResult& out) {
  Json body = Json::object();
  Json& compare = body["compare"] = Json::array();
  for (const Compare& c : txn.compare) compare.push_back(compare_json(c));
  Json& success = body["success"] = Json::array();
  for (const Op& op : txn.success) success.push_back(op_json(op));
  Json& failure = body["failure"] = Json::array();
  for (const Op& op : txn.failure) failure.push_back(op_json(op));
  bool read_only = true;
  for (const auto* ops : {&txn.success, &txn.failure}) {
    for (const Op& op : *ops) read_only = read_only && op.type == Op::Type::range;
  }

  Json j;
  out = {};
  Status s = impl_->transport.call("/v3/kv/txn", body.dump(), !read_only, j, &out.ambiguous_retry);
  if (!s.ok()) return s;
  out.header = detail::parse_header(j);
  out.succeeded = detail::get_bool(j, "succeeded");
  auto it = j.find("responses");
  if (it != j.end() && it->is_array()) {
    out.responses.resize(it->size());
    for (size_t i = 0; i < it->size(); ++i) {
      Status ps = parse_op_result((*it)[i], out.responses[i]);
      if (!ps.ok()) return ps;
    }
  }
  return {};
}

Status EtcdClient::put(std::string_view key, std::string_view value, ResponseHeader* header) {
  Json body = {{"key", base64_encode(key)}, {"value", base64_encode(value)}};
  Json j;
  Status s = impl_->transport.call("/v3/kv/put", body.dump(), true, j);
  if (s.ok() && header != nullptr) *header = detail::parse_header(j);
  return s;
}

Status EtcdClient::delete_key(std::string_view key, ResponseHeader* header) {
  Json body = {{"key", base64_encode(key)}};
  Json j;
  Status s = impl_->transport.call("/v3/kv/deleterange", body.dump(), true, j);
  if (s.ok() && header != nullptr) *header = detail::parse_header(j);
  return s;
}

Status EtcdClient::current(std::string_view key, ResponseHeader& out) {
  RangeRequest r;
  r.key = std::string(key);
  r.count_only = true;
  RangeResult result;
  Status s = range(r, result);
  if (s.ok()) out = result.header;
  return s;
}

Status EtcdClient::compact(int64_t revision) {
  Json body = {{"revision", i64_string(revision)}};
  Json j;
  Status s = impl_->transport.call("/v3/kv/compaction", body.dump(), true, j);
  // Already compacted at or past `revision` (perhaps by an earlier attempt of this very call): done.
  if (s.code == Code::compacted) return {};
  return s;
}

Status EtcdClient::lease_grant(int64_t ttl_seconds, int64_t& lease_id) {
  Json body = {{"TTL", i64_string(ttl_seconds)}};
  Json j;
  Status s = impl_->transport.call("/v3/lease/grant", body.dump(), true, j);
  if (!s.ok()) return s;
  std::string error = detail::get_string(j, "error");
  if (!error.empty()) return {Code::invalid, error};
  lease_id = get_i64(j, "ID");
  if (lease_id == 0) return parse_error("lease grant without ID");
  return {};
}

Status EtcdClient::lease_keepalive(int64_t lease_id, int64_t& ttl_left) {
  Json body = {{"ID", i64_string(lease_id)}};
  Json j;
  Status s = impl_->transport.call("/v3/lease/keepalive", body.dump(), false, j);
  if (s.ok()) ttl_left = get_i64(j, "TTL");  // absent (0) when the lease no longer exists
  return s;
}

Status EtcdClient::lease_revoke(int64_t lease_id) {
  Json body = {{"ID", i64_string(lease_id)}};
  Json j;
  Status s = impl_->transport.call("/v3/lease/revoke", body.dump(), true, j);
  if (s.code == Code::invalid && s.message.find("lease not found") != std::string::npos) return {};
  return s;
}

Status EtcdClient::member_status(const std::string& endpoint, MemberStatus& out) {
  Json j;
  Status s = impl_->transport.call_once(endpoint, "/v3/maintenance/status", "{}", j);
  if (!s.ok()) return s;
  out.header = detail::parse_header(j);
  out.version = detail::get_string(j, "version");
  out.leader = detail::get_u64(j, "leader");
  out.raft_term = get_i64(j, "raftTerm");
  out.raft_index = get_i64(j, "raftIndex");
  out.db_size = get_i64(j, "dbSize");
  return {};
}

std::string EtcdClient::current_endpoint() const {
  return impl_->transport.current();
}

}  // namespace portico::store
