// Private to src/plugins: the factory of each runtime plugin, listed by registry.cc. Each takes the plugin's
// validated configuration (defaults applied) and its effective priority.
#pragma once

#include <memory>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "plugins/plugin.h"

namespace portico::plugins::detail {

using Factory = std::shared_ptr<const Plugin> (*)(const nlohmann::json& conf, int priority,
                                                  const BuildEnv& env, std::string* error);

std::shared_ptr<const Plugin> make_key_auth(const nlohmann::json&, int, const BuildEnv&, std::string*);
std::shared_ptr<const Plugin> make_basic_auth(const nlohmann::json&, int, const BuildEnv&, std::string*);
std::shared_ptr<const Plugin> make_jwt_auth(const nlohmann::json&, int, const BuildEnv&, std::string*);
std::shared_ptr<const Plugin> make_prometheus(const nlohmann::json&, int, const BuildEnv&, std::string*);
std::shared_ptr<const Plugin> make_proxy_rewrite(const nlohmann::json&, int, const BuildEnv&, std::string*);
std::shared_ptr<const Plugin> make_response_rewrite(const nlohmann::json&, int, const BuildEnv&,
                                                    std::string*);
std::shared_ptr<const Plugin> make_redirect(const nlohmann::json&, int, const BuildEnv&, std::string*);
std::shared_ptr<const Plugin> make_request_id(const nlohmann::json&, int, const BuildEnv&, std::string*);

}  // namespace portico::plugins::detail
