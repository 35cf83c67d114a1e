// TLS for the control channels' listeners (the Admin API and the data-plane sync listener; part C of issue
// 12, docs/tls-control.md): a server context built from PEM files, and the node identity a verified client
// certificate names. The proxy's TLS edge (certificates from `ssls`, SNI) is not this: it lives beside it.
//
// Settings (binding for every TLS context of Portico): TLS 1.2 and 1.3 only, Mozilla "intermediate" cipher
// suites for TLS 1.2, no compression, no renegotiation, a server-side session cache (sessions resumable).
// ALPN is not negotiated: these listeners speak HTTP/1.1 only.
//
// Contract: make_server_context() may run on any thread and returns an immutable context (handshakes on any
// number of threads may share it); a reload builds a new one and swaps the pointer, so a handshake pins the
// context it started with. peer_identity() reads one connection's SSL object on that connection's thread.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/ssl/context.hpp>
#include <memory>
#include <string>

namespace portico::tls {

struct ServerFiles {
  std::string cert_file;       // PEM: the certificate, then its chain (leaf first)
  std::string key_file;        // PEM: its private key (must match the certificate)
  std::string client_ca_file;  // PEM CA bundle: when set, clients are asked for a certificate signed by it
  bool require_client_cert =
      false;  // with client_ca_file: a client without a certificate fails the handshake
};

// Throws std::runtime_error naming the file and OpenSSL's reason (unreadable, not PEM, key does not match).
std::shared_ptr<boost::asio::ssl::context> make_server_context(const ServerFiles& files);

// The identity of a client certificate that passed verification: its first DNS subjectAltName; its
// subject's commonName only when it has no subjectAltName extension at all (RFC 6125). Empty when the
// connection has no verified certificate or it names nothing (e.g. a SAN with only IP addresses).
std::string peer_identity(SSL* ssl);

// Sets the common protocol bounds and options on a context (used by make_server_context; for tests and
// other contexts of the control channels).
void apply_settings(SSL_CTX* ctx);

}  // namespace portico::tls
