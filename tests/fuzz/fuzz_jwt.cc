// libFuzzer target for the JWT parser and verifiers (src/plugins/jwt.h).
//
// Input: byte 0 selects the mode.
// - 0x00 / 0x01, "signed": the rest is a payload text, signed here as an HS256 (0x00) or ES256 (0x01) token
//   with the keys of this process. When decode accepts it, the payload must be what nlohmann reads from the
//   text, the token must verify under its own verifier only, and with one signature byte changed under none.
// - anything else, "raw": the whole input is a token (real tokens start with base64url, never 0x00/0x01).
//   No verifier may accept it: the fuzzer knows no key, so an acceptance would be a forgery (an empty or
//   zero signature passing, an algorithm mix-up).
// In both modes: decode accepts only three dot-separated parts within kMaxTokenBytes whose signing input and
// signature text are the token's own, with a known alg and no "crit", and it re-encodes the signature
// canonically; a refusal is "JWT token invalid" with a one-line printable detail; consumer_key and check_time
// agree with the payload and never fail on other grounds.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "plugins/jwt.h"
#include "plugins_jwt_sign.h"

namespace {

using namespace portico::plugins::jwt;
namespace signing = portico::plugins::jwt::signing;

constexpr std::string_view kSecret = "fuzz-secret";

bool printable_line(std::string_view s) {
  for (char c : s) {
    if (c < 0x20 || c > 0x7e) return false;
  }
  return s.size() <= 256;
}

struct Verifiers {
  std::vector<Verifier> all;
  Verifiers() {
    auto add = [this](KeyConfig config) {
      std::string error;
      auto v = Verifier::create(config, error);
      FUZZ_CHECK(v.has_value());
      all.push_back(*v);
    };
    add(KeyConfig{"HS256", std::string(kSecret), false, ""});
    add(KeyConfig{"HS512", std::string(kSecret), false, ""});
    for (const char* alg : {"RS256", "PS256"})
      add(KeyConfig{alg, "", false, signing::test_key("RSA").public_pem});
    add(KeyConfig{"ES256", "", false, signing::test_key("P-256").public_pem});
    add(KeyConfig{"ES512", "", false, signing::test_key("P-521").public_pem});
    add(KeyConfig{"EdDSA", "", false, signing::test_key("ED25519").public_pem});
  }
};

const Verifiers& verifiers() {
  static const Verifiers v;
  return v;
}

// Checks decode's contract on `text`; returns the token when accepted.
std::optional<Token> checked_decode(std::string_view text) {
  Error error;
  std::optional<Token> token = decode(text, error);
  if (!token) {
    FUZZ_CHECK(error.message == kTokenInvalid);
    FUZZ_CHECK(error.detail.starts_with("JWT token invalid: "));
    FUZZ_CHECK(printable_line(error.detail));
    return token;
  }
  FUZZ_CHECK(text.size() <= kMaxTokenBytes);
  const size_t dot = text.rfind('.');
  FUZZ_CHECK(dot != std::string_view::npos && token->signing_input == text.substr(0, dot));
  FUZZ_CHECK(token->signature_text == text.substr(dot + 1));
  FUZZ_CHECK(std::count(text.begin(), text.end(), '.') == 2);
  FUZZ_CHECK(signing::b64url(token->signature) == token->signature_text);
  FUZZ_CHECK(token->header.is_object() && token->payload.is_object());
  FUZZ_CHECK(!token->header.contains("crit"));
  FUZZ_CHECK(token->header["alg"] == std::string(algorithm_name(token->alg)));

  Error key_error;
  auto key = consumer_key(*token, "key", key_error);
  auto it = token->payload.find("key");
  if (key) {
    FUZZ_CHECK(it != token->payload.end() && it->is_string() && *key == it->get_ref<const std::string&>());
  } else {
    FUZZ_CHECK(key_error.message == kMissingUserKey || key_error.message == kInvalidUserKey);
  }
  for (int64_t now : {int64_t{0}, int64_t{1700000000}}) {
    auto time_error = check_time(*token, now, 30);
    if (time_error) {
      FUZZ_CHECK(time_error->message == kFailedToVerify);
      FUZZ_CHECK(time_error->detail.starts_with("failed to verify jwt: "));
      FUZZ_CHECK(printable_line(time_error->detail));
    }
  }
  return token;
}

void check_signed(std::string_view alg, std::string_view payload_text) {
  const std::string& key = alg == "HS256" ? std::string(kSecret) : signing::test_key("P-256").private_pem;
  std::string text = signing::sign(alg, payload_text, key);
  std::optional<Token> token = checked_decode(text);
  if (!token) return;
  FUZZ_CHECK(token->payload == nlohmann::json::parse(payload_text));
  for (const Verifier& v : verifiers().all)
    FUZZ_CHECK(v.verify(*token) == (algorithm_name(v.algorithm()) == alg));
  // One signature bit changed: nobody accepts it.
  std::string sig = token->signature;
  sig[sig.size() / 2] ^= 0x20;
  std::optional<Token> altered = checked_decode(token->signing_input + "." + signing::b64url(sig));
  FUZZ_CHECK(altered.has_value());
  for (const Verifier& v : verifiers().all) FUZZ_CHECK(!v.verify(*altered));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  if (!input.empty() && (input[0] == 0x00 || input[0] == 0x01)) {
    check_signed(input[0] == 0x00 ? "HS256" : "ES256", input.substr(1));
    return 0;
  }
  std::optional<Token> token = checked_decode(input);
  if (token) {
    for (const Verifier& v : verifiers().all) {
      auto error = v.check(*token);
      FUZZ_CHECK(error.has_value() && error->message == kFailedToVerify && printable_line(error->detail));
    }
  }
  return 0;
}
