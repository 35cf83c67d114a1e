// `Authorization: Basic <base64(user:password)>` (RFC 7617) as APISIX 3.x basic-auth reads it, for the
// basic-auth plugin, with APISIX's refusals. Standalone: no dependency on the plugin pipeline, which checks
// that the header is present (else it answers kMissingAuthorization), calls parse(), finds the consumer by
// user and compares passwords with password_matches().
//
// Every refusal is an Error: `message` is APISIX's 401 body message, `detail` the reason APISIX logs at warn
// level (and answers instead under multi-auth). APISIX appends the client's base64 text or decoded
// credentials to two of its details; these do not, since both are, or nearly are, a password.
//
// Where this is stricter than APISIX (whose match is the unanchored regex "(?i:basic)\s(.+)", then nginx's
// lenient base64, a split at every ':', and all whitespace deleted from both halves):
// - the value must start with the scheme, followed by exactly one space or tab and non-empty base64 (strict,
//   standard alphabet, padding optional but complete when present: src/plugins/base64.h);
// - the password is everything after the first ':' (RFC 7617), where APISIX keeps only what precedes a
//   second ':';
// - nothing is deleted: user and password are compared as sent, and a control character in either is
//   refused (RFC 7617 section 2 forbids them);
// - an empty user is refused here with the answer APISIX gives once its lookup fails.
// Pure functions; any thread.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace portico::plugins::basic {

// The longest Authorization value parse() reads.
inline constexpr size_t kMaxAuthorizationBytes = 4096;

// APISIX's 401 messages. kMissingAuthorization (no header) and kInvalidUser (unknown user, wrong password)
// are also the plugin's to send.
inline constexpr std::string_view kMissingAuthorization = "Missing authorization in request";
inline constexpr std::string_view kInvalidAuthorization = "Invalid authorization in request";
inline constexpr std::string_view kInvalidUser = "Invalid user authorization";

struct Error {
  std::string message;  // the 401 body's "message"
  std::string detail;   // the log line
};

struct Credentials {
  std::string user;
  std::string password;
};

// Parses an Authorization header value. Refusals (message kInvalidAuthorization unless noted), detail:
// - longer than kMaxAuthorizationBytes: "authorization header longer than 4096 bytes";
// - not "Basic" (any case) + one SP or HTAB + base64: "Invalid authorization header format";
// - not strict base64: "Failed to decode authentication header";
// - no ':' in the decoded text, or a control character in it: "Split authorization err: invalid decoded
//   data";
// - an empty user: message kInvalidUser, detail "failed to find user: invalid user".
std::optional<Credentials> parse(std::string_view authorization, Error& error);

// True when `given` equals `expected`, in time independent of their contents and lengths (both are hashed
// with SHA-256 and the digests compared with CRYPTO_memcmp).
bool password_matches(std::string_view given, std::string_view expected);

}  // namespace portico::plugins::basic
