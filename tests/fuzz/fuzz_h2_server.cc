// libFuzzer target for http2::ServerCodec (the HTTP/2 frame path from clients).
//
// Input: byte 0 seeds the split points (0: byte by byte) and whether the owner answers inside the codec's
// callbacks or after receive() returns; the rest is what a client sends after the connection preface (which
// the target sends first, so the fuzzer spends its time on frames). Requests are answered with a small body,
// request bodies consumed, streams finished when they close, and everything the codec produces is drained.
// Invariants: live streams never exceed SETTINGS_MAX_CONCURRENT_STREAMS, a failed codec stays failed and
// stops delivering requests, and nothing is delivered for a stream twice.
#include <set>
#include <string>
#include <vector>

#include "fuzz_common.h"
#include "http2/server_codec.h"

namespace {

using portico::http2::Field;
using portico::http2::Request;
using portico::http2::ServerCodec;
using portico::http2::ServerLimits;

struct Owner : ServerCodec::Handler {
  ServerCodec* codec = nullptr;
  bool inline_answers = false;
  std::set<int32_t> seen;
  std::vector<int32_t> pending;
  std::vector<int32_t> closed;
  void answer(int32_t id) {
    static const std::vector<Field> fields = {{"content-type", "text/plain"}};
    if (codec->submit_response(id, 200, fields, false)) {
      codec->submit_data(id, "hello");
      codec->submit_end(id);
    }
  }
  void on_request(int32_t id, Request& r) override {
    FUZZ_CHECK(seen.insert(id).second);
    FUZZ_CHECK(!r.method.empty());
    if (inline_answers) {
      answer(id);
    } else {
      pending.push_back(id);
    }
  }
  void on_data(int32_t id, std::string_view d) override {
    if (inline_answers) codec->consume(id, d.size());
  }
  void on_end_stream(int32_t) override {}
  void on_stream_close(int32_t id, uint32_t) override { closed.push_back(id); }
};

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const uint8_t seed = data[0];
  std::string_view in(reinterpret_cast<const char*>(data + 1), size - 1);
  ServerLimits limits;
  limits.max_concurrent_streams = 8;
  limits.max_header_list_size = 4096;
  limits.initial_window_size = 1024;
  Owner owner;
  ServerCodec codec(limits, owner);
  owner.codec = &codec;
  owner.inline_answers = (seed & 0x80) != 0;
  portico::fuzz::Rng rng(seed);
  std::string out;
  bool ok = codec.receive("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
  while (ok && !in.empty()) {
    const size_t n = (seed & 0x7f) == 0 ? 1 : 1 + rng.next() % std::min<size_t>(in.size(), 512);
    const size_t before = owner.seen.size();
    ok = codec.receive(in.substr(0, n));
    in.remove_prefix(n);
    if (!ok) {
      FUZZ_CHECK(codec.failed());
      FUZZ_CHECK(owner.seen.size() >= before);
    }
    FUZZ_CHECK(codec.live_streams() <= limits.max_concurrent_streams);
    for (int32_t id : owner.pending) owner.answer(id);
    owner.pending.clear();
    for (int32_t id : owner.closed) codec.stream_finished(id);
    owner.closed.clear();
    out.clear();
    codec.produce(out, 1 << 20);
  }
  if (!ok) {
    const size_t delivered = owner.seen.size();
    FUZZ_CHECK(!codec.receive("\0\0\0\4\0\0\0\0\0"));  // failed stays failed
    FUZZ_CHECK(owner.seen.size() == delivered);
  }
  return 0;
}
