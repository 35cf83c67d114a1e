// libFuzzer target for the Redis reply parser (src/redis/reply.h: hiredis' reader building replies in an
// arena).
//
// Input: the bytes a Redis connection receives, fed in pieces split at input-derived points, as the socket
// would deliver them. Invariants:
// - No crash, leak or unbounded allocation: an array or bulk beyond ReplyParser's bounds fails the parser
//   (the connection would be dropped) instead of allocating it.
// - Every reply returned is well formed: a known type, arrays no deeper than hiredis' nesting limit, strings
//   inside the arena (readable to their end), error codes a prefix of the error text.
// - After failed(), next() returns nothing and feed() refuses.
// - The same bytes fed whole give the same sequence of reply shapes (splitting changes nothing).
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "fuzz_common.h"
#include "redis/reply.h"

namespace {

using portico::redis::Reply;
using portico::redis::ReplyParser;
using portico::redis::ReplyType;

// A shape summary of one reply (types, integers, string lengths and a checksum of their bytes).
void describe(const Reply& r, int depth, std::string& out) {
  FUZZ_CHECK(depth <= 9);
  const auto t = static_cast<int>(r.type);
  FUZZ_CHECK(t >= 1 && t <= 6);
  out += static_cast<char>('0' + t);
  switch (r.type) {
    case ReplyType::integer:
      out += std::to_string(r.integer);
      break;
    case ReplyType::string:
    case ReplyType::status:
    case ReplyType::error: {
      uint32_t sum = 0;
      for (char c : r.str) sum = sum * 31 + static_cast<unsigned char>(c);
      out += std::to_string(r.str.size()) + ":" + std::to_string(sum);
      if (r.type == ReplyType::error) {
        const std::string_view code = r.error_code();
        FUZZ_CHECK(r.str.substr(0, code.size()) == code);
      } else {
        FUZZ_CHECK(r.error_code().empty());
      }
      break;
    }
    case ReplyType::array:
      FUZZ_CHECK(r.elements.size() <= ReplyParser::kMaxElements);
      out += "[";
      for (const Reply& e : r.elements) describe(e, depth + 1, out);
      out += "]";
      break;
    case ReplyType::nil:
      break;
  }
  out += ';';
}

// Feeds `pieces` of `data` (split points from `rng`, none when rng is null); returns the replies' shapes and
// whether the parser failed.
std::vector<std::string> parse(std::string_view data, portico::fuzz::Rng* rng, bool& failed) {
  ReplyParser parser;
  std::vector<std::string> shapes;
  size_t pos = 0;
  while (pos < data.size()) {
    const size_t n = rng == nullptr ? data.size() - pos : 1 + rng->below(data.size() - pos);
    const bool fed = parser.feed(data.data() + pos, n);
    pos += n;
    if (!fed) break;
    while (const Reply* r = parser.next()) {
      std::string shape;
      describe(*r, 0, shape);
      shapes.push_back(std::move(shape));
    }
    if (parser.failed()) break;
  }
  failed = parser.failed();
  if (failed) {
    FUZZ_CHECK(parser.next() == nullptr);
    FUZZ_CHECK(!parser.feed("+OK\r\n", 5));
  }
  return shapes;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  portico::fuzz::Rng rng(data[0]);
  const std::string_view input(reinterpret_cast<const char*>(data) + 1, size - 1);
  bool failed_split = false;
  bool failed_whole = false;
  const std::vector<std::string> split = parse(input, &rng, failed_split);
  const std::vector<std::string> whole = parse(input, nullptr, failed_whole);
  // A failure may come earlier or later depending on the pieces (a bound checked per feed), but replies
  // returned before it are the same.
  if (!failed_split && !failed_whole) FUZZ_CHECK(split == whole);
  const size_t common = std::min(split.size(), whole.size());
  for (size_t i = 0; i < common; ++i) FUZZ_CHECK(split[i] == whole[i]);
  return 0;
}
