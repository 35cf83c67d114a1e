#include "tls/ticket_keys.h"

#include <openssl/core_names.h>
#include <openssl/params.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <cstring>

namespace portico::tls {
namespace {

int ex_index() {
  static const int index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int ssl_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int ticket_callback(SSL* ssl, unsigned char name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher,
                    EVP_MAC_CTX* mac, int enc) {
  // OpenSSL calls the callback of the context the connection started with, but SSL_get_SSL_CTX names the
  // one it may have switched to since (bind()).
  auto* keys = static_cast<TicketKeys*>(SSL_get_ex_data(ssl, ssl_index()));
  if (keys == nullptr) keys = static_cast<TicketKeys*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ex_index()));
  return keys == nullptr ? -1 : keys->on_ticket(name, iv, cipher, mac, enc);
}

}  // namespace

TicketKeys::TicketKeys(std::chrono::seconds period)
    : period_(period), current_(fresh()), next_rotation_(Clock::now() + period) {
  cipher_ = EVP_CIPHER_fetch(nullptr, "AES-256-CBC", nullptr);
  if (cipher_ == nullptr) std::abort();  // no AES: the default provider is broken
}

TicketKeys::~TicketKeys() {
  EVP_CIPHER_free(cipher_);
}

TicketKeys::Key TicketKeys::fresh() {
  Key k;
  if (RAND_bytes(k.name.data(), k.name.size()) != 1 || RAND_bytes(k.aes.data(), k.aes.size()) != 1 ||
      RAND_bytes(k.hmac.data(), k.hmac.size()) != 1) {
    std::abort();  // no randomness: nothing about TLS can be trusted
  }
  return k;
}

void TicketKeys::install(SSL_CTX* ctx) {
  SSL_CTX_set_ex_data(ctx, ex_index(), this);
  SSL_CTX_set_tlsext_ticket_key_evp_cb(ctx, ticket_callback);
}

void TicketKeys::bind(SSL* ssl) {
  SSL_set_ex_data(ssl, ssl_index(), this);
}

void TicketKeys::rotate_if_due(Clock::time_point now) {
  std::lock_guard lock(mutex_);
  if (now < next_rotation_) return;
  previous_ = current_;
  has_previous_ = true;
  current_ = fresh();
  next_rotation_ = now + period_;
  ++rotations_;
}

uint64_t TicketKeys::rotations() const {
  std::lock_guard lock(mutex_);
  return rotations_;
}

int TicketKeys::on_ticket(unsigned char name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac,
                          int enc) {
  const Clock::time_point now = Clock::now();
  Key key;
  int result = 1;
  {
    std::unique_lock lock(mutex_);
    if (now >= next_rotation_) {
      lock.unlock();
      rotate_if_due(now);
      lock.lock();
    }
    if (enc) {
      key = current_;
      std::memcpy(name, key.name.data(), key.name.size());
    } else if (std::memcmp(name, current_.name.data(), 16) == 0) {
      key = current_;
    } else if (has_previous_ && std::memcmp(name, previous_.name.data(), 16) == 0) {
      key = previous_;
      result = 2;  // valid, but issue a ticket under the current key
    } else {
      return 0;  // unknown (expired) key: a full handshake
    }
  }
  if (enc && RAND_bytes(iv, EVP_MAX_IV_LENGTH) != 1) return -1;
  OSSL_PARAM params[] = {
      OSSL_PARAM_construct_octet_string(OSSL_MAC_PARAM_KEY, key.hmac.data(), key.hmac.size()),
      OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, const_cast<char*>("SHA256"), 0),
      OSSL_PARAM_construct_end()};
  if (EVP_MAC_CTX_set_params(mac, params) != 1) return -1;
  const int ok = enc ? EVP_EncryptInit_ex(cipher, cipher_, nullptr, key.aes.data(), iv)
                     : EVP_DecryptInit_ex(cipher, cipher_, nullptr, key.aes.data(), iv);
  return ok == 1 ? result : -1;
}

}  // namespace portico::tls
