// JSON Web Tokens as APISIX 3.x jwt-auth takes them: compact JWS (RFC 7515) decoding, signature checks
// pinned to the consumer's configured algorithm, and the exp/nbf checks, each refusal worded as APISIX words
// it. Standalone: no dependency on the plugin pipeline, which calls, in APISIX's order,
//   strip_bearer() -> decode() -> consumer_key() -> (find the consumer by key) -> its Verifier::check()
//   -> check_time().
//
// Every refusal is an Error. `message` is what APISIX puts in the 401 body ({"message": ...}); `detail` is
// the longer reason APISIX logs at warn level, and answers instead of `message` when jwt-auth runs under
// multi-auth. A detail quotes at most kMaxQuotedBytes of the token, printable ASCII only (anything else as
// '?'), so that it stays one log line. The plugin only forwards these strings.
//
// Algorithm pinning: a consumer's Verifier holds one algorithm, the consumer's configured one, and refuses a
// token whose header names any other. The key never comes from the token (jwk, jku, x5c, x5u and kid are
// ignored). APISIX 3.x instead verifies with the algorithm the token names, which lets anyone who knows an
// RS256 consumer's public key forge tokens by HMAC-signing them with that PEM text as the HS256 secret.
//
// Thread-safety: decode(), consumer_key(), check_time() and strip_bearer() are pure functions. A Verifier is
// built once per consumer (snapshot build) and immutable afterwards: any thread may call check() at the same
// time as others, and copies share the same OpenSSL key, read-only.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace portico::plugins::jwt {

// The longest token decode() reads; a longer one is refused before any decoding. Real tokens are well under
// 2 KiB; a request header line is bounded by the HTTP parser anyway.
inline constexpr size_t kMaxTokenBytes = 8192;
// How much of a token part a detail quotes.
inline constexpr size_t kMaxQuotedBytes = 128;

// APISIX's 401 messages. kMissingToken and kInvalidUserKey (no consumer has the key) are the plugin's to
// send.
inline constexpr std::string_view kMissingToken = "Missing JWT token in request";
inline constexpr std::string_view kTokenInvalid = "JWT token invalid";
inline constexpr std::string_view kMissingUserKey = "missing user key in JWT token";
inline constexpr std::string_view kInvalidUserKey = "Invalid user key in JWT token";
inline constexpr std::string_view kFailedToVerify = "failed to verify jwt";

struct Error {
  std::string message;  // the 401 body's "message"
  std::string detail;   // the log line
};

// The algorithms APISIX 3.x jwt-auth accepts for a consumer. Names are case-sensitive, as in RFC 7518.
enum class Algorithm : uint8_t {
  HS256,
  HS384,
  HS512,
  RS256,
  RS384,
  RS512,
  PS256,
  PS384,
  PS512,
  ES256,
  ES384,
  ES512,
  EdDSA
};
std::optional<Algorithm> algorithm_from_name(std::string_view name);
std::string_view algorithm_name(Algorithm alg);
inline bool is_hmac(Algorithm alg) {
  return alg == Algorithm::HS256 || alg == Algorithm::HS384 || alg == Algorithm::HS512;
}

// A registered time claim: absent, a JSON number (seconds since the epoch, fractions allowed), or present
// with another type (which check_time refuses, as APISIX does; a `false` APISIX skips, this refuses too).
struct TimeClaim {
  enum class State : uint8_t { absent, number, not_number };
  State state = State::absent;
  double value = 0;
};

// A decoded, not yet verified token. Owns its data.
struct Token {
  Algorithm alg = Algorithm::HS256;  // the header's "alg"
  nlohmann::json header;             // a JSON object
  nlohmann::json payload;            // a JSON object
  std::string signing_input;         // "<header part>.<payload part>" as sent: what the signature covers
  std::string signature;             // the third part, decoded
  std::string signature_text;        // the third part as sent, for the log line
  TimeClaim exp;
  TimeClaim nbf;
};

// The token in an Authorization header value: what follows "Bearer " or "bearer " (those two spellings
// only, as APISIX), else the whole value.
std::string_view strip_bearer(std::string_view value);

