// normalize_path: RFC 3986 5.2.4 dot-segment removal and 6.2.2.2 unreserved-only percent-decoding.
#include <gtest/gtest.h>

#include <ostream>
#include <string>
#include <vector>

#include "http/path.h"

namespace portico::http {
namespace {

using namespace std::string_literals;

struct Case {
  std::string name;
  std::string rfc;
  std::string in;
  PathStatus status;
  std::string out = {};  // with normalized
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name << " (" << c.rfc << ")";
}

constexpr PathStatus kSame = PathStatus::unchanged;
constexpr PathStatus kNorm = PathStatus::normalized;
constexpr PathStatus kBad = PathStatus::invalid;

std::vector<Case> cases() {
  return {
      // ---- already normal: returned unchanged ------------------------------------------------------------
      {"Root", "RFC 3986 3.3", "/", kSame},
      {"Plain", "RFC 3986 3.3", "/a/b/c.html", kSame},
      {"TrailingSlash", "RFC 3986 3.3", "/a/b/", kSame},
      {"DoubleSlashKept", "not merged (documented)", "/a//b", kSame},
      {"LeadingDoubleSlashKept", "not merged (documented)", "//a", kSame},
      {"DotPrefixSegment", "RFC 3986 5.2.4 (not a dot-segment)", "/a/.b", kSame},
      {"DotDotPrefixSegment", "RFC 3986 5.2.4 (not a dot-segment)", "/a/..b", kSame},
      {"DotDotSuffixSegment", "RFC 3986 5.2.4 (not a dot-segment)", "/a/b..", kSame},
      {"ThreeDots", "RFC 3986 5.2.4 (not a dot-segment)", "/.../x", kSame},
      {"EncodedSlashKept", "RFC 3986 2.2 (reserved stays encoded)", "/a%2Fb", kSame},
      {"EncodedSlashLowercaseKept", "RFC 3986 6.2.2.1 (hex case kept)", "/a%2fb", kSame},
      {"EncodedSpaceKept", "RFC 3986 2.1", "/a%20b", kSame},
      {"EncodedQuestionKept", "RFC 3986 2.2", "/a%3Fb", kSame},
      {"EncodedPercentKept", "RFC 3986 2.4", "/100%25", kSame},
      {"EncodedHighByteKept", "RFC 3986 2.1", "/caf%C3%A9", kSame},
      {"SubDelimsKept", "RFC 3986 3.3", "/a;b=c,d!$&'()*+@:", kSame},
      {"RawHighBytesKept", "bytes passed through", "/caf\xc3\xa9", kSame},

      // ---- dot segments (RFC 3986 5.2.4) ----------------------------------------------------------------
      {"SingleDot", "RFC 3986 5.2.4", "/.", kNorm, "/"},
      {"SingleDotDot", "RFC 3986 5.2.4", "/..", kNorm, "/"},
      {"DotAtEnd", "RFC 3986 5.2.4", "/a/.", kNorm, "/a/"},
      {"DotDotAtEnd", "RFC 3986 5.2.4", "/a/b/..", kNorm, "/a/"},
      {"DotDotToRoot", "RFC 3986 5.2.4", "/a/..", kNorm, "/"},
      {"DotInMiddle", "RFC 3986 5.2.4", "/a/./b", kNorm, "/a/b"},
      {"DotSlash", "RFC 3986 5.2.4", "/./", kNorm, "/"},
      {"DotDotInMiddle", "RFC 3986 5.2.4", "/a/../b", kNorm, "/b"},
      {"Rfc3986Example", "RFC 3986 5.2.4 example", "/a/b/c/./../../g", kNorm, "/a/g"},
      {"Rfc3986ExampleMid", "RFC 3986 5.2.4 example", "/mid/content=5/../6", kNorm, "/mid/6"},
      {"AboveRoot", "RFC 3986 5.2.4 (cannot climb above root)", "/../a", kNorm, "/a"},
      {"FarAboveRoot", "RFC 3986 5.2.4", "/../../../etc/passwd", kNorm, "/etc/passwd"},
      {"ClimbOut", "RFC 3986 5.2.4", "/a/b/../../../c", kNorm, "/c"},
      {"RouteEscape", "routing bypass", "/public/../admin", kNorm, "/admin"},
      {"EmptySegmentThenDotDot", "RFC 3986 5.2.4", "/a//../b", kNorm, "/a/b"},
      {"DoubleSlashWithDot", "RFC 3986 5.2.4", "//./a", kNorm, "//a"},
      {"DotDotTrailingSlash", "RFC 3986 5.2.4", "/a/b/../", kNorm, "/a/"},
      {"ManyDots", "RFC 3986 5.2.4", "/./././.", kNorm, "/"},

      // ---- percent-decoding of unreserved characters (RFC 3986 6.2.2.2) --------------------------------
      {"DecodeAlpha", "RFC 3986 6.2.2.2", "/%41%62", kNorm, "/Ab"},
      {"DecodeDigit", "RFC 3986 6.2.2.2", "/v%31", kNorm, "/v1"},
      {"DecodeTildeLower", "RFC 3986 6.2.2.2", "/%7e", kNorm, "/~"},
      {"DecodeTildeUpper", "RFC 3986 6.2.2.2", "/%7Euser", kNorm, "/~user"},
      {"DecodeMarks", "RFC 3986 6.2.2.2", "/%2D%2E%5F", kNorm, "/-._"},
      {"EncodedDotDot", "RFC 3986 6.2.2 (decode, then dot removal)", "/%2e%2e/admin", kNorm, "/admin"},
      {"EncodedDotDotMixed", "RFC 3986 6.2.2", "/a/.%2E/b", kNorm, "/b"},
      {"EncodedDot", "RFC 3986 6.2.2", "/a/%2E/b", kNorm, "/a/b"},
      {"EncodedDotDotEncodedSlash", "%2F stays: not a segment boundary", "/%2e%2e%2fadmin", kNorm,
       "/..%2fadmin"},
      {"DecodeKeepsReservedEscapes", "RFC 3986 2.2", "/%2F%41%3f", kNorm, "/%2FA%3f"},
      {"DecodeAfterSlashEscape", "RFC 3986 2.2", "/x/%2F/%2e%2e/y", kNorm, "/x/y"},

      // ---- invalid --------------------------------------------------------------------------------------
      {"Empty", "origin-form", "", kBad},
      {"NoLeadingSlash", "origin-form", "a/b", kBad},
      {"Asterisk", "origin-form", "*", kBad},
      {"TruncatedEscape", "RFC 3986 2.1", "/a%", kBad},
      {"TruncatedEscapeOneDigit", "RFC 3986 2.1", "/a%4", kBad},
      {"BadHexHigh", "RFC 3986 2.1", "/%G1", kBad},
      {"BadHexLow", "RFC 3986 2.1", "/%1G", kBad},
      {"DoublePercent", "RFC 3986 2.1", "/%%41", kBad},
      {"EncodedNul", "encoded NUL", "/a%00b", kBad},
      {"BadEscapeAfterChange", "validated in full", "/./%zz", kBad},
      {"EncodedNulAfterChange", "validated in full", "/a/../%00", kBad},
  };
}

class PathTable : public ::testing::TestWithParam<Case> {};

TEST_P(PathTable, Normalizes) {
  const Case& c = GetParam();
  std::string out = "sentinel";
  const PathStatus s = normalize_path(c.in, out);
  ASSERT_EQ(static_cast<int>(s), static_cast<int>(c.status)) << c.rfc;
  if (s == PathStatus::normalized) {
    EXPECT_EQ(out, c.out) << c.rfc;
    std::string again = "sentinel";
    EXPECT_EQ(normalize_path(out, again), PathStatus::unchanged) << "idempotent";
    EXPECT_EQ(again, "sentinel");
  } else {
    EXPECT_EQ(out, "sentinel") << "out untouched";
  }
}

INSTANTIATE_TEST_SUITE_P(Rfc, PathTable, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(Path, ReusesOutputBuffer) {
  std::string out;
  out.reserve(256);
  const char* before = out.data();
  ASSERT_EQ(normalize_path("/a/./b/../c", out), PathStatus::normalized);
  EXPECT_EQ(out, "/a/c");
  EXPECT_EQ(out.data(), before);
}

TEST(Path, LongPathDotSegments) {
  std::string in, expect;
  for (int i = 0; i < 200; ++i) {
    in += "/seg" + std::to_string(i) + "/./x/..";
    expect += "/seg" + std::to_string(i);
  }
  std::string out;
  ASSERT_EQ(normalize_path(in, out), PathStatus::normalized);
  EXPECT_EQ(out, expect + "/");
}

}  // namespace
}  // namespace portico::http
