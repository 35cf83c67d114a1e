#include "config/json_input.h"

#include <nlohmann/json.hpp>

#include "config/readers.h"
#include "config/tree_builder.h"

namespace portico::config {

std::optional<nlohmann::json> parse_json(std::string_view text, Errors& errors,
                                         std::string_view path_prefix) {
  const size_t before = errors.total();
  detail::TreeBuilder builder(errors, {}, {}, kMaxNesting, path_prefix);
  const bool syntax_ok = detail::read_json(text, builder, errors);
  if (!syntax_ok || errors.total() != before || !builder.complete()) {
    if (errors.total() == before) errors.add(std::string(path_prefix), "invalid JSON: incomplete value");
    return std::nullopt;
  }
  return builder.take_root();
}

namespace {

bool deeper(const nlohmann::json& value, size_t depth, size_t max_depth) {
  if (!value.is_structured()) return false;
  if (depth + 1 > max_depth) return true;
  for (const nlohmann::json& child : value) {
    if (deeper(child, depth + 1, max_depth)) return true;
  }
  return false;
}

}  // namespace

bool nested_deeper_than(const nlohmann::json& value, size_t max_depth) {
  return deeper(value, 0, max_depth);
}

}  // namespace portico::config
