#include "tls/client_context.h"

#include <arpa/inet.h>
#include <openssl/err.h>
#include <openssl/x509v3.h>

#include <atomic>

namespace portico::tls {
namespace asio = boost::asio;

namespace {

// Mozilla "intermediate" for TLS 1.2; TLS 1.3 suites are OpenSSL's defaults (all of them are modern).
constexpr const char* kCiphers12 =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
// ALPN wire format: one length-prefixed protocol. "h2" joins when HTTP/2 to upstreams exists.
constexpr unsigned char kAlpn[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};

std::atomic<uint64_t> next_id{1};

bool is_ip(std::string_view host, bool& v6) {
  std::string h(host);
  unsigned char buf[16];
  v6 = inet_pton(AF_INET6, h.c_str(), buf) == 1;
  return v6 || inet_pton(AF_INET, h.c_str(), buf) == 1;
}

std::string openssl_reason(const boost::system::error_code& ec) {
  std::string out = ec.message();
  ERR_clear_error();
  return out;
}

}  // namespace

ClientContext::ClientContext(bool verify)
    : ctx_(asio::ssl::context::tls_client), verify_(verify), id_(next_id.fetch_add(1)) {}

std::shared_ptr<ClientContext> ClientContext::build(const ClientTlsSpec& spec, std::string* error) {
  std::shared_ptr<ClientContext> c(new ClientContext(spec.verify));
  SSL_CTX* ctx = c->ctx_.native_handle();
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
  if (SSL_CTX_set_cipher_list(ctx, kCiphers12) != 1) {
    if (error) *error = "cannot set the cipher list";
    ERR_clear_error();
    return nullptr;
  }
  SSL_CTX_set_alpn_protos(ctx, kAlpn, sizeof kAlpn);
  // Sessions are kept by ClientSessionCache (per worker, per pool key), not in OpenSSL's internal store.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  boost::system::error_code ec;
  if (spec.verify) {
    if (spec.ca_file.empty()) {
      c->ctx_.set_default_verify_paths(ec);
    } else {
      c->ctx_.load_verify_file(spec.ca_file, ec);
    }
    if (ec) {
      if (error) *error = "CA bundle \"" + spec.ca_file + "\": " + openssl_reason(ec);
      return nullptr;
    }
    c->ctx_.set_verify_mode(asio::ssl::verify_peer);
  } else {
    c->ctx_.set_verify_mode(asio::ssl::verify_none);
  }
  if (!spec.cert_pem.empty() || !spec.key_pem.empty()) {
    c->ctx_.use_certificate_chain(asio::buffer(spec.cert_pem), ec);
    if (ec) {
      if (error) *error = "client certificate: " + openssl_reason(ec);
      return nullptr;
    }
    c->ctx_.use_private_key(asio::buffer(spec.key_pem), asio::ssl::context::pem, ec);
    if (ec) {
      if (error) *error = "client key: " + openssl_reason(ec);
      return nullptr;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      ERR_clear_error();
      if (error) *error = "client key: does not match the client certificate";
      return nullptr;
    }
  }
  return c;
}

bool ClientContext::prepare(SSL* ssl, std::string_view host, SSL_SESSION* session) const {
  bool v6 = false;
  const bool ip = !host.empty() && is_ip(host, v6);
  const std::string name(host);
  // RFC 6066 3: an IP address is never sent as SNI.
  if (!name.empty() && !ip && SSL_set_tlsext_host_name(ssl, name.c_str()) != 1) return false;
  // Verifying only the chain would accept any certificate the trust store signed: fail closed instead.
  if (verify_ && name.empty()) return false;
  if (verify_) {
    if (ip) {
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl), name.c_str()) != 1) return false;
    } else {
      SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      if (SSL_set1_host(ssl, name.c_str()) != 1) return false;
    }
  }
  if (session != nullptr && SSL_set_session(ssl, session) != 1) ERR_clear_error();  // full handshake then
  return true;
}

std::string_view host_without_port(std::string_view host) {
  if (!host.empty() && host.front() == '[') {
    size_t close = host.find(']');
    return close == std::string_view::npos ? host : host.substr(1, close - 1);
  }
  size_t colon = host.find(':');
  return colon == std::string_view::npos ? host : host.substr(0, colon);
}

void keep_session_resumable(SSL* ssl) {
  SSL_set_shutdown(ssl, SSL_get_shutdown(ssl) | SSL_SENT_SHUTDOWN);
}

SSL_SESSION* ClientSessionCache::find(const std::string& key) const {
  auto it = sessions_.find(key);
  return it == sessions_.end() ? nullptr : it->second;
}

void ClientSessionCache::store(const std::string& key, SSL* ssl) {
  SSL_SESSION* current = SSL_get0_session(ssl);
  if (current == nullptr || SSL_SESSION_is_resumable(current) != 1) return;
  auto it = sessions_.find(key);
  if (it != sessions_.end()) {
    if (it->second == current) return;  // already kept: the common case on a keep-alive connection
    SSL_SESSION_free(it->second);
    SSL_SESSION_up_ref(current);
    it->second = current;
    return;
  }
  if (sessions_.size() >= kMaxEntries) clear();  // crude but bounded: the next handshakes are full ones
  SSL_SESSION_up_ref(current);
  sessions_.emplace(key, current);
}

void ClientSessionCache::erase(const std::string& key) {
  auto it = sessions_.find(key);
  if (it == sessions_.end()) return;
  SSL_SESSION_free(it->second);
  sessions_.erase(it);
}

void ClientSessionCache::clear() {
  for (auto& [key, s] : sessions_) SSL_SESSION_free(s);
  sessions_.clear();
}

}  // namespace portico::tls
