// The process keyring (secrets.h).
#include "config/secrets.h"

#include <atomic>

#include "config/secret_box.h"

namespace portico::config {

namespace {
// std::atomic<std::shared_ptr> is not in libstdc++ 12; the free atomic functions are.
std::shared_ptr<const Keyring> g_keyring;
}  // namespace

void set_process_keyring(std::shared_ptr<const Keyring> keyring) {
  std::atomic_store(&g_keyring, std::move(keyring));
}

std::shared_ptr<const Keyring> process_keyring() {
  return std::atomic_load(&g_keyring);
}

bool is_encrypted_secret(std::string_view stored) {
  return Keyring::is_encrypted(stored);
}

bool decrypt_secret(std::string_view stored, std::string& plain, std::string* error) {
  auto keyring = process_keyring();
  if (!keyring) {
    if (error != nullptr) *error = "no keyring was given to this process (--data-encryption-keyring)";
    return false;
  }
  return keyring->decrypt(stored, plain, error);
}

bool encrypt_secret(std::string_view plain, std::string& stored, std::string* error) {
  auto keyring = process_keyring();
  if (!keyring) {
    if (error != nullptr) *error = "no keyring was given to this process (--data-encryption-keyring)";
    return false;
  }
  return keyring->encrypt(plain, stored, error);
}

}  // namespace portico::config
