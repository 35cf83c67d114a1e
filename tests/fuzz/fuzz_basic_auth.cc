// libFuzzer target for the Basic credentials parser (src/plugins/basic_credentials.h).
//
// Input: an Authorization header value. Invariants:
// - Accepted: the value fits kMaxAuthorizationBytes and is "basic" (any case), one SP or HTAB, then the
//   canonical base64 of "user:password", padded or not (re-encoding the result gives the input back); the
//   user is non-empty without ':' and neither half has a control character.
// - Refused: one of APISIX's two messages with one of the documented details.
// - password_matches is equality.
#include <string>
#include <string_view>

#include "fuzz_common.h"
#include "plugins/base64.h"
#include "plugins/basic_credentials.h"

namespace {

namespace basic = portico::plugins::basic;
namespace b64 = portico::plugins::b64;

bool has_control(std::string_view s) {
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) return true;
  }
  return false;
}

bool known_refusal(const basic::Error& e) {
  if (e.message == basic::kInvalidUser) return e.detail == "failed to find user: invalid user";
  return e.message == basic::kInvalidAuthorization &&
         (e.detail == "authorization header longer than 4096 bytes" ||
          e.detail == "Invalid authorization header format" ||
          e.detail == "Failed to decode authentication header" ||
          e.detail == "Split authorization err: invalid decoded data");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view value(reinterpret_cast<const char*>(data), size);
  basic::Error error;
  auto credentials = basic::parse(value, error);
  if (!credentials) {
    FUZZ_CHECK(known_refusal(error));
    return 0;
  }
  FUZZ_CHECK(value.size() <= basic::kMaxAuthorizationBytes && value.size() > 6);
  FUZZ_CHECK(value[5] == ' ' || value[5] == '\t');
  for (size_t i = 0; i < 5; ++i) FUZZ_CHECK((value[i] | 0x20) == "basic"[i]);
  FUZZ_CHECK(!credentials->user.empty() && credentials->user.find(':') == std::string::npos);
  FUZZ_CHECK(!has_control(credentials->user) && !has_control(credentials->password));
  const std::string joined = credentials->user + ":" + credentials->password;
  const std::string_view sent = value.substr(6);
  FUZZ_CHECK(sent == b64::encode(joined, b64::Alphabet::standard, true) ||
             sent == b64::encode(joined, b64::Alphabet::standard, false));
  FUZZ_CHECK(basic::password_matches(credentials->password, credentials->password));
  FUZZ_CHECK(!basic::password_matches(credentials->password, credentials->password + "x"));
  FUZZ_CHECK(!basic::password_matches(credentials->user, credentials->user + ":"));
  return 0;
}
