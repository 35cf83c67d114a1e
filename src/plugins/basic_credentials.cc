#include "plugins/basic_credentials.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <algorithm>

#include "plugins/base64.h"

namespace portico::plugins::basic {
namespace {

Error refuse(std::string_view detail) {
  return {std::string(kInvalidAuthorization), std::string(detail)};
}

bool starts_with_scheme(std::string_view value) {
  constexpr std::string_view kScheme = "basic";
  if (value.size() < kScheme.size()) return false;
  for (size_t i = 0; i < kScheme.size(); ++i) {
    const char c = value[i];
    if ((c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c) != kScheme[i]) return false;
  }
  return true;
}

bool is_control(char c) {
  const auto u = static_cast<unsigned char>(c);
  return u < 0x20 || u == 0x7f;
}

}  // namespace

std::optional<Credentials> parse(std::string_view authorization, Error& error) {
  if (authorization.size() > kMaxAuthorizationBytes) {
    error = refuse("authorization header longer than " + std::to_string(kMaxAuthorizationBytes) + " bytes");
    return std::nullopt;
  }
  if (!starts_with_scheme(authorization) || authorization.size() < 7 ||
      (authorization[5] != ' ' && authorization[5] != '\t')) {
    error = refuse("Invalid authorization header format");
    return std::nullopt;
  }
  std::string decoded;
  if (!b64::decode(authorization.substr(6), b64::Alphabet::standard, decoded)) {
    error = refuse("Failed to decode authentication header");
    return std::nullopt;
  }
  const size_t colon = decoded.find(':');
  if (colon == std::string::npos || std::any_of(decoded.begin(), decoded.end(), is_control)) {
    error = refuse("Split authorization err: invalid decoded data");
    return std::nullopt;
  }
  if (colon == 0) {
    error = {std::string(kInvalidUser), "failed to find user: invalid user"};
    return std::nullopt;
  }
  return Credentials{decoded.substr(0, colon), decoded.substr(colon + 1)};
}

bool password_matches(std::string_view given, std::string_view expected) {
  unsigned char a[EVP_MAX_MD_SIZE];
  unsigned char b[EVP_MAX_MD_SIZE];
  unsigned int a_len = 0;
  unsigned int b_len = 0;
  // Hashing first makes the comparison independent of the lengths too; a failure compares unequal.
  if (EVP_Digest(given.data(), given.size(), a, &a_len, EVP_sha256(), nullptr) != 1 ||
      EVP_Digest(expected.data(), expected.size(), b, &b_len, EVP_sha256(), nullptr) != 1 || a_len != b_len) {
    return false;
  }
  return CRYPTO_memcmp(a, b, a_len) == 0;
}

}  // namespace portico::plugins::basic
