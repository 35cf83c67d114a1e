// Secret fields on the Admin API's side (plugin_secrets.h).
#include "config/plugin_secrets.h"

#include <nlohmann/json.hpp>

#include "config/plugin_catalog.h"
#include "config/secret_box.h"
#include "config/secrets.h"

namespace portico::config {

namespace {

// Calls `visit(value, path)` for every string secret field in `plugins`; stops at the first false.
template <typename Visit>
bool each_secret(nlohmann::json& plugins, bool consumer_resource, Visit&& visit) {
  if (!plugins.is_object()) return true;
  for (auto it = plugins.begin(); it != plugins.end(); ++it) {
    const PluginDef* def = find_plugin(it.key());
    if (def == nullptr || !has_secrets(*def, consumer_resource) || !it.value().is_object()) continue;
    for (std::string_view name : def->encrypt_fields) {
      auto field = it.value().find(std::string(name));
      if (field == it.value().end() || !field->is_string()) continue;
      if (!visit(*field, it.key() + "." + std::string(name))) return false;
    }
  }
  return true;
}

}  // namespace

bool encrypt_secret_fields(nlohmann::json& plugins, bool consumer_resource, std::string& field,
                           std::string& error) {
  return each_secret(plugins, consumer_resource, [&](nlohmann::json& value, const std::string& path) {
    const std::string& text = value.get_ref<const std::string&>();
    std::string out;
    if (is_encrypted_secret(text)) {
      if (decrypt_secret(text, out, &error)) {
        // Kept as it is, unless an older key of the keyring made it: a rotation's re-write is a GET then a
        // PUT.
        auto keyring = process_keyring();
        if (!keyring || !keyring->needs_reencryption(text)) return true;
        std::string fresh;
        if (!keyring->encrypt(out, fresh, &error)) {
          field = path;
          error = "cannot be encrypted: " + error;
          return false;
        }
        value = std::move(fresh);
        return true;
      }
      field = path;
      error = "holds a $ENC$ token that this control plane's keyring cannot decrypt (" + error +
              "); send the value in clear to have it encrypted";
      return false;
    }
    if (!encrypt_secret(text, out, &error)) {
      field = path;
      error = "cannot be encrypted: " + error;
      return false;
    }
    value = std::move(out);
    return true;
  });
}

void conceal_secret_fields(nlohmann::json& plugins, bool consumer_resource) {
  each_secret(plugins, consumer_resource, [](nlohmann::json& value, const std::string&) {
    const std::string& text = value.get_ref<const std::string&>();
    if (is_encrypted_secret(text)) return true;
    std::string token;
    value = encrypt_secret(text, token, nullptr) ? std::move(token) : std::string("******");
    return true;
  });
}

}  // namespace portico::config
