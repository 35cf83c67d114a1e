#include "plugins/jwt.h"

#include <openssl/bn.h>
#include <openssl/crypto.h>
#include <openssl/decoder.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/objects.h>
#include <openssl/rsa.h>
#include <openssl/x509.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <set>
#include <vector>

#include "base/json_limits.h"
#include "plugins/base64.h"

namespace portico::plugins::jwt {
namespace {

using nlohmann::json;

// In Algorithm's order.
constexpr std::array<std::string_view, 13> kNames = {"HS256", "HS384", "HS512", "RS256", "RS384",
                                                     "RS512", "PS256", "PS384", "PS512", "ES256",
                                                     "ES384", "ES512", "EdDSA"};

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
struct MdCtxFree {
  void operator()(EVP_MD_CTX* p) const { EVP_MD_CTX_free(p); }
};

// A token part as a detail quotes it: bounded, and one printable line whatever the client sent.
std::string quote(std::string_view part) {
  const size_t n = std::min(part.size(), kMaxQuotedBytes);
  std::string out;
  out.reserve(n + 3);
  for (size_t i = 0; i < n; ++i) out.push_back(part[i] >= 0x20 && part[i] < 0x7f ? part[i] : '?');
  if (part.size() > n) out += "...";
  return out;
}

Error invalid(const std::string& reason) {
  return {std::string(kTokenInvalid), std::string(kTokenInvalid) + ": " + reason};
}

Error failed(const std::string& reason) {
  return {std::string(kFailedToVerify), std::string(kFailedToVerify) + ": " + reason};
}

// True when `text` is one JSON object with no duplicate member name at any level, nesting at most
// base::kMaxJsonNesting (checked lexically first, before any tree exists). Duplicates are refused rather than
// resolved (nlohmann keeps the last, others the first): two readers of one token must not see two "alg"s.
bool parse_object(std::string_view text, json& out) {
  if (base::json_too_deep(text, base::kMaxJsonNesting)) return false;
  std::vector<std::set<std::string>> open;  // the member names seen so far in each open object
  bool duplicate = false;
  json::parser_callback_t callback = [&](int, json::parse_event_t event, json& parsed) {
    if (event == json::parse_event_t::object_start) {
      open.emplace_back();
    } else if (event == json::parse_event_t::object_end) {
      if (!open.empty()) open.pop_back();
    } else if (event == json::parse_event_t::key && !open.empty()) {
      if (!open.back().insert(parsed.get<std::string>()).second) duplicate = true;
    }
    return true;
  };
  out = json::parse(text.begin(), text.end(), callback, /*allow_exceptions=*/false);
  return !duplicate && out.is_object();
}

TimeClaim time_claim(const json& payload, const char* name) {
  auto it = payload.find(name);
  if (it == payload.end()) return {};
  if (!it->is_number()) return {TimeClaim::State::not_number, 0};
  return {TimeClaim::State::number, it->get<double>()};
}

// nginx's ngx_http_time(), which APISIX's messages use: "Tue, 23 Jul 2019 08:28:21 GMT", the value truncated
// to whole seconds as LuaJIT converts it. A value outside years 1-9999 is printed as a number instead.
std::string http_time(double value) {
  static constexpr std::array<const char*, 7> kDays = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr std::array<const char*, 12> kMonths = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  char buf[64];
  std::tm tm{};
  const bool in_range = value > -62135596800.0 && value < 253402300800.0;
  const time_t t = in_range ? static_cast<time_t>(std::trunc(value)) : 0;
  if (!in_range || gmtime_r(&t, &tm) == nullptr) {
    std::snprintf(buf, sizeof buf, "%.0f", value);
    return buf;
  }
  std::snprintf(buf, sizeof buf, "%s, %02d %s %4d %02d:%02d:%02d GMT", kDays[tm.tm_wday], tm.tm_mday,
                kMonths[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
  return buf;
}

const EVP_MD* digest_for(Algorithm alg) {
  switch (alg) {
    case Algorithm::HS256:
    case Algorithm::RS256:
    case Algorithm::PS256:
    case Algorithm::ES256:
      return EVP_sha256();
    case Algorithm::HS384:
    case Algorithm::RS384:
    case Algorithm::PS384:
    case Algorithm::ES384:
      return EVP_sha384();
    case Algorithm::HS512:
    case Algorithm::RS512:
    case Algorithm::PS512:
    case Algorithm::ES512:
      return EVP_sha512();
    case Algorithm::EdDSA:
      break;
  }
  return nullptr;  // EdDSA hashes internally
}

bool is_pss(Algorithm alg) {
  return alg == Algorithm::PS256 || alg == Algorithm::PS384 || alg == Algorithm::PS512;
}

// The byte length of R (and of S) in an ES* signature (RFC 7518 section 3.4); 0 for other algorithms.
size_t ecdsa_half(Algorithm alg) {
  switch (alg) {
    case Algorithm::ES256:
      return 32;
    case Algorithm::ES384:
      return 48;
    case Algorithm::ES512:
      return 66;
    default:
      return 0;
  }
}

int ecdsa_curve(Algorithm alg) {
  switch (alg) {
    case Algorithm::ES256:
      return NID_X9_62_prime256v1;
    case Algorithm::ES384:
      return NID_secp384r1;
    default:
      return NID_secp521r1;
  }
}

int no_passphrase(char*, size_t, size_t*, const OSSL_PARAM*, void*) {
  return 0;  // an encrypted PEM is refused, never prompted for
}

// Any PEM key OpenSSL reads (SubjectPublicKeyInfo, PKCS#1, or a private key), reduced to its public half so
// that no private material stays in memory for a snapshot's lifetime.
PkeyPtr load_public_key(const std::string& pem) {
  EVP_PKEY* decoded = nullptr;
  OSSL_DECODER_CTX* dctx =
      OSSL_DECODER_CTX_new_for_pkey(&decoded, "PEM", nullptr, nullptr, 0, nullptr, nullptr);
  if (dctx != nullptr) {
    OSSL_DECODER_CTX_set_passphrase_cb(dctx, no_passphrase, nullptr);
    const auto* data = reinterpret_cast<const unsigned char*>(pem.data());
    size_t len = pem.size();
    OSSL_DECODER_from_data(dctx, &data, &len);
    OSSL_DECODER_CTX_free(dctx);
  }
  PkeyPtr full(decoded);
  if (!full) return nullptr;
  unsigned char* der = nullptr;
  const int n = i2d_PUBKEY(full.get(), &der);
  if (n <= 0) return nullptr;
  const unsigned char* p = der;
  PkeyPtr pub(d2i_PUBKEY(nullptr, &p, n));
  OPENSSL_free(der);
  return pub;
}

// Why `pkey` cannot verify `alg`, or nullptr.
const char* key_mismatch(Algorithm alg, EVP_PKEY* pkey) {
  if (is_pss(alg)) {
    return EVP_PKEY_is_a(pkey, "RSA") || EVP_PKEY_is_a(pkey, "RSA-PSS") ? nullptr : "needs an RSA key";
  }
  if (ecdsa_half(alg) != 0) {
    char group[80];
    size_t len = 0;
    const bool ok = EVP_PKEY_is_a(pkey, "EC") &&
                    EVP_PKEY_get_group_name(pkey, group, sizeof group, &len) == 1 &&
                    OBJ_txt2nid(group) == ecdsa_curve(alg);
    if (ok) return nullptr;
    return alg == Algorithm::ES256   ? "needs an EC key on P-256"
           : alg == Algorithm::ES384 ? "needs an EC key on P-384"
                                     : "needs an EC key on P-521";
  }
  if (alg == Algorithm::EdDSA) {
    return EVP_PKEY_is_a(pkey, "ED25519") || EVP_PKEY_is_a(pkey, "ED448") ? nullptr
                                                                          : "needs an Ed25519 or Ed448 key";
  }
  return EVP_PKEY_is_a(pkey, "RSA") ? nullptr : "needs an RSA key";
}

// JWS carries an ECDSA signature as R||S, each left-padded to `half` bytes; OpenSSL verifies DER.
bool raw_to_der(std::string_view raw, size_t half, std::string& der) {
  if (raw.size() != 2 * half) return false;
  const auto* p = reinterpret_cast<const unsigned char*>(raw.data());
  ECDSA_SIG* sig = ECDSA_SIG_new();
  BIGNUM* r = BN_bin2bn(p, static_cast<int>(half), nullptr);
  BIGNUM* s = BN_bin2bn(p + half, static_cast<int>(half), nullptr);
  if (sig == nullptr || r == nullptr || s == nullptr || ECDSA_SIG_set0(sig, r, s) != 1) {
    BN_free(r);
    BN_free(s);
    ECDSA_SIG_free(sig);
    return false;
  }
  const int n = i2d_ECDSA_SIG(sig, nullptr);
  bool ok = n > 0;
  if (ok) {
    der.resize(static_cast<size_t>(n));
    auto* out = reinterpret_cast<unsigned char*>(der.data());
    ok = i2d_ECDSA_SIG(sig, &out) == n;
  }
  ECDSA_SIG_free(sig);
  return ok;
}

}  // namespace

struct Verifier::Key {
  Algorithm alg = Algorithm::HS256;
  std::string secret;  // HS*
  PkeyPtr pkey;        // the others: public only
  ~Key() { OPENSSL_cleanse(secret.data(), secret.size()); }
};

std::optional<Algorithm> algorithm_from_name(std::string_view name) {
  for (size_t i = 0; i < kNames.size(); ++i) {
    if (kNames[i] == name) return static_cast<Algorithm>(i);
  }
  return std::nullopt;
}

std::string_view algorithm_name(Algorithm alg) {
  return kNames[static_cast<size_t>(alg)];
}

std::string_view strip_bearer(std::string_view value) {
  if (value.starts_with("Bearer ") || value.starts_with("bearer ")) value.remove_prefix(7);
  return value;
}

std::optional<Token> decode(std::string_view text, Error& error) {
  if (text.size() > kMaxTokenBytes) {
    error = invalid("token longer than " + std::to_string(kMaxTokenBytes) + " bytes");
    return std::nullopt;
  }
  const size_t dot1 = text.find('.');
  const size_t dot2 = dot1 == std::string_view::npos ? dot1 : text.find('.', dot1 + 1);
  if (dot2 == std::string_view::npos || text.find('.', dot2 + 1) != std::string_view::npos || dot1 == 0 ||
      dot2 == dot1 + 1 || dot2 + 1 == text.size()) {
    error = invalid("invalid jwt string");
    return std::nullopt;
  }
  const std::string_view header_part = text.substr(0, dot1);
  const std::string_view payload_part = text.substr(dot1 + 1, dot2 - dot1 - 1);
  const std::string_view signature_part = text.substr(dot2 + 1);

  Token token;
  std::string decoded;
  if (!b64::decode(header_part, b64::Alphabet::url, decoded) || !parse_object(decoded, token.header)) {
    error = invalid("invalid header: " + quote(header_part));
    return std::nullopt;
  }
  if (!b64::decode(payload_part, b64::Alphabet::url, decoded) || !parse_object(decoded, token.payload)) {
    error = invalid("invalid payload: " + quote(payload_part));
    return std::nullopt;
  }
  if (!b64::decode(signature_part, b64::Alphabet::url, token.signature)) {
    error = invalid("invalid signature: " + quote(signature_part));
    return std::nullopt;
  }
  auto alg = token.header.find("alg");
  if (alg == token.header.end() || !alg->is_string()) {
    error = invalid("missing alg in header");
    return std::nullopt;
  }
  // "none" in any case is simply not a name algorithm_from_name knows; the lookup is exact.
  auto known = algorithm_from_name(alg->get_ref<const std::string&>());
  if (!known) {
    error = invalid("unsupported alg: " + quote(alg->get_ref<const std::string&>()));
    return std::nullopt;
  }
  if (token.header.contains("crit")) {
    error = invalid("unsupported crit header");
    return std::nullopt;
  }
  token.alg = *known;
  token.signing_input.assign(text.substr(0, dot2));
  token.signature_text.assign(signature_part);
  token.exp = time_claim(token.payload, "exp");
  token.nbf = time_claim(token.payload, "nbf");
  return token;
}

std::optional<std::string_view> consumer_key(const Token& token, std::string_view claim_name, Error& error) {
  auto it = token.payload.find(std::string(claim_name));
  if (it == token.payload.end() || (it->is_boolean() && !it->get<bool>())) {
    error = {std::string(kMissingUserKey), std::string(kMissingUserKey)};
    return std::nullopt;
  }
  if (!it->is_string()) {
    error = {std::string(kInvalidUserKey), std::string(kInvalidUserKey)};
    return std::nullopt;
  }
  return std::string_view(it->get_ref<const std::string&>());
}

std::optional<Error> check_time(const Token& token, int64_t now, int64_t lifetime_grace_period,
                                ClaimsToVerify claims) {
  const double t = static_cast<double>(now);
  const double grace = static_cast<double>(lifetime_grace_period);
  if (claims.exp && token.exp.state != TimeClaim::State::absent) {
    if (token.exp.state == TimeClaim::State::not_number) return failed("claim exp is not a number");
    if (!(token.exp.value > t - grace)) return failed("'exp' claim expired at " + http_time(token.exp.value));
  }
  if (claims.nbf && token.nbf.state != TimeClaim::State::absent) {
    if (token.nbf.state == TimeClaim::State::not_number) return failed("claim nbf is not a number");
    if (!(token.nbf.value < t + grace)) {
      return failed("'nbf' claim not valid until " + http_time(token.nbf.value));
    }
  }
  return std::nullopt;
}

std::optional<Verifier> Verifier::create(const KeyConfig& config, std::string& error) {
  auto alg = algorithm_from_name(config.algorithm);
  if (!alg) {
    error = "property \"algorithm\" validation failed: matches none of the enum values";
    return std::nullopt;
  }
  auto key = std::make_shared<Key>();
  key->alg = *alg;
  if (is_hmac(*alg)) {
    if (config.secret.empty()) {
      error = "property \"secret\" is required when \"algorithm\" is \"" + config.algorithm + "\"";
      return std::nullopt;
    }
    if (!config.base64_secret) {
      key->secret = config.secret;
    } else if (!b64::decode(config.secret, b64::Alphabet::standard, key->secret) || key->secret.empty()) {
      error = "base64_secret required but the secret is not in base64 format";
      return std::nullopt;
    }
    return Verifier(std::move(key));
  }
  if (config.public_key.empty()) {
    error = "missing valid public key";
    return std::nullopt;
  }
  key->pkey = load_public_key(config.public_key);
  ERR_clear_error();  // a failed decoder attempt leaves errors queued on this thread
  if (!key->pkey) {
    error = "invalid public key: not a PEM key OpenSSL can read";
    return std::nullopt;
  }
  if (const char* why = key_mismatch(*alg, key->pkey.get())) {
    error = "invalid public key: " + config.algorithm + " " + why;
    return std::nullopt;
  }
  return Verifier(std::move(key));
}

Algorithm Verifier::algorithm() const {
  return key_->alg;
}

std::optional<Error> Verifier::check(const Token& token) const {
  const Key& key = *key_;
  if (token.alg != key.alg) {
    return failed("algorithm " + std::string(algorithm_name(token.alg)) + " is not the consumer's " +
                  std::string(algorithm_name(key.alg)));
  }
  const auto* input = reinterpret_cast<const unsigned char*>(token.signing_input.data());
  bool ok = false;
  if (is_hmac(key.alg)) {
    unsigned char mac[EVP_MAX_MD_SIZE];
    unsigned int mac_len = 0;
    ok = HMAC(digest_for(key.alg), key.secret.data(), static_cast<int>(key.secret.size()), input,
              token.signing_input.size(), mac, &mac_len) != nullptr &&
         mac_len == token.signature.size() && CRYPTO_memcmp(mac, token.signature.data(), mac_len) == 0;
  } else {
    std::string der;
    std::string_view sig = token.signature;
    const size_t half = ecdsa_half(key.alg);
    std::unique_ptr<EVP_MD_CTX, MdCtxFree> ctx(EVP_MD_CTX_new());
    EVP_PKEY_CTX* pctx = nullptr;
    ok = (half == 0 || raw_to_der(token.signature, half, der)) && ctx &&
         EVP_DigestVerifyInit(ctx.get(), &pctx, digest_for(key.alg), nullptr, key.pkey.get()) == 1;
    if (ok && half != 0) sig = der;
    if (ok && is_pss(key.alg)) {
      // RFC 7518 section 3.5: MGF1 with the same hash (OpenSSL's default) and a salt as long as the hash.
      ok = EVP_PKEY_CTX_set_rsa_padding(pctx, RSA_PKCS1_PSS_PADDING) == 1 &&
           EVP_PKEY_CTX_set_rsa_pss_saltlen(pctx, RSA_PSS_SALTLEN_DIGEST) == 1;
    }
    ok = ok && EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                                input, token.signing_input.size()) == 1;
  }
  if (!ok) {
    ERR_clear_error();  // leave nothing queued for the next TLS call on this worker thread
    return failed("signature mismatch: " + quote(token.signature_text));
  }
  return std::nullopt;
}

}  // namespace portico::plugins::jwt
