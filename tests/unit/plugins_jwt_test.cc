// jwt: every algorithm signs and verifies, keys and algorithms are pinned per consumer, APISIX's own test
// tokens verify and get APISIX's messages, malformed tokens are refused at decode.
#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

#include "plugins/jwt.h"
#include "plugins_jwt_sign.h"

namespace portico::plugins::jwt {
namespace {

using signing::b64url;
using signing::sign;
using signing::test_key;

constexpr std::string_view kPayload = R"({"key":"user-key","exp":1879318541})";
constexpr const char* kAlgorithms[] = {"HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
                                       "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"};

std::string key_type(std::string_view alg) {
  if (alg == "ES256") return "P-256";
  if (alg == "ES384") return "P-384";
  if (alg == "ES512") return "P-521";
  if (alg == "EdDSA") return "ED25519";
  return "RSA";
}

// What a consumer signs with: slot 0 is the consumer under test, slot 1 another consumer.
std::string signing_key(std::string_view alg, int slot = 0) {
  if (alg.starts_with("HS")) return slot == 0 ? "my-secret-key" : "another-secret";
  return test_key(key_type(alg), slot).private_pem;
}

KeyConfig config_for(std::string_view alg, int slot = 0) {
  KeyConfig config;
  config.algorithm = std::string(alg);
  if (alg.starts_with("HS")) {
    config.secret = signing_key(alg, slot);
  } else {
    config.public_key = test_key(key_type(alg), slot).public_pem;
  }
  return config;
}

Verifier must_create(const KeyConfig& config) {
  std::string error;
  auto verifier = Verifier::create(config, error);
  if (!verifier) throw std::runtime_error("Verifier::create: " + error);
  return *verifier;
}

Token must_decode(std::string_view text) {
  Error error;
  auto token = decode(text, error);
  if (!token) throw std::runtime_error("decode: " + error.detail);
  return *token;
}

// The detail of a refused token (message checked to be APISIX's), or "accepted".
std::string refusal(std::string_view text) {
  Error error;
  if (decode(text, error)) return "accepted";
  EXPECT_EQ(error.message, kTokenInvalid);
  return error.detail;
}

std::string detail_of(const std::optional<Error>& error) {
  if (!error) return "ok";
  EXPECT_EQ(error->message, kFailedToVerify);
  return error->detail;
}

class EachAlgorithm : public ::testing::TestWithParam<const char*> {};

TEST_P(EachAlgorithm, SignsAndVerifies) {
  const std::string alg = GetParam();
  const Verifier verifier = must_create(config_for(alg));
  EXPECT_EQ(algorithm_name(verifier.algorithm()), alg);
  const Token token = must_decode(sign(alg, kPayload, signing_key(alg)));
  EXPECT_EQ(algorithm_name(token.alg), alg);
  EXPECT_EQ(detail_of(verifier.check(token)), "ok");
  EXPECT_TRUE(verifier.verify(token));
}

TEST_P(EachAlgorithm, RefusesAnotherConsumersKey) {
  const std::string alg = GetParam();
  const Token token = must_decode(sign(alg, kPayload, signing_key(alg, 1)));
  EXPECT_TRUE(must_create(config_for(alg, 1)).verify(token));
  EXPECT_TRUE(detail_of(must_create(config_for(alg)).check(token))
                  .starts_with("failed to verify jwt: signature mismatch: "));
}

TEST_P(EachAlgorithm, RefusesATamperedPayloadOrSignature) {
  const std::string alg = GetParam();
  const Verifier verifier = must_create(config_for(alg));
  const std::string good = sign(alg, kPayload, signing_key(alg));
  const size_t dot1 = good.find('.');
  const size_t dot2 = good.rfind('.');
  const std::string other_payload = b64url(R"({"key":"admin-key","exp":1879318541})");
  EXPECT_FALSE(verifier.verify(must_decode(good.substr(0, dot1 + 1) + other_payload + good.substr(dot2))));

  std::string signature = must_decode(good).signature;
  signature[signature.size() / 3] ^= 0x01;
  EXPECT_FALSE(verifier.verify(must_decode(good.substr(0, dot2 + 1) + b64url(signature))));
  signature[signature.size() / 3] ^= 0x01;
  EXPECT_FALSE(verifier.verify(must_decode(good.substr(0, dot2 + 1) + b64url(signature + "x"))));
  EXPECT_TRUE(verifier.verify(must_decode(good.substr(0, dot2 + 1) + b64url(signature))));
}

// Pinning: whatever else it names, signed with that algorithm's own valid key, the token is refused.
TEST_P(EachAlgorithm, RefusesEveryOtherAlgorithm) {
  const std::string alg = GetParam();
  const Verifier verifier = must_create(config_for(alg));
  for (const char* other : kAlgorithms) {
    if (other == alg) continue;
    const Token token = must_decode(sign(other, kPayload, signing_key(other)));
    EXPECT_EQ(detail_of(verifier.check(token)),
              "failed to verify jwt: algorithm " + std::string(other) + " is not the consumer's " + alg);
  }
}

INSTANTIATE_TEST_SUITE_P(Jwt, EachAlgorithm, ::testing::ValuesIn(kAlgorithms),
                         [](const ::testing::TestParamInfo<const char*>& info) {
                           return std::string(info.param);
                         });

TEST(JwtVerify, EdDsaTakesEd448Keys) {
  KeyConfig config;
  config.algorithm = "EdDSA";
  config.public_key = test_key("ED448").public_pem;
  EXPECT_TRUE(
      must_create(config).verify(must_decode(sign("EdDSA", kPayload, test_key("ED448").private_pem))));
  EXPECT_FALSE(
      must_create(config).verify(must_decode(sign("EdDSA", kPayload, test_key("ED25519").private_pem))));
}

TEST(JwtVerify, EcdsaTakesOnlyRawSignaturesOfTheCurveSize) {
  const Verifier verifier = must_create(config_for("ES256"));
  const std::string good = sign("ES256", kPayload, signing_key("ES256"));
  const std::string input = good.substr(0, good.rfind('.'));
  const std::string raw = must_decode(good).signature;
  ASSERT_EQ(raw.size(), 64u);
  EXPECT_FALSE(verifier.verify(must_decode(input + "." + b64url(raw.substr(0, 63)))));
  EXPECT_FALSE(verifier.verify(must_decode(input + "." + b64url(std::string(1, '\0') + raw))));
  // What OpenSSL itself produces (DER) is not a JWS signature.
  std::string der;
  {
    const std::string pem = signing_key("ES256");
    BIO* bio = BIO_new_mem_buf(pem.data(), static_cast<int>(pem.size()));
    EVP_PKEY* pkey = PEM_read_bio_PrivateKey(bio, nullptr, nullptr, nullptr);
    BIO_free(bio);
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    size_t len = 128;
    der.resize(len);
    ASSERT_EQ(EVP_DigestSignInit(ctx, nullptr, EVP_sha256(), nullptr, pkey), 1);
    ASSERT_EQ(EVP_DigestSign(ctx, reinterpret_cast<unsigned char*>(der.data()), &len,
                             reinterpret_cast<const unsigned char*>(input.data()), input.size()),
              1);
    der.resize(len);
    EVP_MD_CTX_free(ctx);
    EVP_PKEY_free(pkey);
  }
  EXPECT_FALSE(verifier.verify(must_decode(input + "." + b64url(der))));
}

// ---- algorithm confusion ------------------------------------------------------------------------------

// The classic forgery: the attacker knows the RS256 consumer's public key, HMAC-signs a token with that PEM
// text and names HS256. APISIX verifies with the token's alg and the consumer's key material, so accepts it.
TEST(JwtAlgorithmConfusion, Rs256ConsumerRefusesHmacOverItsPublicKey) {
  const std::string pem = test_key("RSA").public_pem;
  KeyConfig rs;
  rs.algorithm = "RS256";
  rs.public_key = pem;
  const Token forged = must_decode(sign("HS256", R"({"key":"user-key"})", pem));
  EXPECT_EQ(detail_of(must_create(rs).check(forged)),
            "failed to verify jwt: algorithm HS256 is not the consumer's RS256");
  // The forgery is a valid HMAC under the PEM, so only the pinning refuses it.
  KeyConfig hs;
  hs.secret = pem;
  EXPECT_TRUE(must_create(hs).verify(forged));
}

TEST(JwtAlgorithmConfusion, Hs256ConsumerRefusesRs256Token) {
  KeyConfig hs;
  hs.secret = test_key("RSA").public_pem;  // even a consumer whose secret happens to be the public key
  const Token token = must_decode(sign("RS256", kPayload, test_key("RSA").private_pem));
  EXPECT_EQ(detail_of(must_create(hs).check(token)),
            "failed to verify jwt: algorithm RS256 is not the consumer's HS256");
  EXPECT_TRUE(must_create(config_for("RS256")).verify(token));
}

// ---- APISIX's own test tokens (t/plugin/jwt-auth*.t) and messages ----------------------------------------

constexpr std::string_view kApisixHs256 =
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJrZXkiOiJ1c2VyLWtleSIsImV4cCI6MTg3OTMxODU0MX0."
    "fNtFJnNmJgzbiYmGB0Yjvm-l6A6M4jRV1l4mnVFSYjs";

TEST(JwtApisix, Hs256TokenVerifiesWithItsSecret) {
  const Token token = must_decode(kApisixHs256);
  Error error;
  EXPECT_EQ(consumer_key(token, "key", error).value_or("none"), "user-key");
  EXPECT_TRUE(must_create(config_for("HS256")).verify(token));
  EXPECT_FALSE(check_time(token, 1700000000, 0));
}

TEST(JwtApisix, Hs512TokenVerifiesWithItsSecret) {
  const Token token = must_decode(
      "eyJhbGciOiJIUzUxMiIsInR5cCI6IkpXVCJ9.eyJrZXkiOiJ1c2VyLWtleS1IUzUxMiIsIm5iZiI6MTcyNzI3NDk4M30."
      "emzmjIbFqkRAr55YW5YobdXDxYWiMuUNLPooE5G_bbme1ul19p1dKW7ESrlqvr4BPJRKThm4PnkNC4h9xSJpBQ");
  KeyConfig config;
  config.algorithm = "HS512";
  config.secret = "my-secret-key";
  EXPECT_TRUE(must_create(config).verify(token));
}

TEST(JwtApisix, Base64SecretAndTheSignatureMismatchLine) {
  KeyConfig config;
  config.secret = "fo4XKdZ1xSrIZyms4q2BwPrW5lMpls9qqy5tiAk2esc=";
  config.base64_secret = true;
  const Verifier verifier = must_create(config);
  EXPECT_TRUE(verifier.verify(
      must_decode("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJrZXkiOiJ1c2VyLWtleSIsImV4cCI6MTg3OTMxODU0MX0."
                  "_kNmXeH1uYVAvApFTONk2Z3Gh-a4XfGrjmqd_ahoOI0")));
  EXPECT_EQ(detail_of(verifier.check(must_decode(kApisixHs256))),
            "failed to verify jwt: signature mismatch: fNtFJnNmJgzbiYmGB0Yjvm-l6A6M4jRV1l4mnVFSYjs");
}

TEST(JwtApisix, Rs256TokenVerifiesWithItsPublicKey) {
  KeyConfig config;
  config.algorithm = "RS256";
  config.public_key =
      "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEAv5LHjZ4FxQ9jk6eQGDRt\n"
      "oRwFVkLq+dUBebs97hrzirokVr2B+RoxqdLfKAM+AsN2DadawZ2GqlCV9DL0/gz6\n"
      "nWSqTQpWbQ8c7CrF31EkIHUYRzZvWy17K3WC9Odk/gM1FVd0HbZ2Rjuqj9ADeeqx\n"
      "nj9npDqKrMODOENy31SqZNerWZsdgGkML5JYbX5hbI2L9LREvRU21fDgSfGL6Mw4\n"
      "Naxnnzcvll4yqwrBELSeDZEAt0+e/p1dO7moxF+b1pFkh9vQl6zGvnvf8fOqn5Ex\n"
      "tLHXVzgx752PHMwmuj9mO1ko6p8FOM0JHDnooI+5rwK4j3I27Ho5nnatVWUaxK4U\n8wIDAQAB\n-----END PUBLIC KEY-----";
  EXPECT_TRUE(must_create(config).verify(must_decode(
      "eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJrZXkiOiJ1c2VyLWtleS1yczI1NiIsIm5iZiI6MTcyNzI3NDk4M30."
      "Zvp8dXefvGXrKgeoaNsA3sbV_3fw1w6Te7a0B_UANzef7gGJwvlnD6c3-f4yAy7GPgNzP_H1-atcF-sgLHAYpUa14XKe22a9S_BJSo"
      "QszoZuqGgpnGcjSzDMK9JX3FLUtzOFMQR5C4_3d7_z0NlepNo2xdQ6IQj0SvS1jrNwydpA9L89N07id3EO739uNw339g78N9QHP-j8"
      "nWItfbjo31xefCWTHtcloGkfaJOhcr06qmSbrivBU1AuPA8T3ZVumqw6fcRJzrvQJdKEfVyP-IPUtUy8SM1yLqstaKojJtU3A2HKae"
      "b4fycwHXxtl52xhzIshr_I3iUhX_ak-z7m0A")));
}

TEST(JwtApisix, ExpiredTokenMessage) {
  const Token token = must_decode(
      "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJrZXkiOiJ1c2VyLWtleSIsImV4cCI6MTU2Mzg3MDUwMX0."
      "pPNVvh-TQsdDzorRwa-uuiLYiEBODscp9wv0cwD6c68");
  EXPECT_EQ(detail_of(check_time(token, 1700000000, 0)),
            "failed to verify jwt: 'exp' claim expired at Tue, 23 Jul 2019 08:28:21 GMT");
}

TEST(JwtApisix, InvalidHeaderMessage) {
  EXPECT_EQ(
      refusal("invalid-eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJrZXkiOiJ1c2VyLWtleSIsImV4cCI6MTU2Mzg3MDUwMX0."
              "pPNVvh-TQsdDzorRwa-uuiLYiEBODscp9wv0cwD6c68"),
      "JWT token invalid: invalid header: invalid-eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9");
}

TEST(JwtApisix, MessagesAreApisixs) {
  EXPECT_EQ(kMissingToken, "Missing JWT token in request");
  EXPECT_EQ(kTokenInvalid, "JWT token invalid");
  EXPECT_EQ(kMissingUserKey, "missing user key in JWT token");
  EXPECT_EQ(kInvalidUserKey, "Invalid user key in JWT token");
  EXPECT_EQ(kFailedToVerify, "failed to verify jwt");
}

TEST(JwtApisix, StripBearer) {
  EXPECT_EQ(strip_bearer("Bearer abc"), "abc");
  EXPECT_EQ(strip_bearer("bearer abc"), "abc");
  EXPECT_EQ(strip_bearer("BEARER abc"), "BEARER abc");  // APISIX strips these two spellings only
  EXPECT_EQ(strip_bearer("abc"), "abc");
  EXPECT_EQ(strip_bearer("Bearer "), "");
}

// ---- consumer key -------------------------------------------------------------------------------------

TEST(JwtConsumerKey, AsApisixLooksItUp) {
  const std::string h = b64url(R"({"alg":"HS256"})") + ".";
  auto key_of = [&](std::string_view payload, std::string_view claim = "key") {
    const Token token = must_decode(h + b64url(payload) + ".c2ln");
    Error error;
    auto key = consumer_key(token, claim, error);
    return key ? "key " + std::string(*key) : error.message;
  };
  EXPECT_EQ(key_of(R"({"key":"user-key"})"), "key user-key");
  EXPECT_EQ(key_of(R"({"sub":"alice","key":"x"})", "sub"), "key alice");
  EXPECT_EQ(key_of(R"({"key":""})"), "key ");  // no consumer has an empty key; the lookup refuses it
  EXPECT_EQ(key_of(R"({"sub":"alice"})"), kMissingUserKey);
  EXPECT_EQ(key_of(R"({"key":false})"), kMissingUserKey);
  for (const char* p :
       {R"({"key":null})", R"({"key":true})", R"({"key":123})", R"({"key":["a"]})", R"({"key":{"a":1}})"}) {
    EXPECT_EQ(key_of(p), kInvalidUserKey) << p;
  }
}

}  // namespace
}  // namespace portico::plugins::jwt
