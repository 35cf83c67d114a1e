// Private to src/plugins. Expansion of the templates of config/var_template.h against one request, and
// regex_uri rewrites (ngx.re.sub: the first match replaced), for proxy-rewrite, redirect, response-rewrite,
// fault-injection and mocking; and the header rules proxy-rewrite and response-rewrite build from `headers`.
//
// Values are escaped for where the text goes (Escape):
//  - uri: an origin-form target (or a Location). The first '?' written by template text (never by a value)
//    starts the query. Bytes a target cannot hold (CTLs, space, DEL, '#', non-ASCII) are percent-encoded;
//    in the path a '?' from a value becomes %3F (APISIX's escape_separator). Values already in
//    percent-encoded form ($uri, $request_uri, $args, regex captures of the path) keep their escapes; the
//    others ($arg_x is decoded, headers, cookies, ...) get their '%' encoded too, so that the origin decodes
//    exactly the value. A '%' of template text not starting an escape is encoded.
//  - header: a field value: CTLs and DEL percent-encoded (a value can never end a header line early).
//  - body: a response body (fault-injection's abort body, mocking's example): nothing is escaped.
//
// Templates and rewrites are built once per plugin instance and immutable; expand/apply are const and run on
// any worker. Per request they allocate only the output they append to.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/header_ops.h"
#include "config/var_template.h"
#include "plugins/context.h"

namespace portico::plugins {

enum class Escape : uint8_t { uri, header, body };

// The groups of the regex that matched, as views into its subject; a group that did not take part is empty.
struct Captures {
  static constexpr int kMax = 32;
  std::string_view group[kMax];
  int count = 0;
  std::string_view get(int i) const { return i >= 0 && i < count ? group[i] : std::string_view(); }
};

// Appends text to a string, escaping as above and tracking where the query starts.
class Expansion {
 public:
  Expansion(std::string& out, Escape escape) : out_(out), escape_(escape) {}

  void literal(std::string_view text);              // template text
  void value(std::string_view text, bool encoded);  // a variable's value
  // Offset in the output of the '?' that started the query; npos when none was written.
  size_t query_at() const { return query_at_; }

 private:
  void put(std::string_view text, bool from_template, bool encoded);
  std::string& out_;
  Escape escape_;
  size_t query_at_ = std::string::npos;
};

class Template {
 public:
  Template() = default;
  explicit Template(std::vector<config::TemplatePiece> pieces) : pieces_(std::move(pieces)) {}
  // `text` as the catalog's check accepted it; throws std::invalid_argument otherwise.
  static Template parse(std::string_view text, config::TemplateSyntax syntax);

  bool empty() const { return pieces_.empty(); }
  // Appends the expansion; `captures` may be null ($N then expands to nothing).
  void expand(const RequestContext& ctx, const Captures* captures, Expansion& out) const;

 private:
  std::vector<config::TemplatePiece> pieces_;
};

// One [regex, replacement] pair of regex_uri.
class RegexRewrite {
 public:
  // Throws std::invalid_argument when the regex does not compile or the replacement does not parse.
  RegexRewrite(const std::string& regex, std::string_view replacement);

  // Searches `subject`; on a match appends `subject` with the match replaced (prefix and suffix as encoded
  // values, the replacement's text as template text, its captures as encoded values), fills `captures`
  // when not null, and returns true. No match (or the match limit hit): false, nothing appended.
  bool apply(std::string_view subject, Expansion& out, Captures* captures) const;

 private:
  struct CodeFree {
    void operator()(pcre2_code* c) const { pcre2_code_free(c); }
  };
  std::unique_ptr<pcre2_code, CodeFree> code_;
  Template replacement_;
};

// One change of proxy-rewrite's or response-rewrite's `headers`, its value a template.
struct HeaderRule {
  HeaderEdit::Op op;
  std::string name;
  Template value;
};

// `headers` read by config::read_header_ops (add, then set, then remove); throws std::invalid_argument
// ("headers.<field>: <reason>") on what the catalog's check would have refused.
std::vector<HeaderRule> read_header_rules(const nlohmann::json& headers,
                                          const config::HeaderOpsSyntax& syntax);

// Records `rules` into `into` (part of `ctx`), in order. Each value is expanded, escaped for a header, before
// it is recorded: a value naming its own header reads what was there before.
void apply_header_rules(std::span<const HeaderRule> rules, const RequestContext& ctx,
                        const Captures* captures, HeaderEdits& into);

}  // namespace portico::plugins
