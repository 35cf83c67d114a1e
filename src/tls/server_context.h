// ServerContext: the TLS settings of the client-facing listener, one SSL_CTX shared by every worker (an
// SSL_CTX is safe to share once configured; each connection gets its own SSL). Built once at start, it holds
// no certificate: a connection's certificate is chosen during its handshake, in the ClientHello callback,
// from the CertStore the session pinned (prepare()), by SNI, and the connection moves to that entry's own
// SSL_CTX (SSL_set_SSL_CTX, as nginx does per server block), compiled with the snapshot:
//   1. the store's entry for the SNI (exact, then wildcard, then "*"; cert_store.h);
//   2. a ClientHello without SNI: the entry for --tls-default-sni when set (APISIX fallback_sni), else "*";
//   3. else the handshake fails with an unrecognized_name alert (an unknown SNI never falls back to the
//      default name).
// The chosen entry's context holds its certificates (RSA and/or ECDSA), and OpenSSL presents the one the
// client's signature algorithms accept; its client CA (ssls.client.ca) makes the client certificate
// mandatory (verified in the handshake, as APISIX does: a missing or invalid one fails the handshake), or
// optional with client.skip_mtls_uri_regex (a presented one must still verify; request_check.h decides
// per request).
//
// The entry's ssl_protocols narrow the versions for that connection (set before the version is negotiated).
//
// Fixed policy: TLS 1.2 and 1.3 only, Mozilla "intermediate" ciphers, no compression, no renegotiation,
// ALPN "h2" (ServerOptions::http2) and "http/1.1", stateless session tickets (TicketKeys, rotated hourly,
// shared by the workers), no server-side session cache.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

#include "tls/cert_store.h"
#include "tls/ticket_keys.h"

namespace portico::tls {

// The settings every server SSL_CTX of the edge gets, the listener's and each certificate's (CertStore):
// protocol versions, ciphers, groups, options, no session cache, the ticket lifetime, modes, and an ALPN
// callback that asks the ServerContext the connection came through (select_protocol). One function, so that a
// connection switched to a certificate's context negotiates exactly as the listener's would. Throws
// std::runtime_error when OpenSSL refuses the cipher or group lists.
void apply_server_policy(SSL_CTX* ctx);

struct ServerOptions {
  std::string default_sni;  // --tls-default-sni: the name whose certificate answers a ClientHello without SNI
  bool http2 = false;       // ALPN offers h2 before http/1.1 (--http2)
};

class ServerContext {
 public:
  explicit ServerContext(ServerOptions options);
  ServerContext(const ServerContext&) = delete;
  ServerContext& operator=(const ServerContext&) = delete;

  boost::asio::ssl::context& context() { return context_; }
  TicketKeys& ticket_keys() { return tickets_; }
  const ServerOptions& options() const { return options_; }

  // Before the handshake of `ssl`: the store it selects from. The caller keeps `store` alive until the
  // handshake ends (the chosen certificates are then referenced by the SSL itself).
  static void prepare(SSL* ssl, const CertStore* store);

  // After a successful handshake: the client certificate's subject (RFC 2253, as nginx's
  // $ssl_client_s_dn) and the verification result as nginx's $ssl_client_verify ("SUCCESS", "NONE").
  static std::string client_subject(SSL* ssl);
  static const char* client_verify(SSL* ssl);

  // The ClientHello callback (public for the C trampoline).
  int on_client_hello(SSL* ssl, int* alert);
  // The ALPN choice of this listener, for connections that moved to a certificate's context (public for
  // the C trampoline).
  int select_protocol(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                      unsigned int inlen);

 private:
  ServerOptions options_;
  boost::asio::ssl::context context_;
  TicketKeys tickets_;
  void* alpn_arg_ = nullptr;  // select_alpn's argument, on this context and through select_protocol()
};

}  // namespace portico::tls
