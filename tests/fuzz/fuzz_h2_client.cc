// libFuzzer target for http2::ClientCodec (the HTTP/2 frame path from upstream nodes, scheme grpc/grpcs).
//
// Input: byte 0 seeds the split points (0: byte by byte) and whether the caller consumes DATA as it arrives;
// the rest is what a node sends. Before it, the codec has submitted three requests (one without a body, one
// with a body and trailers, one whose body stays open). Invariants: a stream's buffered DATA never exceeds
// the window Portico grants, a closed stream stays closed, a codec that failed stays failed with every stream
// closed, and nothing is reported for a stream after forget().
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "http2/client_codec.h"

namespace {

using portico::http2::ClientCodec;
using portico::http2::ClientLimits;
using portico::http2::Fields;

const Fields& head() {
  static const Fields f = {{":method", "POST"},
                           {":scheme", "http"},
                           {":authority", "node"},
                           {":path", "/pkg.Svc/M"},
                           {"content-type", "application/grpc"},
                           {"te", "trailers"}};
  return f;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t seed = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  ClientLimits limits;
  limits.stream_window = 4096;
  limits.connection_window = 16384;
  limits.max_header_list = 2048;
  ClientCodec codec(limits);
  const bool consume = (seed & 0x80) != 0;
  std::vector<int32_t> ids = {codec.submit_request(head(), true), codec.submit_request(head(), false),
                              codec.submit_request(head(), false)};
  for (int32_t id : ids) FUZZ_CHECK(id > 0);
  codec.send_data(ids[1], std::string(5000, 'b'));
  codec.end_stream(ids[1], {{"x-t", "1"}});
  codec.send_data(ids[2], "open");
  std::string out;
  codec.take_output(out);
  portico::fuzz::Rng rng(seed);
  std::vector<bool> closed(ids.size(), false);
  bool ok = true;
  bool forgot = false;
  while (ok && !in.empty()) {
    const size_t n = (seed & 0x7f) == 0 ? 1 : 1 + rng.next() % std::min<size_t>(in.size(), 512);
    ok = codec.feed(in.data(), n);
    in.remove_prefix(n);
    for (size_t i = 0; i < ids.size(); ++i) {
      const portico::http2::ClientStream* s = codec.stream(ids[i]);
      if (s == nullptr) continue;
      FUZZ_CHECK(s->data.size() <= limits.stream_window);
      FUZZ_CHECK(!closed[i] || s->closed);
      closed[i] = s->closed;
      if (consume && !s->data.empty()) codec.consume(ids[i], s->data.size());
    }
    codec.take_changed();
    if (!forgot && rng.next() % 4 == 0) {
      codec.forget(ids[2]);  // a client gone mid-call
      forgot = true;
    }
    out.clear();
    codec.take_output(out);
  }
  if (forgot) FUZZ_CHECK(codec.stream(ids[2]) == nullptr);
  if (!ok) {
    FUZZ_CHECK(!codec.alive());
    for (int32_t id : ids) {
      if (const portico::http2::ClientStream* s = codec.stream(id)) FUZZ_CHECK(s->closed);
    }
    FUZZ_CHECK(!codec.feed("\0\0\0\4\0\0\0\0\0", 9));  // failed stays failed
  }
  return 0;
}
