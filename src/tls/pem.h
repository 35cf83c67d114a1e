// PEM texts to OpenSSL objects, for the TLS contexts of both sides (server certificates here, client
// certificates and CA bundles for upstreams). Owning smart pointers for the OpenSSL types used across
// src/tls. Pure functions; any thread. OpenSSL's per-thread error queue is left empty.
#pragma once

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <memory>
#include <string>
#include <string_view>

namespace portico::tls {

struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
struct ChainFree {
  void operator()(STACK_OF(X509) * s) const { sk_X509_pop_free(s, X509_free); }
};
struct StoreFree {
  void operator()(X509_STORE* s) const { X509_STORE_free(s); }
};
struct NamesFree {
  void operator()(STACK_OF(X509_NAME) * s) const { sk_X509_NAME_pop_free(s, X509_NAME_free); }
};
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using ChainPtr = std::unique_ptr<STACK_OF(X509), ChainFree>;
using StorePtr = std::unique_ptr<X509_STORE, StoreFree>;
using NamesPtr = std::unique_ptr<STACK_OF(X509_NAME), NamesFree>;

// A certificate with its chain and private key, checked to match.
struct KeyPair {
  X509Ptr cert;
  ChainPtr chain;  // certificates after the first in the PEM text (may be empty, never null once loaded)
  PkeyPtr key;
};

// Loads `cert_pem` (leaf then chain) and `key_pem`. Empty string on success, else why not.
std::string load_pair(std::string_view cert_pem, std::string_view key_pem, KeyPair& out);

// Every certificate of `pem` as a trust store (for verifying peers), and their subject names (the CA list a
// server sends in its CertificateRequest). Empty string on success.
std::string load_ca(std::string_view pem, StorePtr& store, NamesPtr* names);

// "rsa", "ecdsa", or the OpenSSL name of another key type.
std::string key_type(const EVP_PKEY* key);

}  // namespace portico::tls
