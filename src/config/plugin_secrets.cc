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

// One string secret before a write (encrypt_secret_fields' rules); false with `error`.
bool encrypt_one(nlohmann::json& value, std::string& error) {
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
        error = "cannot be encrypted: " + error;
        return false;
      }
      value = std::move(fresh);
      return true;
    }
    error = "holds a $ENC$ token that this control plane's keyring cannot decrypt (" + error +
            "); send the value in clear to have it encrypted";
    return false;
  }
  if (!encrypt_secret(text, out, &error)) {
    error = "cannot be encrypted: " + error;
    return false;
  }
  value = std::move(out);
  return true;
}

// An upstream object's tls.client_key when it is a string, else null.
nlohmann::json* upstream_client_key(nlohmann::json& upstream) {
  if (!upstream.is_object()) return nullptr;
  auto tls = upstream.find("tls");
  if (tls == upstream.end() || !tls->is_object()) return nullptr;
  auto key = tls->find("client_key");
  return key != tls->end() && key->is_string() ? &*key : nullptr;
}

}  // namespace

bool encrypt_secret_fields(nlohmann::json& plugins, bool consumer_resource, std::string& field,
                           std::string& error) {
  return each_secret(plugins, consumer_resource, [&](nlohmann::json& value, const std::string& path) {
    if (encrypt_one(value, error)) return true;
    field = path;
    return false;
  });
}

bool encrypt_upstream_client_key(nlohmann::json& upstream, std::string& error) {
  nlohmann::json* key = upstream_client_key(upstream);
  if (key == nullptr) return true;
  // Without a keyring a key in clear stays so (answers still hide it); a token must still be readable.
  if (!process_keyring() && !is_encrypted_secret(key->get_ref<const std::string&>())) return true;
  return encrypt_one(*key, error);
}

void conceal_upstream_client_key(nlohmann::json& upstream) {
  nlohmann::json* key = upstream_client_key(upstream);
  if (key == nullptr) return;
  const std::string& text = key->get_ref<const std::string&>();
  if (is_encrypted_secret(text)) return;
  std::string token;
  if (encrypt_secret(text, token, nullptr)) {
    *key = std::move(token);
  } else {
    upstream["tls"].erase("client_key");
  }
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
