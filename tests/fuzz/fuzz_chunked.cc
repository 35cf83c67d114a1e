// libFuzzer target for ChunkedDecoder.
//
// Input: byte 0 seeds the split points (0: byte by byte), the rest is a chunked body. The body is decoded
// in one piece and again fed incrementally in pieces; both runs must agree on the outcome, the body bytes
// and the bytes consumed. Per step: consumed <= input, data spans are non-empty sub-spans of the input
// that end within `consumed`, need_more consumes the whole input, and done/error are sticky.
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "http/parser.h"

namespace {

using portico::http::ChunkedDecoder;
using Status = ChunkedDecoder::Status;

struct Outcome {
  Status status = Status::need_more;
  std::string data;
  size_t consumed = 0;
};

// Feeds one piece (in its own allocation) until the decoder needs more, finishes or fails.
bool feed(ChunkedDecoder& d, const char* p, size_t n, Outcome& o) {
  std::unique_ptr<char[]> copy(new char[n == 0 ? 1 : n]);
  if (n != 0) std::memcpy(copy.get(), p, n);
  std::string_view in(copy.get(), n);
  while (true) {
    const ChunkedDecoder::Step s = d.next(in);
    FUZZ_CHECK(s.consumed <= in.size());
    if (s.status == Status::data) {
      FUZZ_CHECK(!s.data.empty() && s.consumed > 0);
      FUZZ_CHECK(s.data.data() >= in.data() && s.data.data() + s.data.size() <= in.data() + s.consumed);
      o.data.append(s.data);
    } else {
      FUZZ_CHECK(s.data.empty());
    }
    o.consumed += s.consumed;
    in.remove_prefix(s.consumed);
    switch (s.status) {
      case Status::data:
        continue;
      case Status::need_more:
        FUZZ_CHECK(in.empty());
        return true;
      case Status::done:
      case Status::error: {
        o.status = s.status;
        FUZZ_CHECK((s.status == Status::done) == d.done());
        if (s.status == Status::error) FUZZ_CHECK(d.error_reason()[0] != '\0');
        const ChunkedDecoder::Step again = d.next(in);  // sticky
        FUZZ_CHECK(again.status == s.status && again.consumed == 0);
        return false;
      }
    }
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t seed = data[0];
  const char* body = reinterpret_cast<const char*>(data + 1);
  const size_t len = size - 1;

  ChunkedDecoder whole_decoder;
  Outcome whole;
  feed(whole_decoder, body, len, whole);
  FUZZ_CHECK(whole.data.size() <= len && whole.consumed <= len);
  if (whole.status == Status::need_more) FUZZ_CHECK(whole.consumed == len);

  ChunkedDecoder d;
  Outcome pieces;
  portico::fuzz::Rng rng(seed);
  size_t off = 0;
  while (off < len) {
    size_t n = seed == 0 ? 1 : 1 + rng.below(seed & 0x40 ? 8 : len - off);
    if (n > len - off) n = len - off;
    if (!feed(d, body + off, n, pieces)) break;
    off += n;
  }
  // Every piece but the last is consumed whole (need_more), so the sums are comparable.
  FUZZ_CHECK(pieces.status == whole.status);
  FUZZ_CHECK(pieces.data == whole.data);
  FUZZ_CHECK(pieces.consumed == whole.consumed);
  return 0;
}
