// Client-side TLS for connections Portico opens to upstream nodes (scheme https, https health checks).
//
// A ClientContext is compiled from PEM material when a snapshot is built (off the workers), is immutable
// after build() returns, and is shared by every worker and the health checker: OpenSSL allows SSL_new on one
// SSL_CTX from many threads. Each context gets a process-unique id so that keep-alive pools and session
// caches never hand a connection or a session made under one identity (CA, client certificate, verify flag)
// to another.
//
// ClientSessionCache is per worker (one thread, no locks): the last resumable SSL_SESSION per pool key, so a
// new connection to a node resumes instead of paying a full handshake.
//
// Settings (docs/tls.md, "Upstreams"): TLS 1.2 and 1.3 only, Mozilla "intermediate" ciphers, no compression,
// no renegotiation, ALPN "http/1.1" (h2 comes with the HTTP/2 upstream work), client sessions resumable.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>

namespace portico::tls {

struct ClientTlsSpec {
  bool verify = false;   // verify the server's chain (against ca_file) and its name (the SNI host)
  std::string ca_file;   // PEM bundle trusted for verification; empty: OpenSSL's default paths
  std::string cert_pem;  // client certificate (optionally followed by its chain), for mTLS; empty: none
  std::string key_pem;   // private key of cert_pem

  bool operator==(const ClientTlsSpec&) const = default;
};

class ClientContext {
 public:
  // Null with `error` ("client certificate: ...") when the material does not load or the key does not match.
  static std::shared_ptr<ClientContext> build(const ClientTlsSpec& spec, std::string* error);

  // The SSL_CTX to open streams with. Non-const because asio's stream takes a context&; nothing may change
  // the context after build().
  boost::asio::ssl::context& asio() const { return ctx_; }
  bool verify() const { return verify_; }
  uint64_t id() const { return id_; }

  // Sets up `ssl` (not yet handshaken) for `host`: SNI unless `host` is an IP literal or empty, the name to
  // verify when verifying (a host name, or an IP address against the certificate's IP SANs), and `session`
  // (may be null) to resume. False when OpenSSL refuses one of them, or when verifying with an empty `host`
  // (a chain-only check would accept any certificate the trust store signed).
  bool prepare(SSL* ssl, std::string_view host, SSL_SESSION* session) const;

 private:
  explicit ClientContext(bool verify);
  mutable boost::asio::ssl::context ctx_;
  bool verify_;
  uint64_t id_;
};

// The host part of a Host header value ("a.example:8443" -> "a.example", "[::1]:8443" -> "::1").
std::string_view host_without_port(std::string_view host);

// Call before freeing a connection's SSL that ends without a TLS shutdown (pool eviction, an origin's close,
// an error after the handshake): OpenSSL otherwise marks its session not resumable (ssl_clear_bad_session),
// which would also spoil the copy ClientSessionCache keeps.
void keep_session_resumable(SSL* ssl);

class ClientSessionCache {
 public:
  ClientSessionCache() = default;
  ~ClientSessionCache() { clear(); }
  ClientSessionCache(const ClientSessionCache&) = delete;
  ClientSessionCache& operator=(const ClientSessionCache&) = delete;

  // The session to offer for `key`, or null. Owned by the cache (prepare() takes its own reference).
  SSL_SESSION* find(const std::string& key) const;
  // Keeps `ssl`'s current session for `key` if it can be resumed (TLS 1.3 tickets arrive after the handshake:
  // call after a response was read).
  void store(const std::string& key, SSL* ssl);
  // Forgets `key` (a handshake offering its session failed).
  void erase(const std::string& key);
  void clear();
  size_t size() const { return sessions_.size(); }

  // Bound on keys (pass_host "pass" lets clients choose the SNI, so keys are client-controlled).
  static constexpr size_t kMaxEntries = 4096;

 private:
  std::unordered_map<std::string, SSL_SESSION*> sessions_;
};

}  // namespace portico::tls
