#include "tls/server_context.h"

#include <openssl/err.h>
#include <openssl/tls1.h>

#include <stdexcept>

namespace portico::tls {
namespace {

// Mozilla "intermediate" (v5.7) for TLS 1.2; TLS 1.3 keeps OpenSSL's default suites (all AEAD).
constexpr const char* kCiphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
    "ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
constexpr const char* kGroups = "X25519:P-256:P-384";
constexpr unsigned char kHttp11[] = {8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
// HTTP/2 on: h2 first, so the server's preference picks it when the client offers both.
constexpr unsigned char kH2Http11[] = {2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1'};
struct AlpnList {
  const unsigned char* data;
  unsigned int size;
};
constexpr AlpnList kAlpnHttp11{kHttp11, sizeof kHttp11};
constexpr AlpnList kAlpnH2{kH2Http11, sizeof kH2Http11};

int store_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

// The ServerContext a connection came through, for the callbacks of the certificate context it moved to.
int listener_index() {
  static const int index = SSL_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
  return index;
}

int alpn_via_listener(SSL* ssl, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                      unsigned int inlen, void*) {
  auto* server = static_cast<ServerContext*>(SSL_get_ex_data(ssl, listener_index()));
  if (server == nullptr) return SSL_TLSEXT_ERR_ALERT_FATAL;
  return server->select_protocol(ssl, out, outlen, in, inlen);
}

int client_hello_trampoline(SSL* ssl, int* alert, void* arg) {
  return static_cast<ServerContext*>(arg)->on_client_hello(ssl, alert);
}

// The host name of the ClientHello's server_name extension; empty when absent or malformed.
std::string_view sni_of(SSL* ssl) {
  const unsigned char* p = nullptr;
  size_t len = 0;
  if (SSL_client_hello_get0_ext(ssl, TLSEXT_TYPE_server_name, &p, &len) != 1 || len < 5) return {};
  // ServerNameList: u16 length, then entries of (u8 type, u16 length, name); only host_name (0) exists.
  const size_t list = (size_t{p[0]} << 8) | p[1];
  if (list + 2 != len || p[2] != TLSEXT_NAMETYPE_host_name) return {};
  const size_t name = (size_t{p[3]} << 8) | p[4];
  if (name == 0 || name + 5 > len) return {};
  return std::string_view(reinterpret_cast<const char*>(p + 5), name);
}

int select_alpn(SSL*, const unsigned char** out, unsigned char* outlen, const unsigned char* in,
                unsigned int inlen, void* arg) {
  const AlpnList& ours = *static_cast<const AlpnList*>(arg);
  unsigned char* chosen = nullptr;
  if (SSL_select_next_proto(&chosen, outlen, ours.data, ours.size, in, inlen) != OPENSSL_NPN_NEGOTIATED) {
    return SSL_TLSEXT_ERR_ALERT_FATAL;  // no_application_protocol (RFC 7301 3.2), as nginx
  }
  *out = chosen;
  return SSL_TLSEXT_ERR_OK;
}

}  // namespace

void apply_server_policy(SSL_CTX* ctx) {
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_max_proto_version(ctx, TLS1_3_VERSION);
  SSL_CTX_set_options(ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  if (SSL_CTX_set_cipher_list(ctx, kCiphers) != 1 || SSL_CTX_set1_groups_list(ctx, kGroups) != 1) {
    ERR_clear_error();
    throw std::runtime_error("TLS: cannot set the cipher suites");
  }
  // Tickets only: nothing to share between workers but the ticket keys.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_timeout(ctx, 3600);  // a ticket's lifetime hint; TicketKeys keeps its key at least that long
  // OpenSSL asks the connection's current SSL_CTX, the certificate's once the ClientHello chose it; the
  // choice stays the listener's (ServerContext::select_protocol).
  SSL_CTX_set_alpn_select_cb(ctx, alpn_via_listener, nullptr);
  // Small writes are coalesced by the session; release buffers of idle keep-alive connections.
  SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
}

ServerContext::ServerContext(ServerOptions options)
    : options_(std::move(options)), context_(boost::asio::ssl::context::tls_server) {
  SSL_CTX* ctx = context_.native_handle();
  alpn_arg_ = const_cast<AlpnList*>(options_.http2 ? &kAlpnH2 : &kAlpnHttp11);
  apply_server_policy(ctx);
  // Tickets are sealed and opened by the context the connection started with (OpenSSL's session_ctx), even
  // after the ClientHello switched it to a certificate's context.
  tickets_.install(ctx);
  SSL_CTX_set_client_hello_cb(ctx, client_hello_trampoline, this);
  // Connections leave this context in the ClientHello callback; their certificate's context calls
  // select_protocol(), which calls select_alpn with the same argument (keep the two in step).
  SSL_CTX_set_alpn_select_cb(ctx, select_alpn, alpn_arg_);
}

int ServerContext::select_protocol(SSL* ssl, const unsigned char** out, unsigned char* outlen,
                                   const unsigned char* in, unsigned int inlen) {
  return select_alpn(ssl, out, outlen, in, inlen, alpn_arg_);
}

void ServerContext::prepare(SSL* ssl, const CertStore* store) {
  SSL_set_ex_data(ssl, store_index(), const_cast<CertStore*>(store));
}

int ServerContext::on_client_hello(SSL* ssl, int* alert) {
  // Called again for the second ClientHello after a HelloRetryRequest: the choice is made once.
  if (SSL_get_certificate(ssl) != nullptr) return SSL_CLIENT_HELLO_SUCCESS;
  const auto* store = static_cast<const CertStore*>(SSL_get_ex_data(ssl, store_index()));
  const CertEntry* entry = nullptr;
  if (store != nullptr) {
    // As APISIX's fallback_sni: the default name stands in for a missing SNI only; an unknown one is refused
    // (answering it would present, and with mTLS check for, a name the client did not ask for).
    const std::string_view sni = sni_of(ssl);
    entry = store->find(sni.empty() && !options_.default_sni.empty() ? std::string_view(options_.default_sni)
                                                                     : sni);
  }
  if (entry == nullptr) {
    *alert = SSL_AD_UNRECOGNIZED_NAME;
    return SSL_CLIENT_HELLO_ERROR;
  }
  // The entry's context was built with the snapshot (certificates, chains, client CA, session id context):
  // switching to it costs a reference count and a copy of OpenSSL's per-connection certificate table,
  // where setting the certificates here re-checked each key against its certificate on every handshake.
  SSL_CTX* ctx = entry->ctx.get();
  // The callbacks that stay the listener's find it through the SSL from now on.
  SSL_set_ex_data(ssl, listener_index(), this);
  tickets_.bind(ssl);
  if (SSL_set_SSL_CTX(ssl, ctx) != ctx) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  // What SSL_set_SSL_CTX does not carry over (the SSL copied them from the listener's context at SSL_new).
  SSL_set_session_id_context(ssl, entry->sid_ctx, sizeof entry->sid_ctx);
  SSL_set_verify(ssl, SSL_CTX_get_verify_mode(ctx), nullptr);
  SSL_set_verify_depth(ssl, SSL_CTX_get_verify_depth(ctx));
  // ssl_protocols: OpenSSL negotiates the version after this callback, with the connection's bounds (which
  // also decide the TLS 1.3 downgrade sentinel, so a 1.2-only name does not look like an attack).
  if ((entry->min_version != 0 && SSL_set_min_proto_version(ssl, entry->min_version) != 1) ||
      (entry->max_version != 0 && SSL_set_max_proto_version(ssl, entry->max_version) != 1)) {
    *alert = SSL_AD_INTERNAL_ERROR;
    return SSL_CLIENT_HELLO_ERROR;
  }
  return SSL_CLIENT_HELLO_SUCCESS;
}

std::string ServerContext::client_subject(SSL* ssl) {
  X509* peer = SSL_get0_peer_certificate(ssl);
  if (peer == nullptr) return {};
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return {};
  X509_NAME_print_ex(bio, X509_get_subject_name(peer), 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long len = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(len > 0 ? len : 0));
  BIO_free(bio);
  return out;
}

const char* ServerContext::client_verify(SSL* ssl) {
  if (SSL_get0_peer_certificate(ssl) == nullptr) return "NONE";
  return SSL_get_verify_result(ssl) == X509_V_OK ? "SUCCESS" : "FAILED";
}

}  // namespace portico::tls
