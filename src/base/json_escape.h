// Escaping text for a JSON string literal, for the hand-built JSON of status pages and error bodies (those
// skip a JSON library on purpose: they are small and built often). Pure function; any thread.
#pragma once

#include <string>
#include <string_view>

namespace portico::base {

// The contents of a JSON string (without the quotes): '"' and '\' escaped, control characters as \n or
// \u00XX. Other bytes pass through unchanged.
std::string json_escape(std::string_view text);

}  // namespace portico::base
