#include "tls/pem.h"

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/pem.h>

namespace portico::tls {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;

struct ClearErrors {
  ~ClearErrors() { ERR_clear_error(); }
};

int no_passphrase(char*, int, int, void*) {
  return -1;
}

BioPtr memory_bio(std::string_view text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

}  // namespace

std::string load_pair(std::string_view cert_pem, std::string_view key_pem, KeyPair& out) {
  ClearErrors clear;
  BioPtr bio = memory_bio(cert_pem);
  if (!bio) return "out of memory";
  out.cert.reset(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
  if (!out.cert) return "not a PEM certificate";
  out.chain.reset(sk_X509_new_null());
  while (X509* extra = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr)) {
    sk_X509_push(out.chain.get(), extra);
  }
  BioPtr kbio = memory_bio(key_pem);
  if (!kbio) return "out of memory";
  out.key.reset(PEM_read_bio_PrivateKey(kbio.get(), nullptr, no_passphrase, nullptr));
  if (!out.key) return "not a PEM private key";
  if (X509_check_private_key(out.cert.get(), out.key.get()) != 1)
    return "the key does not match the certificate";
  return {};
}

std::string load_ca(std::string_view pem, StorePtr& store, NamesPtr* names) {
  ClearErrors clear;
  BioPtr bio = memory_bio(pem);
  if (!bio) return "out of memory";
  store.reset(X509_STORE_new());
  if (names != nullptr) names->reset(sk_X509_NAME_new_null());
  int count = 0;
  while (X509* raw = PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr)) {
    X509Ptr ca(raw);
    X509_STORE_add_cert(store.get(), ca.get());  // takes its own reference
    if (names != nullptr) {
      if (X509_NAME* dup = X509_NAME_dup(X509_get_subject_name(ca.get())))
        sk_X509_NAME_push(names->get(), dup);
    }
    ++count;
  }
  return count == 0 ? "no PEM certificate" : std::string();
}

std::string key_type(const EVP_PKEY* key) {
  switch (EVP_PKEY_get_base_id(key)) {
    case EVP_PKEY_RSA:
    case EVP_PKEY_RSA_PSS:
      return "rsa";
    case EVP_PKEY_EC:
      return "ecdsa";
    default: {
      const char* name = OBJ_nid2sn(EVP_PKEY_get_base_id(key));
      return name != nullptr ? name : "unknown";
    }
  }
}

}  // namespace portico::tls
