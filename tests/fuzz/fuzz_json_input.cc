// libFuzzer target for the strict JSON entry point (config/json_input.h), the reader every untrusted JSON
// text goes through: Admin API bodies, etcd values, data plane deltas.
//
// Input: the text. Invariants:
// - Nothing nesting deeper than config::kMaxNesting is ever accepted: checked on the text itself by a lexical
//   scan independent of the reader, and on the tree it returns.
// - Accepted text is JSON (nlohmann's own accept() agrees) and means the same tree: the reference DOM parse
//   equals the result (safe to build: its depth is bounded by the scan above), and the result's dump reads
//   back to itself.
// - Refused text gets at least one error, each one of the known kinds (syntax with a position, duplicate key,
//   nesting), and text nlohmann refuses is never accepted.
#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>

#include "config/json_input.h"
#include "fuzz_common.h"

namespace {

using nlohmann::json;
using portico::config::Errors;
using portico::config::kMaxNesting;

bool known_reason(const std::string& reason) {
  return reason.starts_with("invalid JSON") || reason.starts_with("duplicate key \"") ||
         reason.starts_with("nested deeper than ");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  Errors errors;
  std::optional<json> value = portico::config::parse_json(text, errors);
  const bool reference_accepts = json::accept(text.begin(), text.end());
  if (value) {
    FUZZ_CHECK(errors.total() == 0);
    FUZZ_CHECK(!portico::base::json_too_deep(text, kMaxNesting));  // lexically, independent of the reader
    FUZZ_CHECK(!portico::config::nested_deeper_than(*value, kMaxNesting));
    FUZZ_CHECK(reference_accepts);
    FUZZ_CHECK(json::parse(text.begin(), text.end()) == *value);
    std::string dumped;
    try {
      dumped = value->dump();
    } catch (const json::type_error&) {  // invalid UTF-8 in a string: the reader passes bytes through
      return 0;
    }
    Errors again;
    std::optional<json> reread = portico::config::parse_json(dumped, again);
    FUZZ_CHECK(reread && *reread == *value);
  } else {
    FUZZ_CHECK(errors.total() >= 1);
    for (const auto& e : errors.list()) FUZZ_CHECK(known_reason(e.reason));
  }
  return 0;
}
