// Request-head parser: an RFC case table (every strictness rule, with the status it answers), field
// extraction, pipelining and incremental parsing.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "http/parser.h"

namespace portico::http {
namespace {

using namespace std::string_literals;

struct Case {
  std::string name;  // test name suffix: [A-Za-z0-9_]
  std::string rfc;   // the rule, by RFC section
  std::string input;
  ParseStatus status;
  uint16_t error = 0;  // expected error_status (0 unless status == error)
  ParseLimits limits{};
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name << " (" << c.rfc << ")";
}

const char* status_name(ParseStatus s) {
  switch (s) {
    case ParseStatus::complete:
      return "complete";
    case ParseStatus::incomplete:
      return "incomplete";
    case ParseStatus::error:
      return "error";
  }
  return "?";
}

// A valid HTTP/1.1 GET head with the given extra field lines (each ending in CRLF).
std::string get11(const std::string& fields) {
  return "GET / HTTP/1.1\r\nHost: a\r\n" + fields + "\r\n";
}
std::string post11(const std::string& fields) {
  return "POST / HTTP/1.1\r\nHost: a\r\n" + fields + "\r\n";
}
std::string with_host(const std::string& host) {
  return "GET / HTTP/1.1\r\nHost: " + host + "\r\n\r\n";
}
std::string request_line(const std::string& line) {
  return line + "\r\nHost: a\r\n\r\n";
}

constexpr ParseStatus kOk = ParseStatus::complete;
constexpr ParseStatus kErr = ParseStatus::error;

std::vector<Case> cases() {
  const ParseLimits small_headers{64 * 1024, 8 * 1024, 4};
  const ParseLimits small_head{64, 8 * 1024, kMaxHeaders};
  const ParseLimits small_target{64 * 1024, 16, kMaxHeaders};
  const std::string exactly_64 = "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(64 - 32, 'x') + "\r\n\r\n";
  const std::string target_16 = "/" + std::string(15, 't');
  const std::string target_17 = "/" + std::string(16, 't');
  std::string many_fields;
  for (int i = 0; i < 3; ++i) many_fields += "X" + std::to_string(i) + ": v\r\n";

  return {
      // ---- valid heads --------------------------------------------------------------------------------
      {"SimpleGet", "RFC 9112 3", get11(""), kOk},
      {"Http10WithoutHost", "RFC 9112 3.2 (Host required on 1.1 only)", "GET / HTTP/1.0\r\n\r\n", kOk},
      {"LeadingEmptyLine", "RFC 9112 2.2", "\r\n" + get11(""), kOk},
      {"SeveralLeadingEmptyLines", "RFC 9112 2.2", "\r\n\r\n\r\n" + get11(""), kOk},
      {"QueryString", "RFC 9112 3.2.1", request_line("GET /p?a=1&b=?2 HTTP/1.1"), kOk},
      {"EmptyQuery", "RFC 9112 3.2.1", request_line("GET /p? HTTP/1.1"), kOk},
      {"AbsoluteForm", "RFC 9112 3.2.2", "GET http://a.example/x?y HTTP/1.1\r\nHost: a.example\r\n\r\n", kOk},
      {"AbsoluteFormHttps", "RFC 9112 3.2.2", "GET https://a:8443/ HTTP/1.1\r\nHost: a:8443\r\n\r\n", kOk},
      {"AbsoluteFormDefaultPort", "RFC 9112 3.2.2", "GET http://a/ HTTP/1.1\r\nHost: A:80\r\n\r\n", kOk},
      {"AbsoluteFormEmptyPath", "RFC 9110 4.2.3", "GET http://a HTTP/1.1\r\nHost: a\r\n\r\n", kOk},
      {"AbsoluteFormSchemeCase", "RFC 3986 3.1", "GET HTTP://a/ HTTP/1.1\r\nHost: a\r\n\r\n", kOk},
      {"AbsoluteFormHttp10NoHost", "RFC 9112 3.2.2", "GET http://a/ HTTP/1.0\r\n\r\n", kOk},
      {"ConnectAuthorityForm", "RFC 9112 3.2.3",
       "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example:443\r\n\r\n", kOk},
      {"ConnectIpv6", "RFC 9112 3.2.3", "CONNECT [::1]:443 HTTP/1.1\r\nHost: [::1]:443\r\n\r\n", kOk},
      {"OptionsAsterisk", "RFC 9112 3.2.4", "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n", kOk},
      {"ExtensionMethod", "RFC 9110 9.1", request_line("PURGE /x HTTP/1.1"), kOk},
      {"LowercaseMethodIsAToken", "RFC 9110 9.1 (case-sensitive)", request_line("get / HTTP/1.1"), kOk},
      {"ObsTextInValue", "RFC 9110 5.5 obs-text", get11("X: caf\xc3\xa9\x80\xff\r\n"), kOk},
      {"ObsTextInTarget", "RFC 9112 3.2 (raw UTF-8 tolerated)", request_line("GET /caf\xc3\xa9 HTTP/1.1"),
       kOk},
      {"HtabInValue", "RFC 9110 5.5", get11("X: a\tb\r\n"), kOk},
      {"EmptyValue", "RFC 9110 5.5", get11("X:\r\n"), kOk},
      {"OwsAroundValue", "RFC 9112 5.1", get11("X: \t v \t\r\n"), kOk},
      {"ContentLength", "RFC 9110 8.6", post11("Content-Length: 5\r\n"), kOk},
      {"ContentLengthZero", "RFC 9110 8.6", post11("Content-Length: 0\r\n"), kOk},
      {"ContentLengthLeadingZeros", "RFC 9110 8.6 1*DIGIT", post11("Content-Length: 007\r\n"), kOk},
      {"ContentLengthMax", "RFC 9110 8.6 (bounded: int64)", post11("Content-Length: 9223372036854775807\r\n"),
       kOk},
      {"Chunked", "RFC 9112 6.1", post11("Transfer-Encoding: chunked\r\n"), kOk},
      {"ChunkedUpperCase", "RFC 9112 7 (case-insensitive)", post11("Transfer-Encoding: CHUNKED\r\n"), kOk},
      {"ChunkedWithOws", "RFC 9112 5.1", post11("Transfer-Encoding: \t chunked \t\r\n"), kOk},
      {"Expect100", "RFC 9110 10.1.1", post11("Expect: 100-continue\r\nContent-Length: 1\r\n"), kOk},
      {"Expect100CaseInsensitive", "RFC 9110 10.1.1", post11("Expect: 100-Continue\r\n"), kOk},
      {"HostIpv4Port", "RFC 9110 7.2", with_host("127.0.0.1:8080"), kOk},
      {"HostIpv6", "RFC 3986 3.2.2", with_host("[2001:db8::1]"), kOk},
      {"HostIpv6Port", "RFC 3986 3.2.2", with_host("[::ffff:192.0.2.1]:8080"), kOk},
      {"HostFullIpv6", "RFC 3986 3.2.2", with_host("[1:2:3:4:5:6:7:8]"), kOk},
      {"HostEmpty", "RFC 9110 7.2 (empty when no authority)", with_host(""), kOk},
      {"HostUnderscore", "RFC 3986 3.2.2 reg-name", with_host("my_host.example"), kOk},
      {"ConnectionList", "RFC 9110 7.6.1", get11("Connection: , keep-alive ,, X-Foo,\r\n"), kOk},
      {"UpgradeWebsocket", "RFC 9110 7.8", get11("Connection: Upgrade\r\nUpgrade: websocket\r\n"), kOk},
      {"ConnectionNamesEndToEndFields", "RFC 9110 7.6.1",
       get11("Connection: TE, X-Forwarded-For, X-Real-IP, Cookie\r\nTE: trailers\r\n"), kOk},
      {"HeadExactlyAtLimit", "limit: max_head_size", exactly_64, kOk, 0, small_head},
      {"FieldsExactlyAtLimit", "limit: max_headers", get11(many_fields), kOk, 0, small_headers},
      {"TargetExactlyAtLimit", "limit: max_target_size", request_line("GET " + target_16 + " HTTP/1.1"), kOk,
       0, small_target},

      // ---- line endings -------------------------------------------------------------------------------
      {"BareLfAfterRequestLine", "RFC 9112 2.2 (bare LF)", "GET / HTTP/1.1\nHost: a\r\n\r\n", kErr, 400},
      {"BareLfAfterField", "RFC 9112 2.2 (bare LF)", "GET / HTTP/1.1\r\nHost: a\n\r\n", kErr, 400},
      {"BareLfEndOfHead", "RFC 9112 2.2 (bare LF)", "GET / HTTP/1.1\r\nHost: a\r\n\n", kErr, 400},
      {"BareLfInValue", "RFC 9112 2.2 (bare LF)", get11("X: a\nb\r\n"), kErr, 400},
      {"BareLfLeading", "RFC 9112 2.2 (bare LF)", "\n" + get11(""), kErr, 400},
      {"BareCrAfterRequestLine", "RFC 9112 2.2 (bare CR)", "GET / HTTP/1.1\rHost: a\r\n\r\n", kErr, 400},
      {"BareCrInValue", "RFC 9112 2.2 (bare CR)", get11("X: a\rb\r\n"), kErr, 400},
      {"BareCrEndOfHead", "RFC 9112 2.2 (bare CR)", "GET / HTTP/1.1\r\nHost: a\r\n\rX", kErr, 400},
      {"BareCrLeading", "RFC 9112 2.2 (bare CR)", "\r" + get11(""), kErr, 400},
      {"BareCrInTarget", "RFC 9112 3.2", request_line("GET /a\rb HTTP/1.1"), kErr, 400},

      // ---- request line -------------------------------------------------------------------------------
      {"DoubleSpaceAfterMethod", "RFC 9112 3 (single SP)", request_line("GET  / HTTP/1.1"), kErr, 400},
      {"DoubleSpaceBeforeVersion", "RFC 9112 3 (single SP)", request_line("GET /  HTTP/1.1"), kErr, 400},
      {"TabSeparator", "RFC 9112 3 (single SP)", request_line("GET\t/ HTTP/1.1"), kErr, 400},
      {"TrailingSpaceAfterVersion", "RFC 9112 3", request_line("GET / HTTP/1.1 "), kErr, 400},
      {"LeadingSpace", "RFC 9112 3 (method is a token)", request_line(" GET / HTTP/1.1"), kErr, 400},
      {"MethodNonToken", "RFC 9110 9.1 (token)", request_line("G(T / HTTP/1.1"), kErr, 400},
      {"MethodNonAscii", "RFC 9110 9.1 (token)", request_line("G\xc3\x89T / HTTP/1.1"), kErr, 400},
      {"Http09", "RFC 9112 3 (version required)", "GET /\r\n\r\n", kErr, 400},
      {"MissingTarget", "RFC 9112 3", request_line("GET HTTP/1.1"), kErr, 400},
      {"VersionLowercase", "RFC 9112 2.3 (case-sensitive)", request_line("GET / http/1.1"), kErr, 400},
      {"VersionGarbage", "RFC 9112 2.3", request_line("GET / HTTP/1.x"), kErr, 400},
      {"VersionTwoDigitMajor", "RFC 9112 2.3 (single digits)", request_line("GET / HTTP/10.1"), kErr, 400},
      {"VersionTwoDigitMinor", "RFC 9112 2.3 (single digits)", request_line("GET / HTTP/1.10"), kErr, 400},
      {"VersionNoMinor", "RFC 9112 2.3", request_line("GET / HTTP/1"), kErr, 400},
      {"Version20", "RFC 9110 6.2 -> 505", request_line("GET / HTTP/2.0"), kErr, 505},
      {"Version12", "RFC 9110 6.2 -> 505", request_line("GET / HTTP/1.2"), kErr, 505},
      {"Version09", "RFC 9110 6.2 -> 505", request_line("GET / HTTP/0.9"), kErr, 505},
      {"Version30", "RFC 9110 6.2 -> 505", request_line("GET / HTTP/3.0"), kErr, 505},
      {"Http2Preface", "RFC 9113 3.4 -> 505", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", kErr, 505},
      {"TargetControlChar", "RFC 9112 3.2 (no CTL)", request_line("GET /a\x01z HTTP/1.1"), kErr, 400},
      {"TargetNul", "RFC 9112 3.2 (no CTL)", request_line("GET /a\0z HTTP/1.1"s), kErr, 400},
      {"TargetTab", "RFC 9112 3.2 (no CTL)", request_line("GET /a\tb HTTP/1.1"), kErr, 400},
      {"TargetDel", "RFC 9112 3.2 (no CTL)", request_line("GET /a\x7f HTTP/1.1"), kErr, 400},
      {"TargetFragment", "RFC 9112 3.2 (no fragment)", request_line("GET /a#b HTTP/1.1"), kErr, 400},
      {"OriginFormWithoutSlash", "RFC 9112 3.2.1", request_line("GET a/b HTTP/1.1"), kErr, 400},
      {"AsteriskWithGet", "RFC 9112 3.2.4 (OPTIONS only)", request_line("GET * HTTP/1.1"), kErr, 400},
      {"AsteriskWithSuffix", "RFC 9112 3.2.4", request_line("OPTIONS *x HTTP/1.1"), kErr, 400},
      {"ConnectOriginForm", "RFC 9112 3.2.3 (CONNECT only authority)", request_line("CONNECT / HTTP/1.1"),
       kErr, 400},
      {"ConnectWithoutPort", "RFC 9112 3.2.3 (port required)",
       "CONNECT a.example HTTP/1.1\r\nHost: a.example\r\n\r\n", kErr, 400},
      {"ConnectHostMismatch", "RFC 9112 3.2.3 (Host must agree)",
       "CONNECT a.example:443 HTTP/1.1\r\nHost: b.example:443\r\n\r\n", kErr, 400},
      {"ConnectHostWithoutPort", "RFC 9112 3.2.3 (Host must agree)",
       "CONNECT a.example:443 HTTP/1.1\r\nHost: a.example\r\n\r\n", kErr, 400},
      {"AuthorityFormWithGet", "RFC 9112 3.2.3 (CONNECT only)", request_line("GET a.example:443 HTTP/1.1"),
       kErr, 400},
      {"AbsoluteFormFtp", "RFC 9112 3.2.2 (http/https only)", request_line("GET ftp://a/ HTTP/1.1"), kErr,
       400},
      {"AbsoluteFormNoSlashes", "RFC 9112 3.2.2", request_line("GET http:a/b HTTP/1.1"), kErr, 400},
      {"AbsoluteFormUserinfo", "RFC 9110 4.2.4 (no userinfo)", request_line("GET http://u@a/ HTTP/1.1"), kErr,
       400},
      {"AbsoluteFormEmptyHost", "RFC 9110 4.2.1", request_line("GET http:///x HTTP/1.1"), kErr, 400},
      {"AbsoluteFormBadPort", "RFC 3986 3.2.3", request_line("GET http://a:x/ HTTP/1.1"), kErr, 400},
      {"AbsoluteFormHostMismatch", "RFC 9112 3.2.2 (Host must agree)",
       "GET http://a/ HTTP/1.1\r\nHost: b\r\n\r\n", kErr, 400},
      {"AbsoluteFormPortMismatch", "RFC 9112 3.2.2 (Host must agree)",
       "GET http://a:8080/ HTTP/1.1\r\nHost: a\r\n\r\n", kErr, 400},
      {"AbsoluteFormHttpsDefaultPort", "RFC 9112 3.2.2 (Host must agree)",
       "GET https://a/ HTTP/1.1\r\nHost: a:80\r\n\r\n", kErr, 400},
      {"AbsoluteFormWithoutHostField", "RFC 9112 3.2 (Host still required)", "GET http://a/ HTTP/1.1\r\n\r\n",
       kErr, 400},
      {"TargetTooLong", "RFC 9112 3 -> 414", request_line("GET " + target_17 + " HTTP/1.1"), kErr, 414,
       small_target},
      {"TargetTooLongIncomplete", "RFC 9112 3 -> 414 (early)", "GET " + target_17, kErr, 414, small_target},
      {"TargetTooLongDefault", "RFC 9112 3 -> 414",
       request_line("GET /" + std::string(9000, 'a') + " HTTP/1.1"), kErr, 414},

      // ---- field lines --------------------------------------------------------------------------------
      {"SpaceBeforeColon", "RFC 9112 5.1 (no WS before colon)", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", kErr,
       400},
      {"TabBeforeColon", "RFC 9112 5.1 (no WS before colon)", get11("X\t: a\r\n"), kErr, 400},
      {"ObsFold", "RFC 9112 5.2 (obs-fold)", get11("X: a\r\n b\r\n"), kErr, 400},
      {"ObsFoldTab", "RFC 9112 5.2 (obs-fold)", get11("X: a\r\n\tb\r\n"), kErr, 400},
      {"WhitespaceBeforeFirstField", "RFC 9112 2.2", "GET / HTTP/1.1\r\n Host: a\r\n\r\n", kErr, 400},
      {"EmptyFieldName", "RFC 9110 5.1 (token)", get11(": a\r\n"), kErr, 400},
      {"FieldNameWithSpace", "RFC 9110 5.1 (token)", get11("X Y: a\r\n"), kErr, 400},
      {"FieldNameNonToken", "RFC 9110 5.1 (token)", get11("X(Y): a\r\n"), kErr, 400},
      {"FieldNameNonAscii", "RFC 9110 5.1 (token)", get11("X\xc3\xa9: a\r\n"), kErr, 400},
      {"FieldWithoutColon", "RFC 9112 5", get11("NoColon\r\n"), kErr, 400},
      {"NulInValue", "RFC 9110 5.5 (no NUL)", get11("X: a\0b\r\n"s), kErr, 400},
      {"VerticalTabInValue", "RFC 9110 5.5 (no CTL)", get11("X: a\x0b b\r\n"), kErr, 400},
      {"FormFeedInValue", "RFC 9110 5.5 (no CTL)", get11("X: a\x0c\r\n"), kErr, 400},
      {"EscInValue", "RFC 9110 5.5 (no CTL)", get11("X: \x1b[0m\r\n"), kErr, 400},
      {"DelInValue", "RFC 9110 5.5 (no CTL)", get11("X: a\x7f\r\n"), kErr, 400},
      {"TooManyFields", "RFC 6585 5 -> 431", get11(many_fields + "X9: v\r\n"), kErr, 431, small_headers},
      {"HeadTooLarge", "RFC 6585 5 -> 431", get11("X: " + std::string(100, 'x') + "\r\n"), kErr, 431,
       small_head},
      {"HeadOneByteTooLarge", "RFC 6585 5 -> 431",
       "GET / HTTP/1.1\r\nHost: a\r\nX: " + std::string(64 - 31, 'x') + "\r\n\r\n", kErr, 431, small_head},
      {"UnterminatedHeadTooLarge", "RFC 6585 5 -> 431", "GET / HTTP/1.1\r\nX: " + std::string(80, 'x'), kErr,
       431, small_head},

      // ---- Host ---------------------------------------------------------------------------------------
      {"HostMissing", "RFC 9112 3.2 (1.1 requires Host)", "GET / HTTP/1.1\r\n\r\n", kErr, 400},
      {"HostDuplicate", "RFC 9112 3.2 (exactly one)", get11("Host: a\r\n"), kErr, 400},
      {"HostDuplicateDifferent", "RFC 9112 3.2 (exactly one)", get11("host: b\r\n"), kErr, 400},
      {"HostWithSpace", "RFC 9110 7.2", with_host("a b"), kErr, 400},
      {"HostWithSlash", "RFC 9110 7.2", with_host("a/b"), kErr, 400},
      {"HostWithUserinfo", "RFC 9110 7.2", with_host("u@a"), kErr, 400},
      {"HostList", "RFC 9110 7.2 (single value)", with_host("a, b"), kErr, 400},
      {"HostPercentEncoded", "RFC 3986 3.2.2 (strict: no pct-encoded)", with_host("a%2eb"), kErr, 400},
      {"HostEmptyPort", "RFC 3986 3.2.3 (strict: port digits)", with_host("a:"), kErr, 400},
      {"HostPortNotDigits", "RFC 3986 3.2.3", with_host("a:8o"), kErr, 400},
      {"HostPortSigned", "RFC 3986 3.2.3", with_host("a:+80"), kErr, 400},
      {"HostPortTooLarge", "RFC 3986 3.2.3", with_host("a:65536"), kErr, 400},
      {"HostPortTooLong", "RFC 3986 3.2.3", with_host("a:000080"), kErr, 400},
      {"HostPortZero", "RFC 3986 3.2.3", with_host("a:0"), kErr, 400},
      {"HostOnlyPort", "RFC 3986 3.2.2", with_host(":80"), kErr, 400},
      {"HostTwoColons", "RFC 3986 3.2.2", with_host("a:80:80"), kErr, 400},
      {"HostIpv6Unbracketed", "RFC 3986 3.2.2", with_host("::1"), kErr, 400},
      {"HostIpv6Unclosed", "RFC 3986 3.2.2", with_host("[::1"), kErr, 400},
      {"HostIpv6BadHex", "RFC 3986 3.2.2", with_host("[::g]"), kErr, 400},
      {"HostIpv6TooFewGroups", "RFC 3986 3.2.2", with_host("[1:2:3]"), kErr, 400},
      {"HostIpv6TooManyGroups", "RFC 3986 3.2.2", with_host("[1:2:3:4:5:6:7:8:9]"), kErr, 400},
      {"HostIpv6TwoCompressions", "RFC 3986 3.2.2", with_host("[1::2::3]"), kErr, 400},
      {"HostIpv6ZoneId", "RFC 6874 (zone ids not accepted)", with_host("[fe80::1%25eth0]"), kErr, 400},
      {"HostIpv6BadIpv4Tail", "RFC 3986 3.2.2", with_host("[::ffff:1.2.3.256]"), kErr, 400},
      {"HostIpv6JunkAfterBracket", "RFC 3986 3.2.2", with_host("[::1]x"), kErr, 400},
      {"HostIpvFuture", "RFC 3986 3.2.2 (IPvFuture not accepted)", with_host("[v1.x]"), kErr, 400},

      // ---- Content-Length -----------------------------------------------------------------------------
      {"ContentLengthNonDigit", "RFC 9110 8.6", post11("Content-Length: abc\r\n"), kErr, 400},
      {"ContentLengthPlus", "RFC 9110 8.6 (no sign)", post11("Content-Length: +5\r\n"), kErr, 400},
      {"ContentLengthMinus", "RFC 9110 8.6 (no sign)", post11("Content-Length: -5\r\n"), kErr, 400},
      {"ContentLengthInnerSpace", "RFC 9110 8.6", post11("Content-Length: 1 2\r\n"), kErr, 400},
      {"ContentLengthHex", "RFC 9110 8.6", post11("Content-Length: 0x5\r\n"), kErr, 400},
      {"ContentLengthDecimalPoint", "RFC 9110 8.6", post11("Content-Length: 5.0\r\n"), kErr, 400},
      {"ContentLengthEmpty", "RFC 9110 8.6", post11("Content-Length:\r\n"), kErr, 400},
      {"ContentLengthSameList", "RFC 9110 8.6 (strict: no lists)", post11("Content-Length: 5, 5\r\n"), kErr,
       400},
      {"ContentLengthDifferentList", "RFC 9112 6.3 rule 5", post11("Content-Length: 5, 6\r\n"), kErr, 400},
      {"ContentLengthRepeatedSame", "RFC 9110 8.6 (strict: one field)",
       post11("Content-Length: 5\r\nContent-Length: 5\r\n"), kErr, 400},
      {"ContentLengthRepeatedDifferent", "RFC 9112 6.3 rule 5",
       post11("Content-Length: 5\r\ncontent-length: 6\r\n"), kErr, 400},
      {"ContentLengthOverflow", "RFC 9110 8.6 (bounded)",
       post11("Content-Length: 99999999999999999999999\r\n"), kErr, 400},
      {"ContentLengthAboveInt64", "RFC 9110 8.6 (bounded)", post11("Content-Length: 9223372036854775808\r\n"),
       kErr, 400},
      {"ContentLengthWithTransferEncoding", "RFC 9112 6.1 (CL and TE)",
       post11("Content-Length: 5\r\nTransfer-Encoding: chunked\r\n"), kErr, 400},
      {"TransferEncodingWithContentLength", "RFC 9112 6.1 (CL and TE)",
       post11("Transfer-Encoding: chunked\r\nContent-Length: 5\r\n"), kErr, 400},
      {"TransferEncodingGzipWithContentLength", "RFC 9112 6.1 (CL and TE)",
       post11("Transfer-Encoding: gzip\r\nContent-Length: 5\r\n"), kErr, 400},

      // ---- Transfer-Encoding --------------------------------------------------------------------------
      {"TransferEncodingHttp10", "RFC 9112 6.1 (faulty framing)",
       "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", kErr, 400},
      {"ChunkedThenIdentity", "RFC 9112 6.3 rule 4 (chunked last)",
       post11("Transfer-Encoding: chunked, identity\r\n"), kErr, 400},
      {"IdentityOnly", "RFC 9112 6.3 rule 4 (chunked last)", post11("Transfer-Encoding: identity\r\n"), kErr,
       400},
      {"GzipOnly", "RFC 9112 6.3 rule 4 (chunked last)", post11("Transfer-Encoding: gzip\r\n"), kErr, 400},
      {"GzipThenChunked", "RFC 9112 6.1 -> 501 (unknown coding)",
       post11("Transfer-Encoding: gzip, chunked\r\n"), kErr, 501},
      {"GzipThenChunkedTwoFields", "RFC 9112 6.1 -> 501",
       post11("Transfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n"), kErr, 501},
      {"ChunkedThenGzipTwoFields", "RFC 9112 6.3 rule 4 (chunked last)",
       post11("Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n"), kErr, 400},
      {"ChunkedTwice", "RFC 9112 6.1 (chunked once)", post11("Transfer-Encoding: chunked, chunked\r\n"), kErr,
       400},
      {"ChunkedTwiceTwoFields", "RFC 9112 6.1 (chunked once)",
       post11("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n"), kErr, 400},
      {"XChunked", "RFC 9112 6.3 rule 4 (exact token)", post11("Transfer-Encoding: xchunked\r\n"), kErr, 400},
      {"ChunkedX", "RFC 9112 6.3 rule 4 (exact token)", post11("Transfer-Encoding: chunkedx\r\n"), kErr, 400},
      {"ChunkedInnerSpace", "RFC 9112 7 (token)", post11("Transfer-Encoding: chun ked\r\n"), kErr, 400},
      {"ChunkedQuoted", "RFC 9112 7 (token)", post11("Transfer-Encoding: \"chunked\"\r\n"), kErr, 400},
      {"ChunkedWithParameter", "RFC 9112 7 (chunked has no parameters)",
       post11("Transfer-Encoding: chunked;q=1\r\n"), kErr, 400},
      {"ChunkedVerticalTab", "RFC 9110 5.5 (no CTL)", post11("Transfer-Encoding: chunked\x0b\r\n"), kErr,
       400},
      {"ChunkedFormFeedPrefix", "RFC 9110 5.5 (no CTL)",
       post11("Transfer-Encoding: \x0c"
              "chunked\r\n"),
       kErr, 400},
      {"ChunkedTrailingComma", "RFC 9110 5.6.1 (strict: no empty elements)",
       post11("Transfer-Encoding: chunked,\r\n"), kErr, 400},
      {"ChunkedLeadingComma", "RFC 9110 5.6.1 (strict: no empty elements)",
       post11("Transfer-Encoding: ,chunked\r\n"), kErr, 400},
      {"TransferEncodingEmpty", "RFC 9112 6.1", post11("Transfer-Encoding:\r\n"), kErr, 400},
      {"TransferEncodingNameWithSpace", "RFC 9112 5.1", post11("Transfer-Encoding : chunked\r\n"), kErr, 400},
      {"TransferEncodingObsFold", "RFC 9112 5.2", post11("Transfer-Encoding:\r\n chunked\r\n"), kErr, 400},

      // ---- Connection / Expect ------------------------------------------------------------------------
      {"ConnectionNonToken", "RFC 9110 7.6.1 (tokens)", get11("Connection: close;x\r\n"), kErr, 400},
      {"ConnectionQuoted", "RFC 9110 7.6.1 (tokens)", get11("Connection: \"close\"\r\n"), kErr, 400},
      // A proxy honouring these drops the field: the body becomes the next request, or the host changes.
      {"ConnectionNamesContentLength", "RFC 9110 7.6.1 (smuggling)",
       post11("Content-Length: 5\r\nConnection: Content-Length\r\n"), kErr, 400},
      {"ConnectionNamesContentLengthFirst", "RFC 9110 7.6.1 (smuggling)",
       post11("Connection: content-length\r\nContent-Length: 5\r\n"), kErr, 400},
      {"ConnectionNamesContentLengthInList", "RFC 9110 7.6.1 (smuggling)",
       post11("Content-Length: 5\r\nConnection: keep-alive\r\nConnection: x-a, CONTENT-LENGTH\r\n"), kErr,
       400},
      {"ConnectionNamesContentLengthNoBody", "RFC 9110 7.6.1 (smuggling)",
       get11("Connection: close, Content-Length\r\n"), kErr, 400},
      {"ConnectionNamesTransferEncoding", "RFC 9110 7.6.1 (smuggling)",
       post11("Transfer-Encoding: chunked\r\nConnection: Transfer-Encoding\r\n"), kErr, 400},
      {"ConnectionNamesHost", "RFC 9110 7.6.1 (routing)", get11("Connection: Host\r\n"), kErr, 400},
      {"ConnectionNamesHostHttp10", "RFC 9110 7.6.1 (routing)",
       "GET / HTTP/1.0\r\nConnection: keep-alive, host\r\n\r\n", kErr, 400},
      {"ExpectUnknown", "RFC 9110 10.1.1 -> 417", post11("Expect: foo\r\n"), kErr, 417},
      {"ExpectList", "RFC 9110 10.1.1 -> 417", post11("Expect: 100-continue, foo\r\n"), kErr, 417},
      {"ExpectEmpty", "RFC 9110 10.1.1 -> 417", post11("Expect:\r\n"), kErr, 417},
  };
}

class RequestTable : public ::testing::TestWithParam<Case> {};

TEST_P(RequestTable, Parses) {
  const Case& c = GetParam();
  RequestHead head;
  const ParseResult r = parse_request(c.input.data(), c.input.size(), c.limits, head);
  EXPECT_EQ(status_name(r.status), std::string(status_name(c.status))) << c.rfc << ": " << r.error_reason;
  EXPECT_EQ(r.error_status, c.error) << c.rfc << ": " << r.error_reason;
  if (r.status == ParseStatus::error) {
    EXPECT_STRNE(r.error_reason, "");
  }
  if (c.status == ParseStatus::complete) {
    EXPECT_EQ(head.head_size, c.input.size());
  }
}

// A prefix of a valid head is never rejected or completed; a prefix of an invalid one is incomplete or
// already the same error (the parser rejects as soon as the bytes decide, and never changes its mind).
TEST_P(RequestTable, EveryPrefixIsIncompleteOrTheSameError) {
  const Case& c = GetParam();
  RequestHead head;
  const ParseResult full = parse_request(c.input.data(), c.input.size(), c.limits, head);
  for (size_t k = 0; k < c.input.size(); ++k) {
    const std::string prefix = c.input.substr(0, k);  // own allocation, so ASan catches reads past k
    const ParseResult r = parse_request(prefix.data(), k, c.limits, head);
    if (r.status == ParseStatus::incomplete) continue;
    ASSERT_EQ(c.status, ParseStatus::error)
        << "prefix " << k << ": " << status_name(r.status) << " " << r.error_reason;
    ASSERT_EQ(r.status, ParseStatus::error) << "prefix " << k;
    ASSERT_EQ(r.error_status, full.error_status) << "prefix " << k << ": " << r.error_reason;
  }
}

INSTANTIATE_TEST_SUITE_P(Rfc, RequestTable, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

// ---- extracted fields ---------------------------------------------------------------------------------

// The head's views point into `s`: callers pass literals or strings that outlive the checks.
ParseResult parse(std::string_view s, RequestHead& head, ParseLimits limits = {}) {
  return parse_request(s.data(), s.size(), limits, head);
}

TEST(RequestFields, OriginForm) {
  const std::string s = "GET /a/b?x=1&y=2 HTTP/1.1\r\nHost: Example.COM:8080\r\nUser-Agent:  t/1 \r\n\r\n";
  RequestHead h;
  ASSERT_EQ(parse(s, h).status, ParseStatus::complete);
  EXPECT_EQ(h.method, Method::GET);
  EXPECT_EQ(h.method_text, "GET");
  EXPECT_EQ(h.target, "/a/b?x=1&y=2");
  EXPECT_EQ(h.path, "/a/b");
  EXPECT_EQ(h.query, "x=1&y=2");
  EXPECT_EQ(h.host, "Example.COM");
  EXPECT_EQ(h.host_header, "Example.COM:8080");
  EXPECT_EQ(h.version_minor, 1);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(h.framing, BodyFraming::none);
  EXPECT_EQ(h.content_length, 0u);
  ASSERT_EQ(h.header_count, 2);
  EXPECT_EQ(h.headers[1].name, "User-Agent");
  EXPECT_EQ(h.headers[1].value, "t/1");
  EXPECT_EQ(h.head_size, s.size());
}

TEST(RequestFields, AllMethods) {
  const std::pair<const char*, Method> methods[] = {
      {"GET", Method::GET},     {"HEAD", Method::HEAD},     {"POST", Method::POST},
      {"PUT", Method::PUT},     {"DELETE", Method::DELETE}, {"OPTIONS", Method::OPTIONS},
      {"TRACE", Method::TRACE}, {"PATCH", Method::PATCH},   {"PROPFIND", Method::OTHER},
      {"get", Method::OTHER},   {"GETS", Method::OTHER},    {"PUTT", Method::OTHER},
  };
  for (const auto& [text, method] : methods) {
    RequestHead h;
    const std::string s = std::string(text) + " / HTTP/1.1\r\nHost: a\r\n\r\n";
    ASSERT_EQ(parse(s, h).status, ParseStatus::complete) << text;
    EXPECT_EQ(h.method, method) << text;
    EXPECT_EQ(h.method_text, text);
  }
  RequestHead h;
  ASSERT_EQ(parse("CONNECT a:1 HTTP/1.1\r\nHost: a:1\r\n\r\n", h).status, ParseStatus::complete);
  EXPECT_EQ(h.method, Method::CONNECT);
}

TEST(RequestFields, AbsoluteFormTakesHostFromAuthority) {
  RequestHead h;
  ASSERT_EQ(parse("GET http://Api.Example:80/v1/x?q=1 HTTP/1.1\r\nHost: api.example\r\n\r\n", h).status,
            ParseStatus::complete);
  EXPECT_EQ(h.target, "http://Api.Example:80/v1/x?q=1");
  EXPECT_EQ(h.path, "/v1/x");
  EXPECT_EQ(h.query, "q=1");
  EXPECT_EQ(h.host, "Api.Example");
  EXPECT_EQ(h.host_header, "api.example");
}

TEST(RequestFields, AbsoluteFormEmptyPathIsRoot) {
  RequestHead h;
  ASSERT_EQ(parse("GET http://a?q HTTP/1.1\r\nHost: a\r\n\r\n", h).status, ParseStatus::complete);
  EXPECT_EQ(h.path, "/");
  EXPECT_EQ(h.query, "q");
  ASSERT_EQ(parse("GET https://a HTTP/1.1\r\nHost: a:443\r\n\r\n", h).status, ParseStatus::complete);
  EXPECT_EQ(h.path, "/");
  EXPECT_EQ(h.query, "");
}

TEST(RequestFields, ConnectAndAsterisk) {
  RequestHead h;
  ASSERT_EQ(parse("CONNECT [2001:db8::2]:8443 HTTP/1.1\r\nHost: [2001:db8::2]:8443\r\n\r\n", h).status,
            ParseStatus::complete);
  EXPECT_EQ(h.host, "2001:db8::2");
  EXPECT_EQ(h.target, "[2001:db8::2]:8443");
  EXPECT_EQ(h.path, "");
  ASSERT_EQ(parse("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n", h).status, ParseStatus::complete);
  EXPECT_EQ(h.target, "*");
  EXPECT_EQ(h.path, "");
  EXPECT_EQ(h.host, "h");
}

TEST(RequestFields, Ipv6HostWithoutBrackets) {
  RequestHead h;
  ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n", h).status, ParseStatus::complete);
  EXPECT_EQ(h.host, "::1");
  EXPECT_EQ(h.host_header, "[::1]:8080");
}

TEST(RequestFields, Http10KeepAlive) {
  RequestHead h;
  ASSERT_EQ(parse("GET / HTTP/1.0\r\n\r\n", h).status, ParseStatus::complete);
  EXPECT_EQ(h.version_minor, 0);
  EXPECT_FALSE(h.keep_alive);
  EXPECT_EQ(h.host, "");
  ASSERT_EQ(parse("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n", h).status, ParseStatus::complete);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(h.connection, uint32_t{kConnKeepAlive});
  ASSERT_EQ(parse("GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n", h).status,
            ParseStatus::complete);
  EXPECT_FALSE(h.keep_alive);
}

TEST(RequestFields, Http11Close) {
  RequestHead h;
  ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", h).status, ParseStatus::complete);
  EXPECT_FALSE(h.keep_alive);
  EXPECT_EQ(h.connection, uint32_t{kConnClose});
  ASSERT_EQ(parse("GET / HTTP/1.1\r\nHost: a\r\nConnection: X-Trace, CLOSE\r\nConnection: upgrade\r\n\r\n", h)
                .status,
            ParseStatus::complete);
  EXPECT_EQ(h.connection, uint32_t{kConnClose | kConnOther | kConnUpgrade});
  EXPECT_FALSE(h.upgrade);  // no Upgrade field
}

TEST(RequestFields, Upgrade) {
  RequestHead h;
  ASSERT_EQ(
      parse("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: keep-alive, Upgrade\r\nUpgrade: websocket\r\n\r\n", h)
          .status,
      ParseStatus::complete);
  EXPECT_TRUE(h.upgrade);
  ASSERT_EQ(parse("GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n", h).status,
            ParseStatus::complete);
  EXPECT_FALSE(h.upgrade);  // Upgrade not listed in Connection
  ASSERT_EQ(parse("GET /ws HTTP/1.0\r\nConnection: upgrade\r\nUpgrade: websocket\r\n\r\n", h).status,
            ParseStatus::complete);
  EXPECT_FALSE(h.upgrade);  // RFC 9110 7.8: ignored in HTTP/1.0
}

TEST(RequestFields, ExpectContinue) {
  RequestHead h;
  ASSERT_EQ(
      parse("PUT /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", h).status,
      ParseStatus::complete);
  EXPECT_TRUE(h.expect_continue);
  ASSERT_EQ(parse("PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", h).status,
            ParseStatus::complete);
  EXPECT_FALSE(h.expect_continue);  // RFC 9110 10.1.1: ignored in HTTP/1.0
}

TEST(RequestFields, Framing) {
  RequestHead h;
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 42\r\n\r\n", h).status,
            ParseStatus::complete);
  EXPECT_EQ(h.framing, BodyFraming::content_length);
  EXPECT_EQ(h.content_length, 42u);
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n", h).status,
            ParseStatus::complete);
  EXPECT_EQ(h.framing, BodyFraming::none);
  EXPECT_EQ(h.content_length, 0u);
  ASSERT_EQ(parse("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: Chunked\r\n\r\n", h).status,
            ParseStatus::complete);
  EXPECT_EQ(h.framing, BodyFraming::chunked);
  ASSERT_EQ(parse("POST / HTTP/1.0\r\nContent-Length: 7\r\n\r\n", h).status, ParseStatus::complete);
  EXPECT_EQ(h.framing, BodyFraming::content_length);
  EXPECT_EQ(h.content_length, 7u);
}

TEST(RequestFields, ReusedHeadIsReset) {
  RequestHead h;
  ASSERT_EQ(parse("POST /a?b HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\nExpect: 100-continue\r\n"
                  "Connection: close\r\n\r\n",
                  h)
                .status,
            ParseStatus::complete);
  ASSERT_EQ(parse("GET /c HTTP/1.1\r\nHost: b\r\n\r\n", h).status, ParseStatus::complete);
  EXPECT_EQ(h.framing, BodyFraming::none);
  EXPECT_EQ(h.content_length, 0u);
  EXPECT_EQ(h.query, "");
  EXPECT_FALSE(h.expect_continue);
  EXPECT_EQ(h.connection, 0u);
  EXPECT_TRUE(h.keep_alive);
  EXPECT_EQ(h.header_count, 1);
}

TEST(RequestFields, ErrorReasonsAreSpecific) {
  RequestHead h;
  ParseResult r = parse(post11("Content-Length: 1\r\nTransfer-Encoding: chunked\r\n"), h);
  EXPECT_STREQ(r.error_reason, "both Content-Length and Transfer-Encoding");
  r = parse(get11("X : y\r\n"), h);
  EXPECT_STREQ(r.error_reason, "whitespace between field name and colon");
  r = parse(get11("X: y\r\n z\r\n"), h);
  EXPECT_STREQ(r.error_reason, "obsolete line folding");
  r = parse(post11("Content-Length: 5\r\nConnection: Content-Length\r\n"), h);
  EXPECT_STREQ(r.error_reason, "Connection names Content-Length, Transfer-Encoding or Host");
}

// ---- pipelining and incremental parsing -----------------------------------------------------------------

TEST(RequestPipelining, TwoRequestsBackToBack) {
  const std::string first = "GET /one HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string second = "POST /two HTTP/1.1\r\nHost: b\r\nContent-Length: 3\r\n\r\n";
  const std::string buf = first + second + "abc";
  RequestHead h;
  ParseResult r = parse_request(buf.data(), buf.size(), {}, h);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(h.head_size, first.size());
  EXPECT_EQ(h.path, "/one");
  const size_t off = h.head_size;
  r = parse_request(buf.data() + off, buf.size() - off, {}, h);
  ASSERT_EQ(r.status, ParseStatus::complete);
  EXPECT_EQ(h.head_size, second.size());
  EXPECT_EQ(h.path, "/two");
  EXPECT_EQ(h.host, "b");
  EXPECT_EQ(h.content_length, 3u);
}

TEST(RequestPipelining, ThirdRequestIncomplete) {
  const std::string buf =
      "GET /1 HTTP/1.1\r\nHost: a\r\n\r\nGET /2 HTTP/1.1\r\nHost: a\r\n\r\nGET /3 HTTP/1.1\r\nHo";
  RequestHead h;
  size_t off = 0;
  int complete = 0;
  while (true) {
    const ParseResult r = parse_request(buf.data() + off, buf.size() - off, {}, h);
    if (r.status != ParseStatus::complete) {
      EXPECT_EQ(r.status, ParseStatus::incomplete);
      break;
    }
    ++complete;
    off += h.head_size;
  }
  EXPECT_EQ(complete, 2);
}

TEST(RequestIncremental, EverySplitOfAComplexRequest) {
  const std::string s =
      "\r\nPOST http://api.example:8080/v1/items?limit=10 HTTP/1.1\r\n"
      "Host: API.example:8080\r\n"
      "User-Agent: curl/8.0 \xc3\xa9\r\n"
      "Connection: keep-alive, Upgrade\r\nUpgrade: h2c\r\n"
      "Transfer-Encoding: chunked\r\n"
      "Expect: 100-continue\r\n"
      "X-Empty:\r\n"
      "\r\n";
  RequestHead h;
  for (size_t k = 0; k < s.size(); ++k) {
    const std::string prefix = s.substr(0, k);
    ASSERT_EQ(parse_request(prefix.data(), k, {}, h).status, ParseStatus::incomplete) << k;
  }
  ASSERT_EQ(parse(s, h).status, ParseStatus::complete);
  EXPECT_EQ(h.head_size, s.size());
  EXPECT_EQ(h.framing, BodyFraming::chunked);
  EXPECT_TRUE(h.expect_continue);
  EXPECT_TRUE(h.upgrade);
  EXPECT_EQ(h.host, "api.example");
  EXPECT_EQ(h.path, "/v1/items");
  EXPECT_EQ(h.header_count, 7);
}

TEST(RequestLimits, DefaultHeadLimit) {
  std::string s = "GET / HTTP/1.1\r\nHost: a\r\nX: ";
  s.append(70 * 1024, 'x');
  RequestHead h;
  const ParseResult r = parse(s, h);
  EXPECT_EQ(r.status, ParseStatus::error);
  EXPECT_EQ(r.error_status, 431);
}

TEST(RequestLimits, MaxHeadersAboveArrayIsClamped) {
  std::string fields;
  for (size_t i = 0; i < kMaxHeaders; ++i) fields += "X: v\r\n";  // kMaxHeaders + Host
  RequestHead h;
  const ParseResult r = parse(get11(fields), h, ParseLimits{1 << 20, 8192, 100000});
  EXPECT_EQ(r.status, ParseStatus::error);
  EXPECT_EQ(r.error_status, 431);
  std::string exact;
  for (size_t i = 1; i < kMaxHeaders; ++i) exact += "X: v\r\n";
  EXPECT_EQ(parse(get11(exact), h).status, ParseStatus::complete);
  EXPECT_EQ(h.header_count, kMaxHeaders);
}

TEST(RequestLimits, LongValuesUseTheVectorPath) {
  // Values longer than 16 bytes with a control byte at every position: the SIMD scan must find each one.
  for (size_t pos = 0; pos < 40; ++pos) {
    std::string v(40, 'v');
    v[pos] = '\x01';
    RequestHead h;
    const ParseResult r = parse(get11("X: " + v + "\r\n"), h);
    EXPECT_EQ(r.error_status, 400) << pos;
    v[pos] = '\t';
    EXPECT_EQ(parse(get11("X: " + v + "\r\n"), h).status, ParseStatus::complete) << pos;
    std::string t(40, 't');
    t[pos] = '#';
    EXPECT_EQ(parse(request_line("GET /" + t + " HTTP/1.1"), h).error_status, 400) << pos;
    t[pos] = '?';
    ASSERT_EQ(parse(request_line("GET /" + t + " HTTP/1.1"), h).status, ParseStatus::complete) << pos;
    EXPECT_EQ(h.path.size(), pos + 1);
  }
}

}  // namespace
}  // namespace portico::http
