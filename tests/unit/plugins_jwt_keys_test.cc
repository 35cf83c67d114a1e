// jwt::Verifier::create: which consumer configurations give a verifier, with APISIX's messages for the ones
// that do not; and a built verifier is shared read-only between threads.
#include <gtest/gtest.h>

#include <openssl/encoder.h>

#include <atomic>
#include <string>
#include <thread>
#include <vector>

#include "plugins/jwt.h"
#include "plugins_jwt_sign.h"

namespace portico::plugins::jwt {
namespace {

using signing::sign;
using signing::test_key;

std::string create_error(const KeyConfig& config) {
  std::string error;
  auto verifier = Verifier::create(config, error);
  return verifier ? "created" : error;
}

KeyConfig pem_config(std::string alg, std::string pem) {
  KeyConfig config;
  config.algorithm = std::move(alg);
  config.public_key = std::move(pem);
  return config;
}

TEST(JwtKeys, HmacNeedsASecretAndDefaultsToHs256) {
  KeyConfig config;
  EXPECT_EQ(create_error(config), R"(property "secret" is required when "algorithm" is "HS256")");
  config.secret = "s";
  std::string error;
  auto verifier = Verifier::create(config, error);
  ASSERT_TRUE(verifier) << error;
  EXPECT_EQ(verifier->algorithm(), Algorithm::HS256);
}

TEST(JwtKeys, RefusesAlgorithmsApisixDoesNotList) {
  for (const char* alg : {"none", "hs256", "HS1", "RS1", "ES256K", ""}) {
    const KeyConfig config{
        .algorithm = alg, .secret = std::string("s"), .base64_secret = false, .public_key = {}};
    EXPECT_EQ(create_error(config),
              "property \"algorithm\" validation failed: matches none of the enum values");
  }
}

TEST(JwtKeys, Base64SecretMustBeStrictStandardBase64) {
  KeyConfig config;
  config.base64_secret = true;
  for (const char* secret :
       {"{^c0j4&]2!=J=", "fo4XKdZ1xSrIZyms4q2BwPrW5lMpls9qqy5tiAk2esc", "a-b_", "YQ==x", "===="}) {
    config.secret = secret;
    const std::string error = create_error(config);
    if (std::string_view(secret) == "fo4XKdZ1xSrIZyms4q2BwPrW5lMpls9qqy5tiAk2esc") {
      EXPECT_EQ(error, "created");  // padding is optional
    } else {
      EXPECT_EQ(error, "base64_secret required but the secret is not in base64 format") << secret;
    }
  }
  // The decoded bytes are the key: a token signed with them verifies, one signed with the text does not.
  config.secret = "AAECAwQ=";
  std::string error;
  auto verifier = Verifier::create(config, error);
  ASSERT_TRUE(verifier) << error;
  Error decode_error;
  EXPECT_TRUE(verifier->verify(*decode(sign("HS256", "{}", std::string("\0\1\2\3\4", 5)), decode_error)));
  EXPECT_FALSE(verifier->verify(*decode(sign("HS256", "{}", "AAECAwQ="), decode_error)));
}

TEST(JwtKeys, PublicKeyAlgorithmsNeedAReadablePem) {
  EXPECT_EQ(create_error(pem_config("RS256", "")), "missing valid public key");
  EXPECT_EQ(create_error(pem_config("ES256", "not a key")),
            "invalid public key: not a PEM key OpenSSL can read");
  std::string truncated = test_key("RSA").public_pem;
  truncated.resize(truncated.size() / 2);
  EXPECT_EQ(create_error(pem_config("RS256", truncated)),
            "invalid public key: not a PEM key OpenSSL can read");
}

TEST(JwtKeys, KeyTypeMustFitTheAlgorithm) {
  EXPECT_EQ(create_error(pem_config("RS256", test_key("P-256").public_pem)),
            "invalid public key: RS256 needs an RSA key");
  EXPECT_EQ(create_error(pem_config("PS384", test_key("ED25519").public_pem)),
            "invalid public key: PS384 needs an RSA key");
  EXPECT_EQ(create_error(pem_config("ES256", test_key("RSA").public_pem)),
            "invalid public key: ES256 needs an EC key on P-256");
  EXPECT_EQ(create_error(pem_config("ES256", test_key("P-384").public_pem)),
            "invalid public key: ES256 needs an EC key on P-256");
  EXPECT_EQ(create_error(pem_config("ES384", test_key("P-521").public_pem)),
            "invalid public key: ES384 needs an EC key on P-384");
  EXPECT_EQ(create_error(pem_config("ES512", test_key("P-256").public_pem)),
            "invalid public key: ES512 needs an EC key on P-521");
  EXPECT_EQ(create_error(pem_config("EdDSA", test_key("P-256").public_pem)),
            "invalid public key: EdDSA needs an Ed25519 or Ed448 key");
  EXPECT_EQ(create_error(pem_config("ES512", test_key("P-521").public_pem)), "created");
}

TEST(JwtKeys, TakesAPrivateKeyPemAsApisixDoes) {
  KeyConfig config = pem_config("RS256", test_key("RSA").private_pem);
  std::string error;
  auto verifier = Verifier::create(config, error);
  ASSERT_TRUE(verifier) << error;
  Error decode_error;
  EXPECT_TRUE(verifier->verify(*decode(sign("RS256", "{}", test_key("RSA").private_pem), decode_error)));
}

TEST(JwtKeys, TakesPkcs1RsaPublicKeys) {
  BIO* bio = BIO_new_mem_buf(test_key("RSA").private_pem.data(), -1);
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
  BIO_free(bio);
  ASSERT_NE(pkey, nullptr);
  OSSL_ENCODER_CTX* ectx =
      OSSL_ENCODER_CTX_new_for_pkey(pkey, EVP_PKEY_PUBLIC_KEY, "PEM", "type-specific", nullptr);
  unsigned char* data = nullptr;
  size_t len = 0;
  ASSERT_EQ(OSSL_ENCODER_to_data(ectx, &data, &len), 1);
  const std::string pem(reinterpret_cast<char*>(data), len);
  OPENSSL_free(data);
  OSSL_ENCODER_CTX_free(ectx);
  EVP_PKEY_free(pkey);
  ASSERT_TRUE(pem.starts_with("-----BEGIN RSA PUBLIC KEY-----")) << pem;
  std::string error;
  auto verifier = Verifier::create(pem_config("PS256", pem), error);
  ASSERT_TRUE(verifier) << error;
  Error decode_error;
  EXPECT_TRUE(verifier->verify(*decode(sign("PS256", "{}", test_key("RSA").private_pem), decode_error)));
}

TEST(JwtKeys, RefusesEncryptedPemsWithoutPrompting) {
  BIO* in = BIO_new_mem_buf(test_key("P-256").private_pem.data(), -1);
  EVP_PKEY* pkey = PEM_read_bio_PrivateKey(in, nullptr, nullptr, nullptr);
  BIO_free(in);
  BIO* out = BIO_new(BIO_s_mem());
  char pass[] = "passphrase";
  ASSERT_EQ(
      PEM_write_bio_PKCS8PrivateKey(out, pkey, EVP_aes_256_cbc(), pass, sizeof pass - 1, nullptr, nullptr),
      1);
  const std::string encrypted = signing::bio_text(out);
  BIO_free(out);
  EVP_PKEY_free(pkey);
  EXPECT_EQ(create_error(pem_config("ES256", encrypted)),
            "invalid public key: not a PEM key OpenSSL can read");
}

TEST(JwtKeys, CopiesShareTheKeyAcrossThreads) {
  std::string error;
  auto verifier = Verifier::create(pem_config("ES256", test_key("P-256").public_pem), error);
  ASSERT_TRUE(verifier) << error;
  Error decode_error;
  const Token good = *decode(sign("ES256", R"({"key":"k"})", test_key("P-256").private_pem), decode_error);
  const Token bad = *decode(sign("ES256", R"({"key":"k"})", test_key("P-256", 1).private_pem), decode_error);
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i) {
    threads.emplace_back([copy = *verifier, &good, &bad, &wrong] {
      for (int n = 0; n < 200; ++n) {
        if (!copy.verify(good) || copy.verify(bad)) wrong.fetch_add(1);
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(wrong.load(), 0);
}

}  // namespace
}  // namespace portico::plugins::jwt
