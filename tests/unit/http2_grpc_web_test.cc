#include <gtest/gtest.h>

#include "http2/grpc_web.h"

namespace portico::http2::grpc_web {
namespace {

std::string decode(std::string_view in, bool* ok = nullptr, bool* complete = nullptr) {
  TextDecoder d;
  std::string out;
  const bool fed = d.feed(in, out);
  if (ok != nullptr) *ok = fed;
  if (complete != nullptr) *complete = d.complete();
  return out;
}

std::string base64(std::string_view in) {
  std::string out;
  append_base64(in, out);
  return out;
}

TEST(GrpcWeb, ContentTypesAsApisix) {
  EXPECT_EQ(encoding_of("application/grpc-web"), Encoding::binary);
  EXPECT_EQ(encoding_of("application/grpc-web+proto"), Encoding::binary);
  EXPECT_EQ(encoding_of("application/grpc-web-text"), Encoding::text);
  EXPECT_EQ(encoding_of("application/grpc-web-text+proto"), Encoding::text);
  for (const char* other : {"", "application/grpc", "application/grpc+proto", "application/grpc-web+json",
                            "application/grpc-web; charset=utf-8", "Application/grpc-web", "text/plain"}) {
    EXPECT_EQ(encoding_of(other), Encoding::none) << other;
  }
}

TEST(GrpcWeb, Base64RoundTrips) {
  EXPECT_EQ(base64(""), "");
  EXPECT_EQ(base64("f"), "Zg==");
  EXPECT_EQ(base64("fo"), "Zm8=");
  EXPECT_EQ(base64("foo"), "Zm9v");
  EXPECT_EQ(base64(std::string("\x00\x00\x00\x00\x02hi", 7)), "AAAAAAJoaQ==");
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  EXPECT_EQ(decode(base64(all)), all);
}

TEST(GrpcWeb, DecoderStreamsAcrossPieces) {
  const std::string text = base64("hello, grpc-web");
  for (size_t cut = 0; cut <= text.size(); ++cut) {
    TextDecoder d;
    std::string out;
    ASSERT_TRUE(d.feed(text.substr(0, cut), out));
    EXPECT_EQ(d.complete(), cut % 4 == 0) << cut;
    ASSERT_TRUE(d.feed(text.substr(cut), out));
    EXPECT_TRUE(d.complete());
    EXPECT_EQ(out, "hello, grpc-web") << cut;
  }
}

TEST(GrpcWeb, DecoderTakesConcatenatedPaddedPieces) {
  bool ok = false, complete = false;
  EXPECT_EQ(decode("Zg==Zm8=Zm9v", &ok, &complete), "ffofoo");
  EXPECT_TRUE(ok && complete);
}

TEST(GrpcWeb, DecoderRefusesWhatNgxDecodeBase64Refuses) {
  for (const char* bad : {"Zg=a", "=Zg=", "Z===", "Zm9v\r\n", "Zm 9v", "Zm9-", "Zm9_", "Zg==="}) {
    bool ok = true;
    decode(bad, &ok);
    EXPECT_FALSE(ok) << bad;
  }
  bool ok = false, complete = true;
  decode("Zm9", &ok, &complete);  // a truncated quantum: not an end
  EXPECT_TRUE(ok);
  EXPECT_FALSE(complete);
  TextDecoder d;  // failed stays failed
  std::string out;
  EXPECT_FALSE(d.feed("!", out));
  EXPECT_FALSE(d.feed("Zm9v", out));
  EXPECT_FALSE(d.complete());
}

TEST(GrpcWeb, TrailerFrameAsApisixWritesIt) {
  std::string out;
  append_trailer_frame({{"grpc-status", "0"}, {"grpc-message", ""}}, out);
  const std::string lines = "grpc-status:0\r\ngrpc-message:\r\n";
  ASSERT_EQ(out.size(), 5 + lines.size());
  EXPECT_EQ(static_cast<uint8_t>(out[0]), 0x80);
  EXPECT_EQ(out.substr(1, 4), std::string("\x00\x00\x00\x1e", 4));
  EXPECT_EQ(out.substr(5), lines);
}

TEST(GrpcWeb, FrameReaderSplitsDataAndTrailers) {
  std::string body = std::string("\x00\x00\x00\x00\x02hi", 7) + std::string("\x00\x00\x00\x00\x00", 5);
  append_trailer_frame({{"grpc-status", "5"}, {"grpc-message", "not%20found"}, {"x-t", "v"}}, body);
  for (size_t step : {size_t{1}, size_t{3}, body.size()}) {
    FrameReader r;
    std::vector<FrameReader::Frame> frames;
    for (size_t i = 0; i < body.size(); i += step) {
      r.feed(std::string_view(body).substr(i, step));
      FrameReader::Frame f;
      FrameReader::Status s;
      while ((s = r.next(f)) == FrameReader::Status::frame) frames.push_back(f);
      ASSERT_EQ(s, FrameReader::Status::need_more);
    }
    ASSERT_EQ(frames.size(), 3u) << step;
    EXPECT_EQ(frames[0].flags, 0);
    EXPECT_EQ(frames[0].payload, "hi");
    EXPECT_EQ(frames[1].payload, "");
    EXPECT_EQ(frames[2].flags, kTrailerFlag);
    Fields t;
    ASSERT_TRUE(parse_trailers(frames[2].payload, t));
    EXPECT_EQ(t, (Fields{{"grpc-status", "5"}, {"grpc-message", "not%20found"}, {"x-t", "v"}}));
  }
}

TEST(GrpcWeb, FrameReaderRefusesOversizedFrames) {
  FrameReader r(16);
  r.feed(std::string("\x00\x00\x00\x00\x11", 5));
  FrameReader::Frame f;
  EXPECT_EQ(r.next(f), FrameReader::Status::error);
}

TEST(GrpcWeb, TrailerLinesMustBeFields) {
  Fields t;
  EXPECT_TRUE(parse_trailers("Grpc-Status: 0 \r\n\r\n", t));
  EXPECT_EQ(t, (Fields{{"grpc-status", "0"}}));
  EXPECT_FALSE(parse_trailers("no colon\r\n", t));
  EXPECT_FALSE(parse_trailers(":0\r\n", t));
  EXPECT_FALSE(parse_trailers("bad name:0\r\n", t));
}

}  // namespace
}  // namespace portico::http2::grpc_web
