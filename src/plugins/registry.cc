// Plugin names to their runtime factories (plugin.h create_plugin).
#include <nlohmann/json.hpp>
#include <string_view>

#include "plugins/factories.h"

namespace portico::plugins {

namespace {

struct Entry {
  std::string_view name;
  const detail::Factory* make;  // the address: a constant expression where the factory's value is not
};

// One plugin a line, sorted by name (clang-format would pack them into columns).
// clang-format off
constexpr Entry kRuntimes[] = {
    {"basic-auth", &detail::make_basic_auth},
    {"consumer-restriction", &detail::make_consumer_restriction},
    {"cors", &detail::make_cors},
    {"fault-injection", &detail::make_fault_injection},
    {"grpc-web", &detail::make_grpc_web},
    {"ip-restriction", &detail::make_ip_restriction},
    {"jwt-auth", &detail::make_jwt_auth},
    {"key-auth", &detail::make_key_auth},
    {"limit-conn", &detail::make_limit_conn},
    {"limit-count", &detail::make_limit_count},
    {"limit-req", &detail::make_limit_req},
    {"mocking", &detail::make_mocking},
    {"prometheus", &detail::make_prometheus},
    {"proxy-rewrite", &detail::make_proxy_rewrite},
    {"redirect", &detail::make_redirect},
    {"request-id", &detail::make_request_id},
    {"response-rewrite", &detail::make_response_rewrite},
    {"traffic-split", &detail::make_traffic_split},
};
// clang-format on

const Entry* find(std::string_view name) {
  for (const Entry& e : kRuntimes) {
    if (e.name == name) return &e;
  }
  return nullptr;
}

}  // namespace

bool has_runtime(std::string_view name) {
  return find(name) != nullptr;
}

std::shared_ptr<const Plugin> create_plugin(std::string_view name, const nlohmann::json& conf, int priority,
                                            const BuildEnv& env, std::string* error) {
  const Entry* e = find(name);
  if (e == nullptr) {
    if (error != nullptr) *error = "plugin '" + std::string(name) + "' has no runtime in this version";
    return nullptr;
  }
  try {
    return (*e->make)(conf, priority, env, error);
  } catch (const std::exception& ex) {  // a configuration the validator should have refused
    if (error != nullptr) *error = "plugin '" + std::string(name) + "': " + ex.what();
    return nullptr;
  }
}

}  // namespace portico::plugins
