// TicketKeys: the session ticket keys of the TLS listener, shared by every worker (one SSL_CTX), rotated
// every `period`: a new key encrypts new tickets, the previous one still decrypts (and its tickets are
// renewed), older ones are forgotten, so a ticket resumes for at least one period and at most two. The keys
// are random and never leave the process. Thread-safe (a mutex: it is taken once per full or resumed
// handshake, next to far costlier public-key work).
#pragma once

#include <openssl/crypto.h>

#include <openssl/evp.h>
#include <openssl/ssl.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <mutex>

namespace portico::tls {

class TicketKeys {
 public:
  using Clock = std::chrono::steady_clock;
  explicit TicketKeys(std::chrono::seconds period = std::chrono::hours(1));
  ~TicketKeys();
  TicketKeys(const TicketKeys&) = delete;
  TicketKeys& operator=(const TicketKeys&) = delete;

  // Installs the ticket callback on `ctx`; `this` must outlive it.
  void install(SSL_CTX* ctx);
  // For a connection of an installed context that moves to another SSL_CTX (SSL_set_SSL_CTX): OpenSSL keeps
  // calling the first context's callback, which then finds this object through `ssl`. Any thread.
  void bind(SSL* ssl);

  // For tests: rotates as if `now` were the time.
  void rotate_if_due(Clock::time_point now);
  uint64_t rotations() const;

  // OpenSSL's ticket key callback (SSL_CTX_set_tlsext_ticket_key_evp_cb) for this object.
  int on_ticket(unsigned char name[16], unsigned char* iv, EVP_CIPHER_CTX* cipher, EVP_MAC_CTX* mac, int enc);

 private:
  // Wiped when destroyed, the copies a handshake makes on its stack included.
  struct Key {
    std::array<unsigned char, 16> name{};
    std::array<unsigned char, 32> aes{};
    std::array<unsigned char, 32> hmac{};
    Key() = default;
    Key(const Key&) = default;
    Key& operator=(const Key&) = default;
    ~Key() { OPENSSL_cleanse(this, sizeof *this); }
  };
  static Key fresh();

  // AES-256-CBC fetched once: the legacy EVP_aes_256_cbc() makes OpenSSL 3 look it up on every ticket.
  EVP_CIPHER* cipher_ = nullptr;

  mutable std::mutex mutex_;
  std::chrono::seconds period_;
  Key current_;
  Key previous_;
  bool has_previous_ = false;
  Clock::time_point next_rotation_;
  uint64_t rotations_ = 0;
};

}  // namespace portico::tls
