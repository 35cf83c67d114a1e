// jwt::decode refuses every malformed token with APISIX's message, and check_time applies APISIX's exp/nbf
// rules and words them as APISIX does.
#include <gtest/gtest.h>

#include <string>

#include "base/json_limits.h"
#include "plugins/jwt.h"
#include "plugins_jwt_sign.h"

namespace portico::plugins::jwt {
namespace {

using signing::b64url;
using signing::sign;

const std::string kHeader = b64url(R"({"alg":"HS256","typ":"JWT"})");
const std::string kBody = b64url(R"({"key":"user-key"})");
const std::string kSig = b64url("signature");

std::string token(std::string_view header_json, std::string_view payload_json) {
  return b64url(header_json) + "." + b64url(payload_json) + "." + kSig;
}

std::string refusal(std::string_view text) {
  Error error;
  auto decoded = decode(text, error);
  if (decoded) return "accepted";
  EXPECT_EQ(error.message, kTokenInvalid);
  return error.detail;
}

TEST(JwtDecode, AcceptsAWellFormedToken) {
  Error error;
  const std::string text = kHeader + "." + kBody + "." + kSig;
  auto t = decode(text, error);
  ASSERT_TRUE(t) << error.detail;
  EXPECT_EQ(t->alg, Algorithm::HS256);
  EXPECT_EQ(t->signing_input, kHeader + "." + kBody);
  EXPECT_EQ(t->signature, "signature");
  EXPECT_EQ(t->signature_text, kSig);
  EXPECT_EQ(t->header["typ"], "JWT");
  EXPECT_EQ(t->payload["key"], "user-key");
  EXPECT_EQ(t->exp.state, TimeClaim::State::absent);
}

TEST(JwtDecode, RefusesAnythingButThreeNonEmptyParts) {
  const std::string bad = "JWT token invalid: invalid jwt string";
  for (const std::string& text :
       {std::string(), std::string("abc"), kHeader + "." + kBody, kHeader + "." + kBody + "." + kSig + ".x",
        kHeader + ".x." + kBody + ".y." + kSig, kHeader + ".." + kSig, "." + kBody + "." + kSig,
        kHeader + "." + kBody + ".", std::string("..")}) {
    EXPECT_EQ(refusal(text), bad) << text;
  }
}

TEST(JwtDecode, RefusesAlgNoneInAnyCase) {
  for (const char* none : {"none", "NONE", "None", "nOnE"}) {
    const std::string header = std::string(R"({"alg":")") + none + "\"}";
    EXPECT_EQ(refusal(token(header, R"({"key":"k"})")),
              std::string("JWT token invalid: unsupported alg: ") + none);
    // The unsecured form has an empty signature: not even three parts.
    EXPECT_EQ(refusal(b64url(header) + "." + kBody + "."), "JWT token invalid: invalid jwt string");
  }
}

TEST(JwtDecode, RefusesUnknownMissingAndMiscasedAlgs) {
  for (const char* alg : {"hs256", "HS1", "RS1", "RSA-OAEP", "dir", "ES256K", "Ed25519", ""}) {
    EXPECT_EQ(refusal(token(std::string(R"({"alg":")") + alg + "\"}", "{}")),
              std::string("JWT token invalid: unsupported alg: ") + alg);
  }
  for (const char* header :
       {R"({"typ":"JWT"})", R"({"alg":256})", R"({"alg":null})", R"({"alg":["HS256"]})"}) {
    EXPECT_EQ(refusal(token(header, "{}")), "JWT token invalid: missing alg in header") << header;
  }
}

TEST(JwtDecode, RefusesCrit) {
  const std::string header = R"({"alg":"HS256","crit":["exp"],"exp":1})";
  EXPECT_EQ(refusal(sign("HS256", R"({"key":"k"})", "my-secret-key", header)),
            "JWT token invalid: unsupported crit header");
  EXPECT_EQ(refusal(token(R"({"alg":"HS256","crit":[]})", "{}")),
            "JWT token invalid: unsupported crit header");
}

TEST(JwtDecode, RefusesLooseBase64) {
  // Padding, the standard alphabet, whitespace and non-canonical trailing bits: each part in turn.
  EXPECT_EQ(refusal(b64url("{\"alg\":\"HS256\"}") + "=." + kBody + "." + kSig),
            "JWT token invalid: invalid header: eyJhbGciOiJIUzI1NiJ9=");
  EXPECT_EQ(refusal(kHeader + ".e31." + kSig), "JWT token invalid: invalid payload: e31");  // "{}" is e30
  EXPECT_EQ(refusal(kHeader + ".e30." + kSig), "accepted");
  EXPECT_EQ(refusal(kHeader + ".e30+." + kSig), "JWT token invalid: invalid payload: e30+");
  EXPECT_EQ(refusal(kHeader + "." + kBody + ".c2lnbmF0dXJl/w"),
            "JWT token invalid: invalid signature: c2lnbmF0dXJl/w");
  EXPECT_EQ(refusal(kHeader + "." + kBody + "." + kSig + "=="),
            "JWT token invalid: invalid signature: " + kSig + "==");
  EXPECT_EQ(refusal(kHeader + "." + kBody + "." + kSig + "\n"),
            "JWT token invalid: invalid signature: " + kSig + "?");
  EXPECT_EQ(refusal(" " + kHeader + "." + kBody + "." + kSig),
            "JWT token invalid: invalid header:  " + kHeader);
  EXPECT_EQ(refusal(kHeader + "." + kBody + ".a"), "JWT token invalid: invalid signature: a");  // 4k+1
}

TEST(JwtDecode, RefusesHeadersAndPayloadsThatAreNotStrictJsonObjects) {
  for (const char* json :
       {"[]", "\"x\"", "1", "null", "true", R"({"alg":"HS256")", "{'alg':'HS256'}", R"({"alg":"HS256"} {})",
        R"({"alg":"HS256","alg":"HS256"})", "{\"alg\":\"HS256\xff\"}"}) {
    EXPECT_TRUE(refusal(token(json, "{}")).starts_with("JWT token invalid: invalid header: ")) << json;
    EXPECT_TRUE(
        refusal(token(R"({"alg":"HS256"})", json)).starts_with("JWT token invalid: invalid payload: "))
        << json;
  }
}

TEST(JwtDecode, RefusesDuplicateMembersAtAnyDepthOnly) {
  EXPECT_EQ(refusal(token(R"({"alg":"HS256","alg":"none"})", "{}")).substr(0, 35),
            "JWT token invalid: invalid header: ");
  EXPECT_NE(refusal(token(R"({"alg":"HS256"})", R"({"key":"a","key":"b"})")), "accepted");
  EXPECT_NE(refusal(token(R"({"alg":"HS256"})", R"({"a":[{"b":1,"b":2}]})")), "accepted");
  EXPECT_EQ(refusal(token(R"({"alg":"HS256"})", R"({"a":{"a":{"a":1}},"b":[{"a":1},{"a":2}]})")), "accepted");
}

TEST(JwtDecode, BoundsNesting) {
  auto nested = [](size_t levels) {
    std::string s;
    for (size_t i = 1; i < levels; ++i) s += "{\"a\":";
    s += "{}";
    s.append(levels - 1, '}');
    return s;
  };
  EXPECT_EQ(refusal(token(R"({"alg":"HS256"})", nested(base::kMaxJsonNesting))), "accepted");
  EXPECT_NE(refusal(token(R"({"alg":"HS256"})", nested(base::kMaxJsonNesting + 1))), "accepted");
}

TEST(JwtDecode, BoundsLength) {
  const std::string prefix = kHeader + ".";
  const std::string suffix = "." + kSig;
  // A payload whose encoding makes the token exactly kMaxTokenBytes long, then one byte longer.
  std::string claims = R"({"pad":")";
  while (b64url(claims + "\"}").size() + prefix.size() + suffix.size() < kMaxTokenBytes) claims += 'x';
  const std::string exact = prefix + b64url(claims + "\"}") + suffix;
  ASSERT_EQ(exact.size(), kMaxTokenBytes);
  EXPECT_EQ(refusal(exact), "accepted");
  EXPECT_EQ(refusal(exact + "A"), "JWT token invalid: token longer than 8192 bytes");
  EXPECT_EQ(refusal(std::string(1 << 20, 'A')), "JWT token invalid: token longer than 8192 bytes");
}

TEST(JwtDecode, QuotesAtMostAPrintableLineOfTheToken) {
  const std::string long_part(300, '*');
  EXPECT_EQ(refusal(long_part + "." + kBody + "." + kSig),
            "JWT token invalid: invalid header: " + std::string(kMaxQuotedBytes, '*') + "...");
  EXPECT_EQ(refusal("a\r\nb\x01\x7f." + kBody + "." + kSig), "JWT token invalid: invalid header: a??b??");
}

TEST(JwtDecode, ReadsTimeClaims) {
  auto claims = [](std::string_view payload) {
    Error error;
    auto t = decode(token(R"({"alg":"HS256"})", payload), error);
    EXPECT_TRUE(t) << error.detail;
    return t ? std::make_pair(t->exp, t->nbf) : std::make_pair(TimeClaim{}, TimeClaim{});
  };
  auto [exp, nbf] = claims(R"({"exp":1879318541,"nbf":1.5})");
  EXPECT_EQ(exp.state, TimeClaim::State::number);
  EXPECT_EQ(exp.value, 1879318541.0);
  EXPECT_EQ(nbf.value, 1.5);
  EXPECT_EQ(claims(R"({"exp":"1879318541"})").first.state, TimeClaim::State::not_number);
  EXPECT_EQ(claims(R"({"nbf":null})").second.state, TimeClaim::State::not_number);
}

// ---- check_time -----------------------------------------------------------------------------------------

Token with_claims(std::string_view payload) {
  Error error;
  auto t = decode(token(R"({"alg":"HS256"})", payload), error);
  if (!t) throw std::runtime_error(error.detail);
  return *t;
}

std::string time_result(std::string_view payload, int64_t now, int64_t grace, ClaimsToVerify claims = {}) {
  auto error = check_time(with_claims(payload), now, grace, claims);
  if (!error) return "ok";
  EXPECT_EQ(error->message, kFailedToVerify);
  return error->detail;
}

TEST(JwtCheckTime, ExpIsStrictlyAfterNowMinusGrace) {
  const int64_t now = 1563870501;
  const std::string expired = "failed to verify jwt: 'exp' claim expired at Tue, 23 Jul 2019 08:28:21 GMT";
  EXPECT_EQ(time_result(R"({"exp":1563870502})", now, 0), "ok");
  EXPECT_EQ(time_result(R"({"exp":1563870501})", now, 0), expired);
  EXPECT_EQ(time_result(R"({"exp":1563870501})", now + 9, 10), "ok");
  EXPECT_EQ(time_result(R"({"exp":1563870501})", now + 10, 10), expired);
  EXPECT_EQ(time_result(R"({"exp":1563870501.5})", now, 0), "ok");
  EXPECT_EQ(time_result(R"({"exp":1563870501.9})", now + 1, 0), expired);  // the date is truncated
}

TEST(JwtCheckTime, NbfIsStrictlyBeforeNowPlusGrace) {
  const int64_t nbf = 1727274983;
  const std::string early = "failed to verify jwt: 'nbf' claim not valid until Wed, 25 Sep 2024 14:36:23 GMT";
  EXPECT_EQ(time_result(R"({"nbf":1727274983})", nbf + 1, 0), "ok");
  EXPECT_EQ(time_result(R"({"nbf":1727274983})", nbf, 0), early);  // APISIX: nbf == now is too early
  EXPECT_EQ(time_result(R"({"nbf":1727274983})", nbf - 4, 5), "ok");
  EXPECT_EQ(time_result(R"({"nbf":1727274983})", nbf - 5, 5), early);
}

TEST(JwtCheckTime, ChecksOnlyWhatIsPresentAndConfigured) {
  EXPECT_EQ(time_result(R"({"key":"k"})", 1000, 0), "ok");
  EXPECT_EQ(time_result(R"({"exp":10})", 1000, 0, {.exp = false, .nbf = true}), "ok");
  EXPECT_EQ(time_result(R"({"nbf":5000})", 1000, 0, {.exp = true, .nbf = false}), "ok");
  EXPECT_EQ(time_result(R"({"exp":10,"nbf":5000})", 1000, 0),
            "failed to verify jwt: 'exp' claim expired at Thu, 01 Jan 1970 00:00:10 GMT");  // exp first
}

TEST(JwtCheckTime, RefusesClaimsThatAreNotNumbers) {
  for (const char* exp : {R"("2000")", "null", "false", "true", "[]", "{}"}) {
    EXPECT_EQ(time_result(std::string(R"({"exp":)") + exp + "}", 1000, 0),
              "failed to verify jwt: claim exp is not a number")
        << exp;
  }
  EXPECT_EQ(time_result(R"({"nbf":"0"})", 1000, 0), "failed to verify jwt: claim nbf is not a number");
}

TEST(JwtCheckTime, HugeValuesStayNumbers) {
  EXPECT_EQ(time_result(R"({"exp":1e300})", 1000, 0), "ok");
  EXPECT_TRUE(time_result(R"({"exp":-1e300})", 1000, 0)
                  .starts_with("failed to verify jwt: 'exp' claim expired at -1000"));
  EXPECT_TRUE(time_result(R"({"nbf":1e20})", 1000, 0)
                  .starts_with("failed to verify jwt: 'nbf' claim not valid until 100000000000000000000"));
}

}  // namespace
}  // namespace portico::plugins::jwt
