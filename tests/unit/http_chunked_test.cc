// ChunkedDecoder (RFC 9112 7.1): table of valid and invalid bodies, each decoded whole, byte by byte and at
// every two-piece split (results must agree), plus streaming, trailers, limits and reuse.
#include <gtest/gtest.h>

#include <cstdio>
#include <ostream>
#include <string>
#include <vector>

#include "http/parser.h"

namespace portico::http {
namespace {

using namespace std::string_literals;
using Status = ChunkedDecoder::Status;

struct Outcome {
  Status status = Status::need_more;  // final: done, error or need_more (ran out of input)
  std::string data;                   // concatenated data spans
  size_t consumed = 0;                // total bytes consumed
  std::string error;
};

// Feeds `pieces` in order, each fully (advancing by `consumed`), stopping at done/error.
Outcome decode_pieces(const std::vector<std::string>& pieces) {
  ChunkedDecoder d;
  Outcome o;
  for (const std::string& piece : pieces) {
    std::string_view in = piece;
    while (true) {
      const ChunkedDecoder::Step s = d.next(in);
      EXPECT_LE(s.consumed, in.size());
      if (s.status == Status::data) {
        EXPECT_FALSE(s.data.empty());
        EXPECT_GE(s.data.data(), in.data());
        EXPECT_LE(s.data.data() + s.data.size(), in.data() + s.consumed);
        o.data.append(s.data);
      }
      o.consumed += s.consumed;
      in.remove_prefix(s.consumed);
      if (s.status == Status::done || s.status == Status::error) {
        o.status = s.status;
        o.error = d.error_reason();
        return o;
      }
      if (s.status == Status::need_more) {
        EXPECT_TRUE(in.empty());
        break;
      }
    }
  }
  o.status = Status::need_more;
  return o;
}

Outcome decode(const std::string& body) {
  return decode_pieces({body});
}

Outcome decode_bytewise(const std::string& body) {
  std::vector<std::string> pieces;
  for (char c : body) pieces.emplace_back(1, c);
  return decode_pieces(pieces);
}

struct Case {
  std::string name;
  std::string rfc;
  std::string body;
  Status status;          // done, error, or need_more for a truncated body
  std::string data = {};  // expected body bytes (with done)
  size_t consumed = 0;    // expected consumed with done; 0 means body.size()
};

void PrintTo(const Case& c, std::ostream* os) {
  *os << c.name << " (" << c.rfc << ")";
}

std::vector<Case> cases() {
  const std::string long_ext = "1;" + std::string(5000, 'e') + "\r\nx\r\n0\r\n\r\n";
  // The size line is 4096 bytes counting its CR: the limit.
  const std::string ext_at_limit = "1;" + std::string(4093, 'e') + "\r\nx\r\n0\r\n\r\n";
  const std::string big_trailer = "0\r\nX: " + std::string(17000, 't') + "\r\n\r\n";
  return {
      // ---- valid --------------------------------------------------------------------------------------
      {"Single", "RFC 9112 7.1", "5\r\nhello\r\n0\r\n\r\n", Status::done, "hello"},
      {"Empty", "RFC 9112 7.1 (last-chunk only)", "0\r\n\r\n", Status::done, ""},
      {"SeveralChunks", "RFC 9112 7.1", "3\r\nabc\r\n1\r\nd\r\n2\r\nef\r\n0\r\n\r\n", Status::done, "abcdef"},
      {"HexLower", "RFC 9112 7.1 HEXDIG", "a\r\n0123456789\r\n0\r\n\r\n", Status::done, "0123456789"},
      {"HexUpper", "RFC 9112 7.1 HEXDIG", "A\r\n0123456789\r\n0\r\n\r\n", Status::done, "0123456789"},
      {"LeadingZeros", "RFC 9112 7.1 1*HEXDIG", "0003\r\nabc\r\n000\r\n\r\n", Status::done, "abc"},
      {"DataWithCrlfInside", "RFC 9112 7.1 (opaque data)", "4\r\n\r\n\r\n\r\n0\r\n\r\n", Status::done,
       "\r\n\r\n"},
      {"DataWithNul", "RFC 9112 7.1 (opaque data)", "3\r\na\0b\r\n0\r\n\r\n"s, Status::done, "a\0b"s},
      {"PipelinedBytesLeft", "RFC 9112 7.1 (body ends at final CRLF)",
       "1\r\nx\r\n0\r\n\r\nGET / HTTP/1.1\r\n", Status::done, "x", 11},
      {"ExtensionToken", "RFC 9112 7.1.1", "3;name=value\r\nabc\r\n0\r\n\r\n", Status::done, "abc"},
      {"ExtensionNameOnly", "RFC 9112 7.1.1", "3;name\r\nabc\r\n0\r\n\r\n", Status::done, "abc"},
      {"ExtensionQuoted", "RFC 9112 7.1.1", "3;n=\"a b;c=d\"\r\nabc\r\n0\r\n\r\n", Status::done, "abc"},
      {"ExtensionQuotedPair", "RFC 9110 5.6.4", "3;n=\"a\\\"b\\\\\"\r\nabc\r\n0\r\n\r\n", Status::done,
       "abc"},
      {"ExtensionQuotedObsText", "RFC 9110 5.6.4", "3;n=\"\xc3\xa9\"\r\nabc\r\n0\r\n\r\n", Status::done,
       "abc"},
      {"ExtensionSeveral", "RFC 9112 7.1.1", "3;a=1;b;c=\"x\"\r\nabc\r\n0;last\r\n\r\n", Status::done, "abc"},
      {"ExtensionBwsBeforeSemicolon", "RFC 9112 7.1.1 BWS", "3 ;a=1\t;b\r\nabc\r\n0\t ;z\r\n\r\n",
       Status::done, "abc"},
      {"ExtensionAtLineLimit", "limit: 4 KiB size line", ext_at_limit, Status::done, "x"},
      {"Trailer", "RFC 9112 7.1.2", "1\r\nx\r\n0\r\nChecksum: abc\r\n\r\n", Status::done, "x"},
      {"Trailers", "RFC 9112 7.1.2", "1\r\nx\r\n0\r\nA: 1\r\nB:\r\nC: \t\xc3\xa9 z\t\r\n\r\n", Status::done,
       "x"},

      // ---- chunk size -----------------------------------------------------------------------------------
      {"SizeEmpty", "RFC 9112 7.1 1*HEXDIG", "\r\nabc\r\n0\r\n\r\n", Status::error},
      {"SizeNotHex", "RFC 9112 7.1 HEXDIG", "g\r\nabc\r\n", Status::error},
      {"SizeLeadingSpace", "RFC 9112 7.1 (no leading WS)", " 3\r\nabc\r\n", Status::error},
      {"SizeLeadingTab", "RFC 9112 7.1 (no leading WS)", "\t3\r\nabc\r\n", Status::error},
      {"SizeTrailingSpace", "RFC 9112 7.1 (WS only before ';')", "3 \r\nabc\r\n", Status::error},
      {"SizeInnerSpace", "RFC 9112 7.1", "1 2\r\nabc\r\n", Status::error},
      {"Size0x", "RFC 9112 7.1 (no 0x)", "0x3\r\nabc\r\n", Status::error},
      {"SizeSigned", "RFC 9112 7.1 (no sign)", "+3\r\nabc\r\n", Status::error},
      {"SizeNegative", "RFC 9112 7.1 (no sign)", "-3\r\nabc\r\n", Status::error},
      {"SizeOverflow", "bounded: 2^62", "10000000000000000\r\n", Status::error},
      {"SizeAbove2Pow62", "bounded: 2^62", "4000000000000001\r\n", Status::error},
      {"SizeAllF", "bounded: 2^62", "FFFFFFFFFFFFFFFF\r\n", Status::error},
      {"SizeTooManyDigits", "bounded: 16 digits", "00000000000000001\r\nx\r\n0\r\n\r\n", Status::error},
      {"SizeAt2Pow62", "bounded: 2^62 accepted", "4000000000000000\r\nabc", Status::need_more},
      {"SizeBareLf", "RFC 9112 7.1 (CRLF)", "3\nabc\r\n0\r\n\r\n", Status::error},
      {"SizeBareCr", "RFC 9112 7.1 (CRLF)", "3\rabc\r\n0\r\n\r\n", Status::error},

      // ---- extensions -----------------------------------------------------------------------------------
      {"ExtensionSpaceAfterSemicolon", "strict BWS", "3; a=1\r\nabc\r\n0\r\n\r\n", Status::error},
      {"ExtensionSpaceAroundEquals", "strict BWS", "3;a = 1\r\nabc\r\n0\r\n\r\n", Status::error},
      {"ExtensionEmptyName", "RFC 9112 7.1.1 token", "3;=1\r\nabc\r\n0\r\n\r\n", Status::error},
      {"ExtensionEmptyValue", "RFC 9112 7.1.1", "3;a=\r\nabc\r\n0\r\n\r\n", Status::error},
      {"ExtensionEmpty", "RFC 9112 7.1.1", "3;\r\nabc\r\n0\r\n\r\n", Status::error},
      {"ExtensionUnterminatedQuote", "RFC 9110 5.6.4", "3;a=\"x\r\nabc\r\n0\r\n\r\n", Status::error},
      {"ExtensionJunkAfterQuote", "RFC 9110 5.6.4", "3;a=\"x\"y\r\nabc\r\n0\r\n\r\n", Status::error},
      {"ExtensionControlChar", "RFC 9112 7.1.1", "3;a=\x01\r\nabc\r\n0\r\n\r\n", Status::error},
      {"ExtensionNul", "RFC 9112 7.1.1", "3;a\0\r\nabc\r\n0\r\n\r\n"s, Status::error},
      {"ExtensionBareLf", "RFC 9112 7.1 (CRLF)", "3;a=b\nabc\r\n0\r\n\r\n", Status::error},
      {"ExtensionTooLong", "limit: 4 KiB size line", long_ext, Status::error},

      // ---- data CRLF ------------------------------------------------------------------------------------
      {"DataMissingCrlf", "RFC 9112 7.1", "3\r\nabcd\r\n0\r\n\r\n", Status::error},
      {"DataBareLf", "RFC 9112 7.1 (CRLF)", "3\r\nabc\n0\r\n\r\n", Status::error},
      {"DataBareCr", "RFC 9112 7.1 (CRLF)", "3\r\nabc\r0\r\n\r\n", Status::error},
      {"DataShort", "RFC 9112 7.1", "5\r\nabc\r\n0\r\n\r\n", Status::error},

      // ---- trailer section --------------------------------------------------------------------------------
      {"TrailerObsFold", "RFC 9112 5.2", "0\r\nA: 1\r\n 2\r\n\r\n", Status::error},
      {"TrailerSpaceBeforeColon", "RFC 9112 5.1", "0\r\nA : 1\r\n\r\n", Status::error},
      {"TrailerNoColon", "RFC 9112 5", "0\r\nA\r\n\r\n", Status::error},
      {"TrailerEmptyName", "RFC 9110 5.1", "0\r\n: 1\r\n\r\n", Status::error},
      {"TrailerNul", "RFC 9110 5.5", "0\r\nA: \0\r\n\r\n"s, Status::error},
      {"TrailerBareLf", "RFC 9112 2.2", "0\r\nA: 1\n\r\n", Status::error},
      {"TrailerBareCr", "RFC 9112 2.2", "0\r\nA: 1\rB\r\n\r\n", Status::error},
      {"TrailerTooLarge", "limit: 16 KiB trailers", big_trailer, Status::error},
      {"FinalBareLf", "RFC 9112 7.1 (final CRLF)", "0\r\n\n", Status::error},
      {"FinalBareCr", "RFC 9112 7.1 (final CRLF)", "0\r\n\rx", Status::error},
      {"FinalMissing", "RFC 9112 7.1 (final CRLF)", "0\r\n", Status::need_more},
      {"TruncatedData", "RFC 9112 7.1", "5\r\nhel", Status::need_more},
  };
}

class ChunkedTable : public ::testing::TestWithParam<Case> {};

TEST_P(ChunkedTable, Whole) {
  const Case& c = GetParam();
  const Outcome o = decode(c.body);
  ASSERT_EQ(static_cast<int>(o.status), static_cast<int>(c.status)) << c.rfc << ": " << o.error;
  if (c.status == Status::done) {
    EXPECT_EQ(o.data, c.data);
    EXPECT_EQ(o.consumed, c.consumed != 0 ? c.consumed : c.body.size());
  }
  if (c.status == Status::error) {
    EXPECT_STRNE(o.error.c_str(), "");
  }
}

TEST_P(ChunkedTable, ByteByByteAgrees) {
  const Case& c = GetParam();
  const Outcome whole = decode(c.body);
  const Outcome bytes = decode_bytewise(c.body);
  EXPECT_EQ(static_cast<int>(bytes.status), static_cast<int>(whole.status));
  EXPECT_EQ(bytes.data, whole.data);
  EXPECT_EQ(bytes.consumed, whole.consumed);
  EXPECT_EQ(bytes.error, whole.error);
}

TEST_P(ChunkedTable, EveryTwoPieceSplitAgrees) {
  const Case& c = GetParam();
  const Outcome whole = decode(c.body);
  const size_t step = c.body.size() > 2000 ? 97 : 1;  // sample the splits of the large bodies
  for (size_t k = 0; k <= c.body.size(); k += step) {
    const Outcome split = decode_pieces({c.body.substr(0, k), c.body.substr(k)});
    ASSERT_EQ(static_cast<int>(split.status), static_cast<int>(whole.status)) << "split " << k;
    ASSERT_EQ(split.data, whole.data) << "split " << k;
    ASSERT_EQ(split.consumed, whole.consumed) << "split " << k;
  }
}

INSTANTIATE_TEST_SUITE_P(Rfc, ChunkedTable, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) { return info.param.name; });

TEST(Chunked, DataSpansPointIntoInputAndSplitAcrossFeeds) {
  ChunkedDecoder d;
  const std::string a = "a\r\n01234";
  const std::string b = "56789\r\n0\r\n\r\n";
  ChunkedDecoder::Step s = d.next(a);
  ASSERT_EQ(s.status, Status::data);
  EXPECT_EQ(s.data, "01234");
  EXPECT_EQ(s.data.data(), a.data() + 3);
  EXPECT_EQ(s.consumed, a.size());
  s = d.next(std::string_view(a).substr(s.consumed));
  EXPECT_EQ(s.status, Status::need_more);
  EXPECT_EQ(s.consumed, 0u);
  s = d.next(b);
  ASSERT_EQ(s.status, Status::data);
  EXPECT_EQ(s.data, "56789");
  EXPECT_EQ(s.data.data(), b.data());
  s = d.next(std::string_view(b).substr(5));
  EXPECT_EQ(s.status, Status::done);
  EXPECT_EQ(s.consumed, b.size() - 5);
  EXPECT_TRUE(d.done());
  // After done the decoder consumes nothing more.
  s = d.next("1\r\nx\r\n");
  EXPECT_EQ(s.status, Status::done);
  EXPECT_EQ(s.consumed, 0u);
}

TEST(Chunked, EmptyInputNeedsMore) {
  ChunkedDecoder d;
  const ChunkedDecoder::Step s = d.next({});
  EXPECT_EQ(s.status, Status::need_more);
  EXPECT_EQ(s.consumed, 0u);
}

TEST(Chunked, ErrorIsSticky) {
  ChunkedDecoder d;
  ChunkedDecoder::Step s = d.next("zz");
  EXPECT_EQ(s.status, Status::error);
  EXPECT_EQ(s.consumed, 0u);
  EXPECT_STREQ(d.error_reason(), "invalid chunk size");
  s = d.next("0\r\n\r\n");
  EXPECT_EQ(s.status, Status::error);
  d.reset();
  s = d.next("0\r\n\r\n");
  EXPECT_EQ(s.status, Status::done);
}

TEST(Chunked, ErrorConsumedPointsAtTheOffendingByte) {
  ChunkedDecoder d;
  const std::string in = "3\r\nabcX";
  ChunkedDecoder::Step s = d.next(in);
  ASSERT_EQ(s.status, Status::data);
  s = d.next(std::string_view(in).substr(s.consumed));
  EXPECT_EQ(s.status, Status::error);
  EXPECT_EQ(s.consumed, 0u);
  EXPECT_STREQ(d.error_reason(), "missing CRLF after chunk data");
}

TEST(Chunked, StreamsLargeChunkWithBoundedPieces) {
  // A 4 MiB chunk fed in 4 KiB pieces: every byte is handed out exactly once, straight from the input.
  const size_t total = 4u << 20;
  const std::string head = "400000\r\n";
  ChunkedDecoder d;
  ChunkedDecoder::Step s = d.next(head);
  ASSERT_EQ(s.status, Status::need_more);
  ASSERT_EQ(s.consumed, head.size());
  std::string piece(4096, 'p');
  size_t seen = 0;
  while (seen < total) {
    s = d.next(piece);
    ASSERT_EQ(s.status, Status::data);
    ASSERT_EQ(s.data.data(), piece.data());
    ASSERT_EQ(s.consumed, piece.size());
    seen += s.data.size();
  }
  EXPECT_EQ(seen, total);
  s = d.next("\r\n0\r\n\r\n");
  EXPECT_EQ(s.status, Status::done);
}

TEST(Chunked, MaximumSizeIsAccepted) {
  ChunkedDecoder d;
  const std::string in = "4000000000000000\r\n";
  const ChunkedDecoder::Step s = d.next(in);
  EXPECT_EQ(s.status, Status::need_more);
  EXPECT_EQ(s.consumed, in.size());
}

TEST(Chunked, ManySmallChunksInOneBuffer) {
  std::string body, expect;
  for (int i = 1; i <= 300; ++i) {
    char size[8];
    std::snprintf(size, sizeof size, "%x", i % 37 + 1);
    const std::string data(static_cast<size_t>(i % 37 + 1), static_cast<char>('a' + i % 26));
    body += std::string(size) + (i % 5 == 0 ? ";k=v" : "") + "\r\n" + data + "\r\n";
    expect += data;
  }
  body += "0\r\nT: 1\r\n\r\n";
  const Outcome o = decode(body);
  ASSERT_EQ(o.status, Status::done) << o.error;
  EXPECT_EQ(o.data, expect);
  EXPECT_EQ(decode_bytewise(body).data, expect);
}

}  // namespace
}  // namespace portico::http
