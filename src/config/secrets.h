// The process's keyring for credential secrets at rest (config/secret_box.h has the cipher and the keyring
// file). A process that must read secrets in clear (a data plane, the traditional role) or write them
// encrypted (a control plane) installs its keyring once at start-up, before any configuration is read;
// validators then decrypt consumer credentials with it (plugin_catalog.cc) and the Admin API encrypts them
// before they reach etcd.
//
// Thread-safe: the keyring is replaced atomically; readers see the old or the new one.
#pragma once

#include <memory>
#include <string>
#include <string_view>

namespace portico::config {

class Keyring;

// Installs (or, with null, removes) the process keyring.
void set_process_keyring(std::shared_ptr<const Keyring> keyring);
std::shared_ptr<const Keyring> process_keyring();

// A value written by encrypt_secret (recognised by its prefix).
bool is_encrypted_secret(std::string_view stored);
// Decrypts with the process keyring; false with `error` when there is none, the key is unknown, or the value
// was tampered with.
bool decrypt_secret(std::string_view stored, std::string& plain, std::string* error);
// Encrypts with the process keyring's current key into `stored`. False with `error` when there is no keyring
// or encryption fails: the caller must then not store the value (never the clear text in its place).
bool encrypt_secret(std::string_view plain, std::string& stored, std::string* error);

}  // namespace portico::config
