// gRPC over HTTP/2, the parts a proxy needs (docs/grpc.md): the grpc-timeout header, the trailers-only error
// response Portico sends when it answers a gRPC request itself, and the HTTP-to-gRPC status mapping of
// grpc/doc/http-grpc-status-mapping.md. Pure functions, any thread.
#pragma once

#include <chrono>
#include <optional>
#include <string>
#include <string_view>

#include "http2/client_codec.h"

namespace portico::http2::grpc {

// Status codes (grpc/doc/statuscodes.md) Portico sends itself.
constexpr int kOk = 0;
constexpr int kCancelled = 1;
constexpr int kUnknown = 2;
constexpr int kDeadlineExceeded = 4;
constexpr int kPermissionDenied = 7;
constexpr int kResourceExhausted = 8;
constexpr int kUnimplemented = 12;
constexpr int kInternal = 13;
constexpr int kUnavailable = 14;
constexpr int kUnauthenticated = 16;

// A request's `grpc-timeout` value (PROTOCOL-HTTP2.md: 1 to 8 ASCII digits, then one unit of H M S m u n)
// in seconds; nullopt when malformed (the header is then ignored, as grpc-go and Envoy do).
std::optional<double> parse_timeout(std::string_view value);

// A cap for "no deadline" values (grpc-java sends 2562047H for Long.MAX_VALUE nanoseconds): ~3 years.
constexpr double kMaxTimeoutSeconds = 1e8;

// The grpc-timeout value sent to a node for what is left of the call's deadline (Envoy's router does the
// same when it honours grpc-timeout): the finest unit whose count still fits the 8 digits the header allows
// (grpc-go's choice, so precision is kept), truncated as Envoy and grpc-go do (the node's deadline never ends
// after the caller's). At least "1n"; the caller answers DEADLINE_EXCEEDED itself when nothing is left;
// beyond 99999999H it is "99999999H".
std::string encode_timeout(std::chrono::nanoseconds left);

// The time a gRPC request may take: its grpc-timeout when it has a valid one, capped by the route's
// `route_seconds` (a client cannot hold the gateway longer than the route allows).
double effective_timeout(std::string_view grpc_timeout, double route_seconds);

// The gRPC status for an HTTP status: Portico's own refusals (404 no route, 401/403 from auth plugins, 429
// from limit plugins, 502/503/504 upstream failures) and non-gRPC answers from a node. 429 is UNAVAILABLE as
// the mapping document and Envoy's default say (Envoy's rate limit filter can say RESOURCE_EXHAUSTED
// instead, with rate_limited_as_resource_exhausted).
int status_for_http(int http_status);

// grpc-message's encoding: bytes outside 0x20..0x7e, and '%', as %XX (upper-case hex).
std::string percent_encode(std::string_view message);
// Its decoding, for logs and tests (malformed escapes are kept as they are).
std::string percent_decode(std::string_view encoded);

// The grpc-message for a refusal whose HTTP body is APISIX's JSON ({"message": "..."} from plugins,
// {"error_msg": "..."} from Portico): that text; otherwise the body itself, trimmed, at most 512 bytes.
std::string message_of_body(std::string_view body);

// A trailers-only response (one HEADERS frame with END_STREAM): :status 200, content-type application/grpc,
// grpc-status, grpc-message (percent-encoded; left out when empty).
Fields trailers_only(int grpc_status, std::string_view message);

// True for a content type gRPC uses: application/grpc, optionally +suffix or ;parameters.
bool is_grpc_content_type(std::string_view content_type);

}  // namespace portico::http2::grpc
