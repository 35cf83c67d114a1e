// Text with APISIX variables ("$remote_addr", "${http_x_user ?? anonymous}"), parsed once from a plugin's
// configuration and rendered per request: fault-injection's abort body and headers, mocking's
// response_example. The syntax and the variables allowed are config/var_refs.h's (the validator refused any
// other name); a missing value renders empty, or as the `??` default.
//
// Immutable after parse(); render() is const and may run on any thread.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "plugins/context.h"
#include "router/router.h"

namespace portico::plugins {

class VarTemplate {
 public:
  // False with `error` ("unknown variable $foo") when `text` names a variable this version does not know.
  bool parse(std::string_view text, std::string* error);

  bool has_vars() const { return has_vars_; }
  // The text as written (what render() appends when !has_vars()).
  const std::string& text() const { return text_; }

  // Appends the text with each variable replaced by its value for the request in `ctx`. With `header_safe`,
  // control characters in values (a decoded query argument may hold CR LF) are dropped, so the result can
  // be a header value.
  void render(const RequestContext& ctx, std::string& out, bool header_safe = false) const;

 private:
  enum class Kind : uint8_t { literal, request_var, route_id, route_name, service_id, consumer_name };
  struct Piece {
    Kind kind = Kind::literal;
    std::string text;  // literal text, or the `??` default of a variable
    router::RequestVar var;
  };

  std::string text_;
  std::vector<Piece> pieces_;
  bool has_vars_ = false;
};

}  // namespace portico::plugins
