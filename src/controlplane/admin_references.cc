// AdminService (admin_service.h): what a write must prove about the other resources before it commits, as
// checks now and compares in its etcd transaction (so they keep holding until it commits): the ids it names
// exist (upstream, service, plugin config; traffic-split's upstreams; an upstream's tls.client_cert_id, of
// type client), no limit-count group gets a second configuration, an ssl named as a client certificate stays
// one, and a service keeps the upstream its routes rely on.
#include <nlohmann/json.hpp>
#include <optional>
#include <span>

#include "config/validate.h"
#include "controlplane/admin_service.h"
#include "controlplane/admin_values.h"

namespace portico::controlplane {

using admin::AdminResponse;
using admin::error_response;
using nlohmann::json;
using namespace detail;

namespace {

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

std::optional<AdminResponse> AdminService::check_references(const Target& t, const json& value,
                                                            const std::vector<config::LimitGroup>& groups,
                                                            store::Txn& txn, WriteChecks& checks) {
  store::EtcdClient& etcd = client();
  // A limit-count group must keep one configuration (APISIX's check, at write time over every resource
  // rather than per process): the copy is scanned at revision `seen`, and the transaction proves that no
  // resource that may hold a group changed after it.
  if (!groups.empty()) {
    checks.groups_seen = copy_.revision();
    for (const config::LimitGroup& g : groups) {
      if (copy_.limit_group_mismatch(g, t.kind, t.id)) {
        return error_response(400, "failed to check the configuration of plugin limit-count err: " +
                                       std::string(config::kGroupConfMismatched));
      }
    }
  }
  // Reads the object `field` names into `qr`; the answer to give instead when the read fails or it is absent.
  auto read_existing = [&](Kind kind, const std::string& ref_id, const std::string& ref_key, std::string_view field,
                           store::RangeResult& qr) -> std::optional<AdminResponse> {
    store::RangeRequest q;
    q.key = ref_key;
    store::Status qs = etcd.range(q, qr);
    if (!qs.ok()) return store_failure(qs);
    if (!qr.kvs.empty()) return std::nullopt;
    config::Errors e;
    e.add(std::string(field), std::string(info(kind).noun) + " \"" + ref_id + "\" does not exist");
    return invalid(e);
  };
  for (const Reference& ref : references_of(t.kind)) {
    auto it = value.find(ref.field);
    if (it == value.end()) continue;
    const std::string ref_id = reference_id(*it);
    const std::string ref_key = copy_.key_of(ref.kind, ref_id);
    store::RangeResult qr;
    if (auto answer = read_existing(ref.kind, ref_id, ref_key, ref.field, qr)) return answer;
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
  // The upstreams its traffic-split names must exist too, until the write commits.
  if (t.kind == Kind::routes || t.kind == Kind::services || t.kind == Kind::plugin_configs) {
    for (const auto& [ref_id, field] : plugin_upstream_refs(value)) {
      const std::string ref_key = copy_.key_of(Kind::upstreams, ref_id);
      store::RangeResult qr;
      if (auto answer = read_existing(Kind::upstreams, ref_id, ref_key, field, qr)) return answer;
      txn.compare.push_back(store::Compare{
          ref_key, {}, store::Compare::Target::create_revision, store::Compare::Result::greater, 0, {}});
    }
  }
  // The ssl an upstream's tls.client_cert_id names must exist and be of type client (APISIX's check and
  // message), and stay so until the write commits: its version is compared, as a type can change.
  if (auto ref = client_cert_ref(t.kind, value)) {
    const auto& [ref_id, field] = *ref;
    const std::string ref_key = copy_.key_of(Kind::ssls, ref_id);
    store::RangeRequest q;
    q.key = ref_key;
    store::RangeResult qr;
    store::Status qs = etcd.range(q, qr);
    if (!qs.ok()) return store_failure(qs);
    std::optional<json> ssl = qr.kvs.empty() ? std::nullopt : parse_stored(qr.kvs.front().value);
    if (qr.kvs.empty() || !ssl || !ssl->is_object() || !is_client_ssl(*ssl)) {
      const std::string message = "failed to fetch ssl info by ssl id [" + ref_id + "], " +
                                  (qr.kvs.empty() ? "response code: 404" : "wrong ssl type");
      json answer = {{"error_msg", message}, {"errors", {{{"path", field}, {"reason", message}}}}};
      return AdminResponse{400, answer.dump(), {}};
    }
    txn.compare.push_back(store::Compare{ref_key,
                                         {},
                                         store::Compare::Target::mod_revision,
                                         store::Compare::Result::equal,
                                         qr.kvs.front().mod_revision,
                                         {}});
  }
  // An ssl named by a tls.client_cert_id must stay of type client: the scan runs over the copy at `seen`,
  // and the transaction proves that no upstream, service or route changed after it.
  if (t.kind == Kind::ssls && !is_client_ssl(value)) {
    checks.ssl_users_scanned = true;
    const int64_t seen = copy_.revision();
    std::vector<std::pair<Kind, std::string>> users = copy_.referrers(Kind::ssls, t.id);
    if (!users.empty()) {
      config::Errors e;
      e.add("type", "must stay \"client\": " + std::string(info(users.front().first).noun) + " [" +
                        users.front().second + "] uses this ssl as tls.client_cert_id");
      return invalid(e);
    }
    for (Kind k : {Kind::upstreams, Kind::services, Kind::routes}) {
      const std::string dir = copy_.key_of(k, "");
      txn.compare.push_back(store::Compare{dir,
                                           store::prefix_end(dir),
                                           store::Compare::Target::mod_revision,
                                           store::Compare::Result::less,
                                           seen + 1,
                                           {}});
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
  if (checks.groups_seen >= 0) {
    for (Kind k : kLimitGroupKinds) {
      const std::string dir = copy_.key_of(k, "");
      txn.compare.push_back(store::Compare{dir,
                                           store::prefix_end(dir),
                                           store::Compare::Target::mod_revision,
                                           store::Compare::Result::less,
                                           checks.groups_seen + 1,
                                           {}});
    }
  }
  return std::nullopt;
}

}  // namespace portico::controlplane
