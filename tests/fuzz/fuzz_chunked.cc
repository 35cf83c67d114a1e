// libFuzzer target for ChunkedDecoder.
//
// Input: byte 0 seeds the split points (0: byte by byte), the rest is a chunked body. The body is decoded
// in one piece and again fed incrementally in pieces; both runs must agree on the outcome, the body bytes
// and the bytes consumed. Per step: consumed <= input, data spans are non-empty sub-spans of the input
// that end within `consumed`, need_more consumes the whole input, and done/error are sticky. Both runs are
// also compared with reference_decode, a deliberately simple whole-buffer recursive-descent decoder of the
// same grammar and limits (see src/http/README.md), which must agree on outcome, body and error position.
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

bool tchar(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  return c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}
bool field_byte(char c) {
  return c == '\t' || (static_cast<unsigned char>(c) >= 0x20 && c != 0x7f);
}
bool qdtext(char c) {
  return field_byte(c) && c != '"' && c != '\\';
}
int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

// Whole-buffer reference: error position is the offending byte; need_more means the body is truncated.
Outcome reference_decode(std::string_view b) {
  Outcome r;
  size_t i = 0;
  size_t line_start = 0;     // size line: at most 4096 bytes including its CR
  size_t trailer_start = 0;  // trailer section: at most 16384 bytes including the final LF
  bool in_trailers = false;
  auto at = [&](size_t pos) {  // true if there is a byte at pos within the limits; sets r otherwise
    if (pos == b.size()) {
      r.status = Status::need_more;
      r.consumed = b.size();
      return false;
    }
    if (in_trailers ? pos - trailer_start + 1 > 16384 : pos - line_start + 1 > 4096) {
      r.status = Status::error;
      r.consumed = pos;
      return false;
    }
    return true;
  };
  auto fail = [&](size_t pos) {
    r.status = Status::error;
    r.consumed = pos;
    return r;
  };
  while (true) {
    line_start = i;
    uint64_t size = 0;
    int digits = 0;
    while (true) {
      if (!at(i)) return r;
      const int d = hex(b[i]);
      if (d < 0) break;
      if (++digits > 16 || size > ((uint64_t{1} << 62) - static_cast<uint64_t>(d)) / 16) return fail(i);
      size = size * 16 + static_cast<uint64_t>(d);
      ++i;
    }
    if (digits == 0) return fail(i);
    bool ws = false;
    while (true) {  // *( [ws] ";" name [ "=" ( token / quoted-string ) ] ) CR
      if (!at(i)) return r;
      if (b[i] == ' ' || b[i] == '\t') {
        ws = true;
        ++i;
        continue;
      }
      if (b[i] == '\r' && !ws) break;
      if (b[i] != ';') return fail(i);
      ws = false;
      ++i;
      if (!at(i)) return r;
      if (!tchar(b[i])) return fail(i);
      while (true) {
        ++i;
        if (!at(i)) return r;
        if (!tchar(b[i])) break;
      }
      if (b[i] != '=') continue;
      ++i;
      if (!at(i)) return r;
      if (b[i] == '"') {
        ++i;
        while (true) {
          if (!at(i)) return r;
          if (b[i] == '"') break;
          if (b[i] == '\\') {
            ++i;
            if (!at(i)) return r;
            if (!field_byte(b[i])) return fail(i);
          } else if (!qdtext(b[i])) {
            return fail(i);
          }
          ++i;
        }
        ++i;
      } else if (tchar(b[i])) {
        while (true) {
          ++i;
          if (!at(i)) return r;
          if (!tchar(b[i])) break;
        }
      } else {
        return fail(i);
      }
    }
    ++i;  // CR
    if (i == b.size()) {
      at(i);
      return r;
    }
    if (b[i] != '\n') return fail(i);
    ++i;
    if (size == 0) break;
    const size_t avail = b.size() - i;
    if (avail < size) {
      r.data.append(b.substr(i));
      {
        at(b.size());
        return r;
      }
    }
    r.data.append(b.substr(i, size));
    i += size;
    for (char want : {'\r', '\n'}) {
      if (i == b.size()) {
        at(i);
        return r;
      }
      if (b[i] != want) return fail(i);
      ++i;
    }
  }
  in_trailers = true;
  trailer_start = i;
  while (true) {
    if (!at(i)) return r;
    if (b[i] == '\r') {
      ++i;
      if (!at(i)) return r;
      if (b[i] != '\n') return fail(i);
      r.status = Status::done;
      r.consumed = i + 1;
      return r;
    }
    if (!tchar(b[i])) return fail(i);
    while (true) {  // field-name ":"
      ++i;
      if (!at(i)) return r;
      if (b[i] == ':') break;
      if (!tchar(b[i])) return fail(i);
    }
    while (true) {  // field value up to CR
      ++i;
      if (!at(i)) return r;
      if (b[i] == '\r') break;
      if (!field_byte(b[i])) return fail(i);
    }
    ++i;
    if (!at(i)) return r;
    if (b[i] != '\n') return fail(i);
    ++i;
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

  const Outcome ref = reference_decode(std::string_view(body, len));
  FUZZ_CHECK(ref.status == whole.status);
  FUZZ_CHECK(ref.data == whole.data);
  FUZZ_CHECK(ref.consumed == whole.consumed);
  return 0;
}
