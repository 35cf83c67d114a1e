// The client certificate check of a request on the TLS listener, as APISIX's verify_https_client: the
// handshake chose its ssl (and whether to ask for a client certificate) by SNI, routing goes by Host, and
// skip_mtls_uri_regex lets some paths through without a certificate. Pure: the caller (proxy::Session) owns
// the store (its pinned snapshot's), logs and answers 400. Any thread.
#pragma once

#include <string_view>

#include "tls/cert_store.h"

namespace portico::tls {

enum class RequestCheck {
  ok,
  no_certificate,  // an ssl with client.ca, no verified certificate, a path none of its patterns matches
  host_mismatch,   // the Host names an ssl with client.ca other than the handshake's SNI
};

struct RequestTls {
  std::string_view sni;          // the handshake's SNI, lower case, no trailing dot; empty when none was sent
  std::string_view default_sni;  // --tls-default-sni: the name a missing SNI was answered for
  bool verified = false;         // a client certificate was presented and verified
};

// `host`: the request's Host (port removed); `path`: its normalized path, without the query, called only when
// the certificate is not verified (so a verified connection never normalizes twice).
template <typename PathFn>
RequestCheck check_request(const CertStore* store, const RequestTls& tls, std::string_view host,
                           PathFn&& path);

// ---- implementation ----

namespace detail {
// Case-insensitive, a trailing dot ignored on either side.
bool same_name(std::string_view a, std::string_view b);
}  // namespace detail

template <typename PathFn>
RequestCheck check_request(const CertStore* store, const RequestTls& tls, std::string_view host,
                           PathFn&& path) {
  if (store == nullptr || !store->any_client_ca()) return RequestCheck::ok;
  // 1. The handshake's ssl, found again in the current store: an unverified connection reaches only the
  //    paths its skip_mtls_uri_regex lists. An ssl changed since the handshake to require a certificate
  //    refuses the connections made without one.
  if (!tls.verified) {
    const CertEntry* handshake =
        store->find(tls.sni.empty() && !tls.default_sni.empty() ? tls.default_sni : tls.sni);
    if (handshake != nullptr && handshake->client_ca && !handshake->allows_unverified(path()))
      return RequestCheck::no_certificate;
  }
  // 2. The Host's ssl: with client.ca, only the connection made under that very name (a certificate-less SNI
  //    must not reach an mTLS host's routes, nor a wildcard ssl's a.domain SNI a b.domain Host).
  const CertEntry* by_host = store->find(host);
  if (by_host == nullptr || !by_host->client_ca) return RequestCheck::ok;
  if (!detail::same_name(host, tls.sni)) return RequestCheck::host_mismatch;
  if (!tls.verified && !by_host->allows_unverified(path())) return RequestCheck::no_certificate;
  return RequestCheck::ok;
}

}  // namespace portico::tls
