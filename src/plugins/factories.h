// Private to src/plugins: the factory of each runtime plugin, listed by registry.cc. Each takes the plugin's
// validated configuration (defaults applied) and its effective priority, and returns the plugin or null with
// `error` set (or throws std::invalid_argument, which create_plugin reports the same way).
//
// Each plugin's file defines its factory as a constinit constant (usable before main), most
// as construct<ItsClass>; the plugin classes themselves stay private to their files.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "plugins/plugin.h"

namespace portico::plugins::detail {

using Factory = std::shared_ptr<const Plugin> (*)(const nlohmann::json& conf, int priority,
                                                  const BuildEnv& env, std::string* error);

// The factory of a plugin whose constructor takes (conf, priority) and throws on what it refuses.
template <class P>
std::shared_ptr<const Plugin> construct(const nlohmann::json& conf, int priority, const BuildEnv&,
                                        std::string*) {
  return std::make_shared<P>(conf, priority);
}

// A factory's refusal: `error` (when asked for) set to `message`, and null.
inline std::shared_ptr<const Plugin> refuse(std::string* error, std::string message) {
  if (error != nullptr) *error = std::move(message);
  return nullptr;
}

extern const Factory make_basic_auth;
extern const Factory make_consumer_restriction;
extern const Factory make_cors;
extern const Factory make_fault_injection;
extern const Factory make_grpc_web;
extern const Factory make_ip_restriction;
extern const Factory make_jwt_auth;
extern const Factory make_key_auth;
extern const Factory make_limit_conn;
extern const Factory make_limit_count;
extern const Factory make_limit_req;
extern const Factory make_mocking;
extern const Factory make_prometheus;
extern const Factory make_proxy_rewrite;
extern const Factory make_redirect;
extern const Factory make_request_id;
extern const Factory make_response_rewrite;
extern const Factory make_traffic_split;

}  // namespace portico::plugins::detail
