// libFuzzer target for the gRPC-Web codec (src/http2/grpc_web.h): the -text request body decoder and the
// response frame reader with its trailer parser.
//
// Input: byte 0 seeds the split points, the rest is fed to both. Decoder: the input decoded in one piece
// and again in pieces must agree (success, bytes, completeness); when it decodes completely, re-encoding
// and decoding again gives the same bytes. Frame reader: in one piece and in pieces it yields the same
// frames; a trailer frame's payload either parses or is refused, and what parses re-frames and re-parses
// to the same fields.
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "http2/grpc_web.h"

namespace {

using namespace portico::http2;
using namespace portico::http2::grpc_web;

struct Decoded {
  bool ok = true;
  bool complete = false;
  std::string out;
};

Decoded decode(std::string_view in, size_t step) {
  TextDecoder d;
  Decoded r;
  for (size_t i = 0; i < in.size() && r.ok; i += step) r.ok = d.feed(in.substr(i, step), r.out);
  r.complete = d.complete();
  return r;
}

std::vector<FrameReader::Frame> frames(std::string_view in, size_t step, bool& error) {
  FrameReader reader(1 << 16);
  std::vector<FrameReader::Frame> out;
  error = false;
  for (size_t i = 0; i < in.size() && !error; i += step) {
    reader.feed(in.substr(i, step));
    FrameReader::Frame f;
    FrameReader::Status s;
    while ((s = reader.next(f)) == FrameReader::Status::frame) out.push_back(f);
    error = s == FrameReader::Status::error;
  }
  return out;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t step = data[0] == 0 ? 1 : data[0];
  const std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  if (in.empty()) return 0;

  const Decoded whole = decode(in, in.size());
  const Decoded pieces = decode(in, step);
  FUZZ_CHECK(whole.ok == pieces.ok);
  if (whole.ok) {
    FUZZ_CHECK(whole.out == pieces.out && whole.complete == pieces.complete);
    if (whole.complete) {
      std::string again;
      append_base64(whole.out, again);
      FUZZ_CHECK(decode(again, again.size()).out == whole.out);
    }
  }

  bool error_whole = false, error_pieces = false;
  const auto a = frames(in, in.size(), error_whole);
  const auto b = frames(in, step, error_pieces);
  FUZZ_CHECK(error_whole == error_pieces && a.size() == b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    FUZZ_CHECK(a[i].flags == b[i].flags && a[i].payload == b[i].payload);
    if ((a[i].flags & kTrailerFlag) == 0) continue;
    Fields t;
    if (!parse_trailers(a[i].payload, t)) continue;
    std::string framed;
    append_trailer_frame(t, framed);
    Fields again;
    FUZZ_CHECK(parse_trailers(std::string_view(framed).substr(5), again) && again == t);
  }
  return 0;
}
