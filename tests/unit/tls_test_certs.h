// Test-only certificates, generated at test time with OpenSSL's C API (no private key is committed): a
// self-signed CA, or a leaf signed by one, with a CN and optional DNS subjectAltNames. Shared by the tests of
// every binary that needs a certificate (unit_tls, unit_controlplane). Pure functions; any thread.
#pragma once

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <string>
#include <vector>

namespace portico::test_certs {

struct Pem {
  std::string cert;  // PEM certificate
  std::string key;   // PEM private key, unencrypted
};

inline std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

inline void add_extension(X509* x, int nid, const std::string& value) {
  X509_EXTENSION* ext = X509V3_EXT_conf_nid(nullptr, nullptr, nid, value.c_str());
  X509_add_ext(x, ext, -1);
  X509_EXTENSION_free(ext);
}

// A certificate for `cn` (no CN when empty) with `dns_names` as DNS subjectAltNames, signed by `issuer`
// (self-signed and a CA when null). RSA 2048 or ECDSA P-256.
inline Pem make_cert(const char* cn, bool rsa, const Pem* issuer = nullptr,
                     const std::vector<std::string>& dns_names = {}) {
  EVP_PKEY* pkey = rsa ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})
                       : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* x = X509_new();
  X509_set_version(x, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x), 7);
  X509_gmtime_adj(X509_getm_notBefore(x), -60);
  X509_gmtime_adj(X509_getm_notAfter(x), 3600);
  X509_set_pubkey(x, pkey);
  if (cn != nullptr && *cn != '\0') {
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               reinterpret_cast<const unsigned char*>(cn), -1, -1, 0);
  }
  if (!dns_names.empty()) {
    std::string san;
    for (const std::string& name : dns_names) san += (san.empty() ? "DNS:" : ",DNS:") + name;
    add_extension(x, NID_subject_alt_name, san);
  }
  EVP_PKEY* signer = pkey;
  X509* issuer_cert = nullptr;
  if (issuer != nullptr) {
    BIO* b = BIO_new_mem_buf(issuer->cert.data(), static_cast<int>(issuer->cert.size()));
    issuer_cert = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    b = BIO_new_mem_buf(issuer->key.data(), static_cast<int>(issuer->key.size()));
    signer = PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    X509_set_issuer_name(x, X509_get_subject_name(issuer_cert));
  } else {
    X509_set_issuer_name(x, X509_get_subject_name(x));
    add_extension(x, NID_basic_constraints, "critical,CA:TRUE");
  }
  X509_sign(x, signer, EVP_sha256());
  Pem out;
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, x);
  out.cert = bio_text(bio);
  bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  out.key = bio_text(bio);
  if (issuer_cert != nullptr) {
    X509_free(issuer_cert);
    EVP_PKEY_free(signer);
  }
  X509_free(x);
  EVP_PKEY_free(pkey);
  return out;
}

}  // namespace portico::test_certs
