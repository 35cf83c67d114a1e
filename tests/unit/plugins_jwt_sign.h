// Test only: compact JWS signing and key generation with OpenSSL, for plugins_jwt_test.cc. Written apart from
// src/plugins/jwt.cc (its own digest table, its own DER-to-R||S conversion) so that a shared mistake cannot
// make signer and verifier agree. Functions abort the test binary on an OpenSSL failure.
#pragma once

#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/ec.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <string>
#include <string_view>

#include "plugins/base64.h"

namespace portico::plugins::jwt::signing {

inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "plugins_jwt_sign.h: %s failed\n", what);
    std::abort();
  }
}

struct KeyPair {
  std::string private_pem;  // PKCS#8
  std::string public_pem;   // SubjectPublicKeyInfo
};

inline std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return std::string(data, static_cast<size_t>(n));
}

// type: "RSA" (2048 bits), "P-256", "P-384", "P-521", "ED25519" or "ED448".
inline KeyPair generate_key(std::string_view type) {
  EVP_PKEY* pkey = nullptr;
  if (type == "RSA") {
    pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048});
  } else if (type.starts_with("P-")) {
    pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", std::string(type).c_str());
  } else {
    pkey = EVP_PKEY_Q_keygen(nullptr, nullptr, std::string(type).c_str());
  }
  require(pkey != nullptr, "keygen");
  KeyPair pair;
  BIO* priv = BIO_new(BIO_s_mem());
  BIO* pub = BIO_new(BIO_s_mem());
  require(PEM_write_bio_PrivateKey(priv, pkey, nullptr, nullptr, 0, nullptr, nullptr) == 1, "PEM private");
  require(PEM_write_bio_PUBKEY(pub, pkey) == 1, "PEM public");
  pair.private_pem = bio_text(priv);
  pair.public_pem = bio_text(pub);
  BIO_free(priv);
  BIO_free(pub);
  EVP_PKEY_free(pkey);
  return pair;
}

// One generated key per (type, slot), shared by every test of the binary: RSA generation is slow. Slot 1 is
// "another consumer's" key of the same type.
inline const KeyPair& test_key(const std::string& type, int slot = 0) {
  static std::map<std::pair<std::string, int>, KeyPair> keys;
  auto it = keys.find({type, slot});
  if (it == keys.end()) it = keys.emplace(std::make_pair(type, slot), generate_key(type)).first;
  return it->second;
}

inline std::string b64url(std::string_view bytes) {
  return b64::encode(bytes, b64::Alphabet::url, /*pad=*/false);
}

inline const EVP_MD* sign_digest(std::string_view alg) {
  if (alg.ends_with("256")) return EVP_sha256();
  if (alg.ends_with("384")) return EVP_sha384();
  if (alg.ends_with("512")) return EVP_sha512();
  return nullptr;  // EdDSA
}

// The signature bytes of `input` under `alg`: HS* take `key` as the HMAC secret, the others as a private
// key PEM. ES* signatures come out as JWS's R||S.
inline std::string sign_bytes(std::string_view alg, std::string_view input, std::string_view key) {
  const auto* in = reinterpret_cast<const unsigned char*>(input.data());
  if (alg.starts_with("HS")) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    require(HMAC(sign_digest(alg), key.data(), static_cast<int>(key.size()), in, input.size(), mac, &len) !=
                nullptr,
            "HMAC");
    return std::string(reinterpret_cast<char*>(mac), len);
  }
  BIO* bio = BIO_new_mem_buf(key.data(), static_cast<int>(key.size()));
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  require(pkey != nullptr, "PEM_read_bio_PrivateKey");
  EVP_MD_CTX* ctx = EVP_MD_CTX_new();
  EVP_PKEY_CTX* pctx = nullptr;
  require(EVP_DigestSignInit(ctx, &pctx, sign_digest(alg), nullptr, pkey) == 1, "EVP_DigestSignInit");
  if (alg.starts_with("PS")) {
    require(EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
                EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1,
            "PSS parameters");
  }
  size_t len = 0;
  require(EVP_DigestSign(ctx, nullptr, &len, in, input.size()) == 1, "EVP_DigestSign (size)");
  std::string sig(len, '\0');
  require(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(sig.data()), &len, in, input.size()) == 1,
          "EVP_DigestSign");
  sig.resize(len);
  EVP_MD_CTX_free(ctx);
  EVP_PKEY_free(pkey);
  if (!alg.starts_with("ES")) return sig;
  const size_t half = alg == "ES256" ? 32 : alg == "ES384" ? 48 : 66;
  const auto* p = reinterpret_cast<const unsigned char*>(sig.data());
  ECDSA_SIG* ecdsa = d2i_ECDSA_SIG(nullptr, &p, static_cast<long>(sig.size()));
  require(ecdsa != nullptr, "d2i_ECDSA_SIG");
  std::string raw(2 * half, '\0');
  auto* out = reinterpret_cast<unsigned char*>(raw.data());
  require(
      BN_bn2binpad(ECDSA_SIG_get0_r(ecdsa), out, static_cast<int>(half)) == static_cast<int>(half) &&
          BN_bn2binpad(ECDSA_SIG_get0_s(ecdsa), out + half, static_cast<int>(half)) == static_cast<int>(half),
      "BN_bn2binpad");
  ECDSA_SIG_free(ecdsa);
  return raw;
}

// A compact JWS of `payload_json` with header {"alg":"<alg>","typ":"JWT"} (or `header_json` when given).
inline std::string sign(std::string_view alg, std::string_view payload_json, std::string_view key,
                        std::string_view header_json = {}) {
  const std::string header =
      header_json.empty() ? R"({"alg":")" + std::string(alg) + R"(","typ":"JWT"})" : std::string(header_json);
  const std::string input = b64url(header) + "." + b64url(payload_json);
  return input + "." + b64url(sign_bytes(alg, input, key));
}

}  // namespace portico::plugins::jwt::signing