// Decodes a compact JWS. Refused (message kTokenInvalid), with APISIX's details where it has one:
// - more than kMaxTokenBytes;
// - other than exactly three non-empty dot-separated parts ("invalid jwt string"; JWE's five parts too);
// - a part that is not strict unpadded base64url (src/plugins/base64.h): no '=', '+', '/' or whitespace,
//   and canonical trailing bits. lua-resty-jwt also takes the standard alphabet and padding; JWS (RFC 7515
//   section 2) has neither, so no real token is refused for it;
// - a header or payload that is not a JSON object, has a duplicate member name, is not UTF-8, or nests deeper
//   than base::kMaxJsonNesting ("invalid header: <part>", "invalid payload: <part>");
// - a header whose "alg" is missing, not a string, "none" in any case, or not one of Algorithm's names, or
//   that has a "crit" member (no extension is understood, so RFC 7515 section 4.1.11 requires refusing).
std::optional<Token> decode(std::string_view text, Error& error);

// The consumer key the token names: the string value of payload[claim_name] (APISIX's key_claim_name,
// default "key"). As APISIX: absent or `false` -> kMissingUserKey; any other non-string (null, a number...)
// -> kInvalidUserKey, since no consumer's key can equal it. The view points into token.payload.
std::optional<std::string_view> consumer_key(const Token& token, std::string_view claim_name, Error& error);

// APISIX's claims_to_verify (default both).
struct ClaimsToVerify {
  bool exp = true;
  bool nbf = true;
};

// APISIX's time checks, run after the signature's, `now` and the consumer's lifetime_grace_period in
// seconds: a present exp must satisfy exp > now - grace ("'exp' claim expired at <HTTP date>"), a present nbf
// nbf < now + grace ("'nbf' claim not valid until <HTTP date>"); a present claim of another type gives
// "claim exp is not a number". Both comparisons are strict, as APISIX's: nbf == now is refused without grace.
// exp is checked first. Message kFailedToVerify, detail "failed to verify jwt: <reason>".
std::optional<Error> check_time(const Token& token, int64_t now, int64_t lifetime_grace_period,
                                ClaimsToVerify claims = {});

// A consumer's jwt-auth credentials, as configured (APISIX's consumer schema).
struct KeyConfig {
  std::string algorithm = "HS256";
  std::string secret;  // HS*: the HMAC key, raw bytes, or standard base64 when base64_secret
  bool base64_secret = false;
  std::string
      public_key;  // others: PEM. A private key PEM is taken too (APISIX does); its public half is kept
};

class Verifier {
 public:
  // Builds the verifier for one consumer, or returns nullopt with `error` set to why the configuration is
  // unusable (for the snapshot builder to report): unknown algorithm, missing or empty HMAC key,
  // base64_secret that is not base64 (APISIX's message), missing public key ("missing valid public key"),
  // a PEM OpenSSL cannot read, or a key of the wrong type for the algorithm (RS*: RSA; PS*: RSA or RSA-PSS;
  // ES256/384/512: EC on P-256/P-384/P-521; EdDSA: Ed25519 or Ed448). RSA keys of any size OpenSSL takes
  // are accepted, as APISIX does (its own tests use 512-bit keys).
  static std::optional<Verifier> create(const KeyConfig& config, std::string& error);

  Algorithm algorithm() const;

  // Refuses (message kFailedToVerify) a token whose alg is not this verifier's, or whose signature does not
  // verify ("signature mismatch: <signature part>", as APISIX logs it). HMAC tags are compared in constant
  // time; ES* signatures are JWS's raw R||S of the curve's exact size.
  std::optional<Error> check(const Token& token) const;
  bool verify(const Token& token) const { return !check(token).has_value(); }

  struct Key;  // the algorithm and its key material; defined in jwt.cc

 private:
  explicit Verifier(std::shared_ptr<const Key> key) : key_(std::move(key)) {}
  std::shared_ptr<const Key> key_;
};

}  // namespace portico::plugins::jwt
