// Private to src/router: compiled `vars` expressions and the request variables they read.
//
// Variables: uri (normalized path), request_uri (raw target), host (lower-cased, without a trailing dot),
// remote_addr, request_method, scheme ("http"), args / query_string (raw query), status (the response status
// when MatchRequest::status is set, i.e. for a plugin's response-phase condition; missing when routing),
// http_<name> (first request
// header whose name equals <name> ignoring case, '-' and '_' interchangeable), arg_<name> (first query
// argument named exactly <name>, value percent-decoded with '+' as space; "?a" gives "a" an empty value),
// cookie_<name> (first cookie named exactly <name> across all Cookie headers). Any other name is always
// missing. A header, argument or cookie that is absent is missing too (head == null: no headers at all).
//
// Operators on a present value: "==" / "~=" string (in)equality; ">" ">=" "<" "<=" numeric (a value that is
// not a number makes the comparison false); "~~" / "~*" PCRE2 unanchored search (case-sensitive /
// caseless); "in" equality with any listed value; "has" the value, split at ',' with blanks trimmed,
// contains a token equal to the operand. A missing variable makes every operator false except "~=", which is
// true (lua-resty-expr: nil ~= "x"). "!" then inverts the result.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "config/model.h"
#include "router/router.h"

namespace portico::router::detail {

struct Pcre2CodeFree {
  void operator()(pcre2_code* c) const { pcre2_code_free(c); }
};

struct CompiledExpr {
  enum class Source : uint8_t {
    uri,
    request_uri,
    host,
    remote_addr,
    request_method,
    scheme,
    args,
    header,
    arg,
    cookie,
    status,
    missing,
  };
  Source source = Source::missing;
  config::VarExpr::Op op = config::VarExpr::Op::eq;
  bool negate = false;
  std::string name;  // header name lower-cased with '-' as '_'; argument or cookie name as written
  std::vector<std::string> values;
  double number = 0;  // operand of the numeric operators
  std::unique_ptr<pcre2_code, Pcre2CodeFree> regex;
};

// False with `error` set when the operand does not fit the operator (no value, a non-numeric operand for a
// numeric operator, a regex that does not compile).
bool compile_expr(const config::VarExpr& expr, CompiledExpr& out, std::string* error);

// Per-match state shared by the expressions of the candidates tried.
struct VarContext {
  const MatchRequest* request = nullptr;
  std::string_view host;    // lower-cased
  std::string_view method;  // request method text
  char addr[48];            // remote_addr, formatted on first use
  int addr_len = -1;
  char status[8];  // status, formatted on first use
  int status_len = -1;
};

bool eval_expr(const CompiledExpr& expr, VarContext& ctx);

// The source of variable `var` and, for http_/arg_/cookie_ variables, the name to look for.
CompiledExpr::Source resolve_var(std::string_view var, std::string& name);
bool lookup_var(CompiledExpr::Source source, const std::string& name, const MatchRequest& request,
                std::string_view& out);

}  // namespace portico::router::detail
