// limit-count groups (limit_groups.h).
#include "config/limit_groups.h"

#include <openssl/sha.h>

#include <nlohmann/json.hpp>
#include <string_view>

namespace portico::config {

namespace {

// The properties of APISIX's limit-count schema (its `rules` is not supported here, and absent), plus
// Portico's window_type, which changes what a counter counts.
constexpr std::string_view kCommonFields[] = {"count",
                                              "time_window",
                                              "rules",
                                              "group",
                                              "key",
                                              "key_type",
                                              "rejected_code",
                                              "rejected_msg",
                                              "policy",
                                              "allow_degradation",
                                              "show_limit_quota_header",
                                              "window_type"};
// apisix/utils/redis-schema.lua: each policy's properties.
constexpr std::string_view kRedisFields[] = {"redis_host",     "redis_port",       "redis_username",
                                             "redis_password", "redis_database",   "redis_timeout",
                                             "redis_ssl",      "redis_ssl_verify", "sync_interval"};
constexpr std::string_view kClusterFields[] = {
    "redis_cluster_nodes", "redis_password",           "redis_timeout", "redis_cluster_name",
    "redis_cluster_ssl",   "redis_cluster_ssl_verify", "sync_interval"};

std::string sha256_hex(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(2 * sizeof digest);
  for (unsigned char c : digest) {
    out += kHex[c >> 4];
    out += kHex[c & 15];
  }
  return out;
}

}  // namespace

std::string limit_group_view(const nlohmann::json& conf) {
  if (!conf.is_object()) return {};
  auto group = conf.find("group");
  if (group == conf.end() || !group->is_string()) return {};
  // APISIX compares field by field, an absent field equal only to an absent one: null stands for absent.
  nlohmann::json view = nlohmann::json::object();
  auto take = [&](std::string_view name) {
    auto it = conf.find(std::string(name));
    view[std::string(name)] = it == conf.end() ? nlohmann::json() : *it;
  };
  for (std::string_view f : kCommonFields) take(f);
  const std::string policy = conf.value("policy", std::string("local"));
  if (policy == "redis") {
    for (std::string_view f : kRedisFields) take(f);
  } else if (policy == "redis-cluster") {
    for (std::string_view f : kClusterFields) take(f);
  }
  return view.dump();
}

std::vector<LimitGroup> limit_groups(const PluginMap& plugins) {
  std::vector<LimitGroup> out;
  for (const PluginSpec& p : plugins) {
    if (p.name != "limit-count" || !p.conf) continue;
    std::string view = limit_group_view(*p.conf);
    if (view.empty()) continue;
    out.push_back(LimitGroup{p.conf->at("group").get<std::string>(), sha256_hex(view)});
  }
  return out;
}

}  // namespace portico::config
