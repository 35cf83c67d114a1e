// Response-head parser: status line, strictness (all errors answer 502) and the body-framing table of
// RFC 9112 6.3.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "http/parser.h"

namespace portico::http {
namespace {

using namespace std::string_literals;

struct Case {
  std::string name;
  std::string rfc;
  std::string input;
  Method method;  // of the request being answered
  ParseStatus status;
  BodyFraming framing = BodyFraming::none;  // with complete
  uint64_t content_length = 0;
  bool keep_alive = false;
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name << " (" << c.rfc << ")";
}

constexpr ParseStatus kOk = ParseStatus::complete;
constexpr ParseStatus kErr = ParseStatus::error;
constexpr BodyFraming kNone = BodyFraming::none;
constexpr BodyFraming kLength = BodyFraming::content_length;
constexpr BodyFraming kChunked = BodyFraming::chunked;
constexpr BodyFraming kClose = BodyFraming::until_close;

std::string ok11(const std::string& fields) {
  return "HTTP/1.1 200 OK\r\n" + fields + "\r\n";
}
std::string status11(int code, const std::string& fields) {
  return "HTTP/1.1 " + std::to_string(code) + " X\r\n" + fields + "\r\n";
}

std::vector<Case> cases() {
  const Method GET = Method::GET;
  return {
      // ---- framing (RFC 9112 6.3) --------------------------------------------------------------------
      {"ContentLength", "RFC 9112 6.3 rule 6", ok11("Content-Length: 5\r\n"), GET, kOk, kLength, 5, true},
      {"ContentLengthZero", "RFC 9112 6.3 rule 6", ok11("Content-Length: 0\r\n"), GET, kOk, kNone, 0, true},
      {"NoLengthReadsUntilClose", "RFC 9112 6.3 rule 8", ok11(""), GET, kOk, kClose, 0, false},
      {"Chunked", "RFC 9112 6.3 rule 4", ok11("Transfer-Encoding: chunked\r\n"), GET, kOk, kChunked, 0, true},
      {"GzipThenChunked", "RFC 9112 6.3 rule 4", ok11("Transfer-Encoding: gzip, chunked\r\n"), GET, kOk,
       kChunked, 0, true},
      {"ChunkedThenGzip", "RFC 9112 6.3 rule 4 (not last: until close)",
       ok11("Transfer-Encoding: chunked, gzip\r\n"), GET, kOk, kClose, 0, false},
      {"GzipOnly", "RFC 9112 6.3 rule 4 (not last: until close)", ok11("Transfer-Encoding: gzip\r\n"), GET,
       kOk, kClose, 0, false},
      {"HeadWithLength", "RFC 9112 6.3 rule 1", ok11("Content-Length: 100\r\n"), Method::HEAD, kOk, kNone, 0,
       true},
      {"HeadWithChunked", "RFC 9112 6.3 rule 1", ok11("Transfer-Encoding: chunked\r\n"), Method::HEAD, kOk,
       kNone, 0, true},
      {"HeadWithoutLength", "RFC 9112 6.3 rule 1", ok11(""), Method::HEAD, kOk, kNone, 0, true},
      {"NoContent", "RFC 9112 6.3 rule 1", status11(204, ""), GET, kOk, kNone, 0, true},
      {"NoContentLengthZero", "RFC 9110 8.6 (tolerated)", status11(204, "Content-Length: 0\r\n"), GET, kOk,
       kNone, 0, true},
      {"NotModifiedWithLength", "RFC 9110 8.6 (304 may send CL)", status11(304, "Content-Length: 100\r\n"),
       GET, kOk, kNone, 0, true},
      {"NotModifiedWithChunked", "RFC 9112 6.1 (304 may send TE)",
       status11(304, "Transfer-Encoding: chunked\r\n"), GET, kOk, kNone, 0, true},
      {"Continue", "RFC 9112 6.3 rule 1", "HTTP/1.1 100 Continue\r\n\r\n", GET, kOk, kNone, 0, true},
      {"SwitchingProtocols", "RFC 9112 6.3 rule 1",
       "HTTP/1.1 101 Switching Protocols\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", GET, kOk,
       kNone, 0, true},
      {"EarlyHints", "RFC 8297", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n", GET, kOk,
       kNone, 0, true},
      {"ConnectEstablished", "RFC 9112 6.3 rule 2", ok11(""), Method::CONNECT, kOk, kNone, 0, true},
      {"ConnectEstablishedIgnoresLength", "RFC 9112 6.3 rule 2", ok11("Content-Length: 10\r\n"),
       Method::CONNECT, kOk, kNone, 0, true},
      {"ConnectRefusedHasBody", "RFC 9112 6.3 rule 2 (2xx only)", status11(407, "Content-Length: 10\r\n"),
       Method::CONNECT, kOk, kLength, 10, true},
      {"Http10ContentLength", "RFC 9112 9.3 (1.0 closes)", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\n",
       GET, kOk, kLength, 2, false},
      {"Http10KeepAlive", "RFC 9112 C.2.2",
       "HTTP/1.0 200 OK\r\nContent-Length: 2\r\nConnection: keep-alive\r\n\r\n", GET, kOk, kLength, 2, true},
      {"Http11Close", "RFC 9112 9.6", ok11("Content-Length: 2\r\nConnection: close\r\n"), GET, kOk, kLength,
       2, false},
      {"NotFoundWithBody", "RFC 9112 6.3 rule 6", status11(404, "Content-Length: 9\r\n"), Method::POST, kOk,
       kLength, 9, true},

      // ---- status line (RFC 9112 4) -------------------------------------------------------------------
      {"EmptyReason", "RFC 9112 4", "HTTP/1.1 200 \r\nContent-Length: 0\r\n\r\n", GET, kOk, kNone, 0, true},
      {"MissingReasonAndSpace", "RFC 9112 4 (tolerated)", "HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n", GET,
       kOk, kNone, 0, true},
      {"ReasonWithObsText", "RFC 9112 4 obs-text",
       "HTTP/1.1 200 \xc3\x89tat\tOK \r\nContent-Length: 0\r\n\r\n", GET, kOk, kNone, 0, true},
      {"Status599", "RFC 9110 15", status11(599, "Content-Length: 0\r\n"), GET, kOk, kNone, 0, true},
      {"StatusTwoDigits", "RFC 9112 4 (3DIGIT)", "HTTP/1.1 20 OK\r\n\r\n", GET, kErr},
      {"StatusFourDigits", "RFC 9112 4 (3DIGIT)", "HTTP/1.1 2000 OK\r\n\r\n", GET, kErr},
      {"StatusBelow100", "RFC 9110 15 (100-599)", "HTTP/1.1 099 OK\r\n\r\n", GET, kErr},
      {"StatusAbove599", "RFC 9110 15 (100-599)", "HTTP/1.1 600 OK\r\n\r\n", GET, kErr},
      {"StatusNotDigits", "RFC 9112 4", "HTTP/1.1 2x0 OK\r\n\r\n", GET, kErr},
      {"DoubleSpaceBeforeStatus", "RFC 9112 4 (single SP)", "HTTP/1.1  200 OK\r\n\r\n", GET, kErr},
      {"TabBeforeStatus", "RFC 9112 4 (single SP)", "HTTP/1.1\t200 OK\r\n\r\n", GET, kErr},
      {"Version20", "RFC 9112 2.3", "HTTP/2.0 200 OK\r\n\r\n", GET, kErr},
      {"VersionMissingMinor", "RFC 9112 2.3", "HTTP/2 200 OK\r\n\r\n", GET, kErr},
      {"VersionLowercase", "RFC 9112 2.3", "http/1.1 200 OK\r\n\r\n", GET, kErr},
      {"Http09Body", "RFC 9112 2.3 (no HTTP/0.9)", "<html>\r\n\r\n", GET, kErr},
      {"LeadingEmptyLine", "RFC 9112 2.2 (requests only)", "\r\nHTTP/1.1 200 OK\r\n\r\n", GET, kErr},
      {"ReasonWithNul", "RFC 9112 4", "HTTP/1.1 200 O\0K\r\n\r\n"s, GET, kErr},
      {"ReasonWithBareCr", "RFC 9112 2.2", "HTTP/1.1 200 O\rK\r\n\r\n", GET, kErr},
      {"StatusLineBareLf", "RFC 9112 2.2", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n", GET, kErr},
      {"StatusBareLfNoReason", "RFC 9112 2.2", "HTTP/1.1 200\n\r\n", GET, kErr},

      // ---- fields -------------------------------------------------------------------------------------
      {"ObsFold", "RFC 9112 5.2", ok11("X: a\r\n b\r\n"), GET, kErr},
      {"SpaceBeforeColon", "RFC 9112 5.1", ok11("Content-Length : 5\r\n"), GET, kErr},
      {"FieldBareLf", "RFC 9112 2.2", ok11("X: a\n"), GET, kErr},
      {"FieldControlChar", "RFC 9110 5.5", ok11("X: a\x01\r\n"), GET, kErr},
      {"ConnectionNonToken", "RFC 9110 7.6.1", ok11("Connection: close@\r\n"), GET, kErr},
      // An origin naming its framing fields in Connection: the framing is still what the fields say (the
      // head writer keeps Content-Length; Transfer-Encoding is re-stated by Portico).
      {"ConnectionNamesContentLength", "RFC 9110 7.6.1 (framing kept)",
       ok11("Content-Length: 5\r\nConnection: Content-Length\r\n"), GET, kOk, kLength, 5, true},
      {"ConnectionNamesTransferEncoding", "RFC 9110 7.6.1 (framing kept)",
       ok11("Transfer-Encoding: chunked\r\nConnection: Transfer-Encoding\r\n"), GET, kOk, kChunked, 0, true},

      // ---- framing errors -----------------------------------------------------------------------------
      {"ContentLengthAndChunked", "RFC 9112 6.1 (CL and TE)",
       ok11("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), GET, kErr},
      {"ContentLengthAndChunkedOnHead", "RFC 9112 6.1 (CL and TE)",
       ok11("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), Method::HEAD, kErr},
      {"ContentLengthInvalid", "RFC 9110 8.6", ok11("Content-Length: 5a\r\n"), GET, kErr},
      {"ContentLengthSigned", "RFC 9110 8.6", ok11("Content-Length: -1\r\n"), GET, kErr},
      {"ContentLengthList", "RFC 9110 8.6 (strict)", ok11("Content-Length: 5, 5\r\n"), GET, kErr},
      {"ContentLengthRepeated", "RFC 9110 8.6 (strict)", ok11("Content-Length: 5\r\nContent-Length: 5\r\n"),
       GET, kErr},
      {"ContentLengthOverflow", "RFC 9110 8.6", ok11("Content-Length: 18446744073709551616\r\n"), GET, kErr},
      {"ContentLengthInvalidOnHead", "RFC 9110 8.6", ok11("Content-Length: x\r\n"), Method::HEAD, kErr},
      {"TransferEncodingHttp10", "RFC 9112 6.1 (faulty framing)",
       "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", GET, kErr},
      {"ChunkedTwice", "RFC 9112 6.1 (chunked once)", ok11("Transfer-Encoding: chunked, chunked\r\n"), GET,
       kErr},
      {"TransferEncodingNonToken", "RFC 9112 7", ok11("Transfer-Encoding: \"chunked\"\r\n"), GET, kErr},
      {"TransferEncodingEmptyElement", "RFC 9110 5.6.1 (strict)", ok11("Transfer-Encoding: chunked, \r\n"),
       GET, kErr},
      {"NoContentWithLength", "RFC 9110 8.6 (no CL in 204)", status11(204, "Content-Length: 5\r\n"), GET,
       kErr},
      {"NoContentWithChunked", "RFC 9112 6.1 (no TE in 204)", status11(204, "Transfer-Encoding: chunked\r\n"),
       GET, kErr},
      {"ContinueWithLength", "RFC 9110 8.6 (no CL in 1xx)", status11(100, "Content-Length: 5\r\n"), GET,
       kErr},
      {"ContinueWithChunked", "RFC 9112 6.1 (no TE in 1xx)", status11(100, "Transfer-Encoding: chunked\r\n"),
       GET, kErr},
  };
}

class ResponseTable : public ::testing::TestWithParam<Case> {};

TEST_P(ResponseTable, Parses) {
  const Case& c = GetParam();
  ResponseHead head;
  const ParseResult r = parse_response(c.input.data(), c.input.size(), c.method, {}, head);
  ASSERT_EQ(static_cast<int>(r.status), static_cast<int>(c.status)) << c.rfc << ": " << r.error_reason;
  if (c.status == ParseStatus::error) {
    EXPECT_EQ(r.error_status, 502) << "responses always answer 502";
    EXPECT_STRNE(r.error_reason, "");
    return;
  }
  EXPECT_EQ(r.error_status, 0);
  EXPECT_EQ(head.head_size, c.input.size());
  EXPECT_EQ(static_cast<int>(head.framing), static_cast<int>(c.framing)) << c.rfc;
  EXPECT_EQ(head.content_length, c.content_length);
  EXPECT_EQ(head.keep_alive, c.keep_alive);
}

TEST_P(ResponseTable, EveryPrefixIsIncompleteOrTheSameError) {
  const Case& c = GetParam();
  ResponseHead head;
  for (size_t k = 0; k < c.input.size(); ++k) {
    const std::string prefix = c.input.substr(0, k);
    const ParseResult r = parse_response(prefix.data(), k, c.method, {}, head);
    if (r.status == ParseStatus::incomplete) continue;
    ASSERT_EQ(static_cast<int>(c.status), static_cast<int>(ParseStatus::error)) << "prefix " << k;
    ASSERT_EQ(r.error_status, 502);
  }
}

INSTANTIATE_TEST_SUITE_P(Rfc, ResponseTable, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(ResponseFields, StatusAndReason) {
  const std::string s = "HTTP/1.1 404 Not Found\r\nServer: x\r\nContent-Length: 3\r\n\r\nabc";
  ResponseHead h;
  ASSERT_EQ(parse_response(s.data(), s.size(), Method::GET, {}, h).status, ParseStatus::complete);
  EXPECT_EQ(h.status, 404);
  EXPECT_EQ(h.reason, "Not Found");
  EXPECT_EQ(h.version_minor, 1);
  EXPECT_EQ(h.head_size, s.size() - 3);
  EXPECT_EQ(h.find("server"), "x");
}

TEST(ResponseFields, MissingReason) {
  const std::string s = "HTTP/1.0 200\r\n\r\n";
  ResponseHead h;
  ASSERT_EQ(parse_response(s.data(), s.size(), Method::GET, {}, h).status, ParseStatus::complete);
  EXPECT_EQ(h.status, 200);
  EXPECT_EQ(h.reason, "");
  EXPECT_EQ(h.version_minor, 0);
  EXPECT_EQ(h.framing, BodyFraming::until_close);
  EXPECT_FALSE(h.keep_alive);
}

TEST(ResponseFields, InterimThenFinal) {
  const std::string s = "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx";
  ResponseHead h;
  ASSERT_EQ(parse_response(s.data(), s.size(), Method::POST, {}, h).status, ParseStatus::complete);
  EXPECT_EQ(h.status, 100);
  const size_t off = h.head_size;
  ASSERT_EQ(parse_response(s.data() + off, s.size() - off, Method::POST, {}, h).status,
            ParseStatus::complete);
  EXPECT_EQ(h.status, 201);
  EXPECT_EQ(h.framing, BodyFraming::content_length);
  EXPECT_EQ(h.content_length, 1u);
}

TEST(ResponseLimits, TooLargeAndTooManyAre502) {
  ResponseHead h;
  std::string big = "HTTP/1.1 200 OK\r\nX: " + std::string(200, 'x') + "\r\n\r\n";
  ParseResult r = parse_response(big.data(), big.size(), Method::GET, ParseLimits{128, 64, 8}, h);
  EXPECT_EQ(r.status, ParseStatus::error);
  EXPECT_EQ(r.error_status, 502);
  std::string many = "HTTP/1.1 200 OK\r\n";
  for (int i = 0; i < 9; ++i) many += "X: y\r\n";
  many += "\r\n";
  r = parse_response(many.data(), many.size(), Method::GET, ParseLimits{4096, 64, 8}, h);
  EXPECT_EQ(r.status, ParseStatus::error);
  EXPECT_EQ(r.error_status, 502);
}

}  // namespace
}  // namespace portico::http
