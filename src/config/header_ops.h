// The `headers` of proxy-rewrite and response-rewrite, read into one list of operations. Both plugins take
// either the structured form {add, set, remove} or a flat mapping of names to values (APISIX's older form,
// meaning `set`). The catalog's checks (plugin_checks_traffic.cc) and the plugins (src/plugins/) read them
// with the same function, so what was validated is what runs.
//
// Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/var_template.h"

namespace portico::config {

struct HeaderOp {
  enum class Kind : uint8_t { add, set, remove };
  Kind kind = Kind::set;
  std::string name;
  std::string value;                  // as configured; numbers in their JSON text
  std::vector<TemplatePiece> pieces;  // `value` parsed as a template (var_template.h)
};

struct HeaderOpsSyntax {
  bool request_side = false;  // proxy-rewrite: the request sent upstream (see is_reserved_header)
  bool add_as_lines = false;  // response-rewrite: `add` is a list of "Name: value" strings, not a mapping
  TemplateSyntax values = TemplateSyntax::vars;
};

// Reads `headers` (already valid against the plugin's schema) into `out`, in the order APISIX applies them:
// every add, then every set, then every remove. Names must be tokens ('!'..'~' but ':') and not reserved,
// values printable ASCII (APISIX's validate_header_field / validate_header_value) and valid templates.
// Returns an empty string when fine; otherwise the reason, with `field` the offending field below `headers`
// ("set.Host").
std::string read_header_ops(const nlohmann::json& headers, const HeaderOpsSyntax& syntax,
                            std::vector<HeaderOp>& out, std::string& field);

// Header fields no plugin may set or remove: the framing and connection management Portico owns (hop-by-hop
// fields, Content-Length, Host; proxy/head_writer.h is_reserved_field, whose writers skip them too) and, on
// a request (`request_side`), the fields Portico states itself (X-Forwarded-For/-Host/-Proto, X-Real-IP,
// Expect, underscore spellings included), which the head writer would silently ignore.
bool is_reserved_header(std::string_view name, bool request_side);

// A field name a plugin may write: a non-empty token of '!'..'~' without ':'. Empty when fine, else the
// reason (APISIX's wording).
std::string check_header_name(std::string_view name);

}  // namespace portico::config
