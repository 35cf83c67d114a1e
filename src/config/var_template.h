// Templates naming request variables, as APISIX's plugins take them (proxy-rewrite's `uri` and header values,
// redirect's `uri`, response-rewrite's header values), and regex replacement templates (regex_uri), parsed
// into pieces once, when the configuration is read. src/plugins/template.h evaluates the pieces per request;
// parsing lives here so that the validator and the runtime cannot disagree on what a template means.
//
// Variable templates (APISIX core.utils.resolve_var): `$name` or `${name}`, name = [A-Za-z0-9_]+. `\$name`
// is not a variable and stays as written, backslash included (as in APISIX). A `$` not followed by a name
// is a literal `$`. Unlike APISIX, where a variable it does not know is silently empty, a name outside the
// list below is refused: a typo would otherwise send an empty path segment or header value.
//   uri              the normalized path the route matched (percent-encoded form, see http/path.h)
//   request_uri      the request-target as received (path and query)
//   host             the Host without port, lower-cased
//   remote_addr      the client address
//   request_method   the method
//   scheme           "http" or "https"
//   args, query_string   the query string as received (without '?'); is_args: "?" when there is one
//   route_id, route_name, service_id   the matched route's
//   consumer_name    the authenticated consumer's username (empty before an auth plugin ran)
//   request_id       the id the request-id plugin set (empty when it did not run)
//   http_<name>      request header <name> (any case; '_' and '-' alike), first occurrence
//   arg_<name>       query argument <name>, percent-decoded
//   cookie_<name>    cookie <name>
// With `captures` (proxy-rewrite header values), `$N` / `${N}` is capture N of the regex_uri that matched.
//
// Replacement templates (ngx.re.sub's, the second item of each regex_uri pair): `$N` or `${N}` is capture N
// (0: the whole match), `$$` is a `$`; any other `$` is an error, as in APISIX's check.
//
// Pure functions; any thread.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace portico::config {

enum class TemplateVar : uint8_t {
  literal,
  uri,
  request_uri,
  host,
  remote_addr,
  request_method,
  scheme,
  args,
  is_args,
  route_id,
  route_name,
  service_id,
  consumer_name,
  request_id,
  http,     // `name`: the header name, lower-case, '-' written as '_'
  arg,      // `name`: the argument name as written
  cookie,   // `name`: the cookie name as written
  capture,  // `index`
};

struct TemplatePiece {
  TemplateVar var = TemplateVar::literal;
  std::string text;  // literal: the text; http/arg/cookie: the name
  int index = 0;     // capture: its number

  bool operator==(const TemplatePiece&) const = default;
};

enum class TemplateSyntax : uint8_t {
  vars,               // $name
  vars_and_captures,  // $name and $N
  replacement,        // $N and $$ only
};

// Parses `text` into `out` (replaced): adjacent literal text is one piece. False with `error` set ("unknown
// variable $foo in ..."), `out` unspecified, when the template is not valid for `syntax`.
bool parse_template(std::string_view text, TemplateSyntax syntax, std::vector<TemplatePiece>& out,
                    std::string* error);

}  // namespace portico::config
