// jwt-auth: placeholder until the JWT verifier lands; the catalog does not offer jwt-auth yet.
#include <nlohmann/json.hpp>

#include "plugins/consumers.h"

namespace portico::plugins {

std::shared_ptr<const jwt::Verifier> make_jwt_verifier(const nlohmann::json&, std::string* error) {
  if (error != nullptr) *error = "jwt-auth is not available in this build";
  return nullptr;
}

}  // namespace portico::plugins
