// CertStore: the server certificates of one config generation (APISIX `ssls` of type server, status 1),
// compiled into OpenSSL objects when the snapshot is built (off the workers), immutable afterwards and shared
// by every worker's handshakes. A handshake pins the store it started with; a new config publishes a new
// store, so a certificate change applies to the next handshake and never to one in progress.
//
// Selection by SNI (case-insensitive, a trailing dot ignored): an exact name, else a wildcard "*.suffix"
// (one label, as clients check it), else "*" (any name), else none. Among ssls claiming the same name, the
// first in config order (by id) wins; when their client.ca differ, the loser is reported in `problems`
// (an mTLS ssl shadowed by one without is a configuration mistake, not a rotation). One entry holds one
// certificate per key type (RSA, ECDSA): OpenSSL presents the one the client's signature algorithms accept.
//
// Each entry is compiled into its own SSL_CTX (server_context.h's apply_server_policy, then its certificates
// with their chains, its client CA and its session id context), so that a handshake only switches to it
// (SSL_set_SSL_CTX) instead of installing and re-checking certificates on every connection. A connection
// keeps a reference to the context it switched to: the store may go while connections continue.
#pragma once

#include <openssl/ssl.h>

#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/model.h"
#include "plugins/regex.h"
#include "tls/pem.h"

namespace portico::tls {

struct CtxFree {
  void operator()(SSL_CTX* c) const { SSL_CTX_free(c); }
};
using CtxPtr = std::unique_ptr<SSL_CTX, CtxFree>;

struct CertEntry {
  std::string id;                  // the ssl's id
  std::vector<KeyPair> pairs;      // at most one per key type, in config order (cert, then certs[i])
  std::vector<std::string> types;  // key_type() of each pair, parallel to `pairs`
  StorePtr client_ca;              // null: no client certificate asked for
  NamesPtr client_ca_names;
  int client_depth = 1;
  // client.skip_mtls_uri_regex, compiled. Non-empty: the client certificate is optional in the handshake
  // (a presented one must still verify) and the request path decides (request_check.h).
  std::vector<plugins::Regex> skip_mtls;
  // ssl_protocols as OpenSSL versions; 0: the policy's bound (TLS 1.2, 1.3). Set on the connection in the
  // ClientHello callback, before the version is negotiated (SSL_set_SSL_CTX does not carry them over).
  int min_version = 0;
  int max_version = 0;
  // Session id context: sessions resume only under the same ssl and client CA (OpenSSL checks it for both
  // tickets and cached sessions), so a session verified against one CA never skips another's check.
  unsigned char sid_ctx[32] = {0};
  // All of the above as OpenSSL applies it: the context a handshake switches to. Never null in a store.
  CtxPtr ctx;
  unsigned char digest[32] = {0};  // of what the entry was compiled from (id, certificates, keys, client CA)

  // Whether a request for `path` (normalized) may go without a verified client certificate: no client.ca,
  // or a skip_mtls_uri_regex pattern found in it (unanchored, as APISIX's ngx.re.match).
  bool allows_unverified(std::string_view path) const;
};

class CertStore {
 public:
  // Compiles the server certificates of `ssls`. A pair OpenSSL refuses (already validated, so only on
  // internal failure) is skipped and reported in `problems`. An ssl compiled from the same id, certificates,
  // keys and client CA in `previous` (the store being replaced) keeps that entry, context included.
  static std::shared_ptr<const CertStore> build(const std::vector<config::Ssl>& ssls,
                                                std::vector<std::string>* problems = nullptr,
                                                const CertStore* previous = nullptr);

  // The entry for `server_name` (SNI as sent); null when none matches. Any thread.
  const CertEntry* find(std::string_view server_name) const;
  size_t size() const { return entries_.size(); }
  // Whether any entry asks for client certificates (client.ca): without one, no request needs the check of
  // tls/request_check.h (two lookups per request on the TLS listener).
  bool any_client_ca() const { return any_client_ca_; }

 private:
  // Entries are immutable and shared with the next store when their ssl is unchanged.
  std::vector<std::shared_ptr<const CertEntry>> entries_;
  std::unordered_map<std::string, std::shared_ptr<const CertEntry>> by_id_;
  std::unordered_map<std::string, const CertEntry*> exact_;
  std::unordered_map<std::string, const CertEntry*> wildcard_;  // key: the suffix after "*." ("example.com")
  const CertEntry* any_ = nullptr;                              // "*"
  bool any_client_ca_ = false;
};

}  // namespace portico::tls
