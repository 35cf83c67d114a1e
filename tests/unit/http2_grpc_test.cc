#include <gtest/gtest.h>

#include "http2/grpc.h"

namespace portico::http2::grpc {
namespace {

TEST(GrpcTimeout, EveryUnit) {
  EXPECT_DOUBLE_EQ(*parse_timeout("2H"), 7200);
  EXPECT_DOUBLE_EQ(*parse_timeout("3M"), 180);
  EXPECT_DOUBLE_EQ(*parse_timeout("5S"), 5);
  EXPECT_DOUBLE_EQ(*parse_timeout("250m"), 0.25);
  EXPECT_DOUBLE_EQ(*parse_timeout("1500u"), 0.0015);
  EXPECT_DOUBLE_EQ(*parse_timeout("99999999n"), 0.099999999);
  EXPECT_DOUBLE_EQ(*parse_timeout("0S"), 0);
}

TEST(GrpcTimeout, MalformedIsIgnored) {
  for (const char* bad : {"", "S", "5", "5s", "5 S", "-5S", "123456789S", "5SS", "1.5S", "+5S", "5x"}) {
    EXPECT_FALSE(parse_timeout(bad).has_value()) << bad;
  }
}

TEST(GrpcTimeout, EncodedInTheFinestUnitThatFits) {
  using std::chrono::nanoseconds;
  EXPECT_EQ(encode_timeout(nanoseconds(1)), "1n");
  EXPECT_EQ(encode_timeout(nanoseconds(99999999)), "99999999n");
  EXPECT_EQ(encode_timeout(nanoseconds(100000000)), "100000u");  // 0.1 s: no longer fits in n
  EXPECT_EQ(encode_timeout(nanoseconds(100000001)), "100000u");  // truncated, as Envoy and grpc-go
  EXPECT_EQ(encode_timeout(nanoseconds(100000999)), "100000u");
  EXPECT_EQ(encode_timeout(std::chrono::milliseconds(100000001)), "100000S");
  EXPECT_EQ(encode_timeout(std::chrono::seconds(9)), "9000000u");
  EXPECT_EQ(encode_timeout(std::chrono::seconds(100)), "100000m");
  EXPECT_EQ(encode_timeout(std::chrono::seconds(100000)), "100000S");
  EXPECT_EQ(encode_timeout(std::chrono::hours(30000)), "1800000M");
  EXPECT_EQ(encode_timeout(std::chrono::hours(2000000)), "2000000H");
  EXPECT_EQ(encode_timeout(nanoseconds(0)), "1n");  // a positive time left never becomes "0"
  EXPECT_EQ(encode_timeout(nanoseconds(-5)), "1n");
  EXPECT_EQ(encode_timeout(nanoseconds(INT64_MAX)), "2562047H");
  // What the node parses back is what was left (to the unit's rounding).
  EXPECT_DOUBLE_EQ(*parse_timeout(encode_timeout(std::chrono::milliseconds(2500))), 2.5);
}

TEST(GrpcTimeout, CappedByTheRoute) {
  EXPECT_DOUBLE_EQ(effective_timeout("100m", 60), 0.1);
  EXPECT_DOUBLE_EQ(effective_timeout("2H", 60), 60);
  EXPECT_DOUBLE_EQ(effective_timeout("", 60), 60);
  EXPECT_DOUBLE_EQ(effective_timeout("junk", 6), 6);
}

TEST(GrpcStatus, HttpMapping) {
  EXPECT_EQ(status_for_http(400), kInternal);
  EXPECT_EQ(status_for_http(401), kUnauthenticated);
  EXPECT_EQ(status_for_http(403), kPermissionDenied);
  EXPECT_EQ(status_for_http(404), kUnimplemented);
  EXPECT_EQ(status_for_http(429), kUnavailable);
  EXPECT_EQ(status_for_http(502), kUnavailable);
  EXPECT_EQ(status_for_http(503), kUnavailable);
  EXPECT_EQ(status_for_http(504), kUnavailable);
  EXPECT_EQ(status_for_http(500), kUnknown);
  EXPECT_EQ(status_for_http(413), kUnknown);
}

TEST(GrpcMessage, PercentEncoding) {
  EXPECT_EQ(percent_encode("no node answered"), "no node answered");
  EXPECT_EQ(percent_encode("100% \xc3\xa9\n"), "100%25 %C3%A9%0A");
  EXPECT_EQ(percent_decode("100%25 %C3%A9%0A"), "100% \xc3\xa9\n");
  EXPECT_EQ(percent_decode("bad %G1 %4"), "bad %G1 %4");
  // An escape at the very end is decoded (a review suspected it was not; i + 2 < size is the right bound).
  EXPECT_EQ(percent_decode("end%21"), "end!");
  EXPECT_EQ(percent_decode("%41"), "A");
  EXPECT_EQ(percent_decode("%4"), "%4");
}

TEST(GrpcMessage, FromRefusalBodies) {
  EXPECT_EQ(message_of_body(R"({"message":"Missing API key found in request"})"),
            "Missing API key found in request");
  EXPECT_EQ(message_of_body("{\"error_msg\": \"404 Route Not Found\"}\n"), "404 Route Not Found");
  EXPECT_EQ(message_of_body("  plain text\n"), "plain text");
  EXPECT_EQ(message_of_body(""), "");
  EXPECT_EQ(message_of_body(std::string(2000, 'x')).size(), 512u);
}

TEST(GrpcResponse, TrailersOnly) {
  Fields f = trailers_only(kUnavailable, "upstream: no node answered");
  ASSERT_EQ(f.size(), 4u);
  EXPECT_EQ(f[0], (Field{":status", "200"}));
  EXPECT_EQ(f[1], (Field{"content-type", "application/grpc"}));
  EXPECT_EQ(f[2], (Field{"grpc-status", "14"}));
  EXPECT_EQ(f[3], (Field{"grpc-message", "upstream: no node answered"}));
  EXPECT_EQ(trailers_only(kOk, "").size(), 3u);
}

TEST(GrpcContentType, Recognised) {
  EXPECT_TRUE(is_grpc_content_type("application/grpc"));
  EXPECT_TRUE(is_grpc_content_type("application/grpc+proto"));
  EXPECT_TRUE(is_grpc_content_type("Application/GRPC;charset=utf-8"));
  EXPECT_FALSE(is_grpc_content_type("application/grpc-web"));
  EXPECT_FALSE(is_grpc_content_type("application/json"));
  EXPECT_FALSE(is_grpc_content_type("application/grp"));
}

}  // namespace
}  // namespace portico::http2::grpc
