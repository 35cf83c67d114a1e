// The traffic plugins' configuration: template parsing (var_template.h), header operations
// (header_ops.h), and what the catalog's checks refuse for proxy-rewrite, response-rewrite, redirect and
// request-id, each at its field path.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "config/header_ops.h"
#include "config/validate.h"
#include "config/var_template.h"

namespace portico::config {
namespace {

using nlohmann::json;
using V = TemplateVar;

std::vector<TemplatePiece> parse(std::string_view text, TemplateSyntax syntax = TemplateSyntax::vars) {
  std::vector<TemplatePiece> out;
  std::string error;
  EXPECT_TRUE(parse_template(text, syntax, out, &error)) << text << ": " << error;
  return out;
}

std::string parse_error(std::string_view text, TemplateSyntax syntax = TemplateSyntax::vars) {
  std::vector<TemplatePiece> out;
  std::string error;
  EXPECT_FALSE(parse_template(text, syntax, out, &error)) << text;
  return error;
}

TEST(VarTemplate, VariablesBracesAndLiterals) {
  EXPECT_EQ(parse("/static"), (std::vector<TemplatePiece>{{V::literal, "/static", 0}}));
  EXPECT_EQ(parse("/u/$uri?x=${arg_page}&h=$http_X_User-end"),
            (std::vector<TemplatePiece>{{V::literal, "/u/", 0},
                                        {V::uri, "", 0},
                                        {V::literal, "?x=", 0},
                                        {V::arg, "page", 0},
                                        {V::literal, "&h=", 0},
                                        {V::http, "x_user", 0},  // lower-cased; "-end" is text
                                        {V::literal, "-end", 0}}));
  EXPECT_EQ(parse("$host$request_uri"),
            (std::vector<TemplatePiece>{{V::host, "", 0}, {V::request_uri, "", 0}}));
  EXPECT_EQ(parse("$query_string|$args|$cookie_sid"), (std::vector<TemplatePiece>{{V::args, "", 0},
                                                                                  {V::literal, "|", 0},
                                                                                  {V::args, "", 0},
                                                                                  {V::literal, "|", 0},
                                                                                  {V::cookie, "sid", 0}}));
}

TEST(VarTemplate, EscapedAndLoneDollarsStayText) {
  // APISIX's resolve_var leaves `\$name` as written, backslash included; a `$` without a name is text.
  EXPECT_EQ(parse("a\\$uri b$ c${ d$-"), (std::vector<TemplatePiece>{{V::literal, "a\\$uri b$ c${ d$-", 0}}));
  EXPECT_EQ(parse("${}x"), (std::vector<TemplatePiece>{{V::literal, "${}x", 0}}));
}

TEST(VarTemplate, UnknownVariablesAndCapturesAreRefused) {
  EXPECT_NE(parse_error("/x/$upstream_addr").find("unknown variable $upstream_addr (supported: uri, "),
            std::string::npos);
  EXPECT_NE(parse_error("/x/${nope}").find("unknown variable $nope"), std::string::npos);
  EXPECT_NE(parse_error("/x/$1").find("$1: regex captures are not available here"), std::string::npos);
  EXPECT_EQ(parse("v=$1.$12", TemplateSyntax::vars_and_captures),
            (std::vector<TemplatePiece>{
                {V::literal, "v=", 0}, {V::capture, "", 1}, {V::literal, ".", 0}, {V::capture, "", 12}}));
}

TEST(VarTemplate, ReplacementTemplatesAreNgxReSubs) {
  EXPECT_EQ(parse("/b/$1/${2}x$$0$0", TemplateSyntax::replacement),
            (std::vector<TemplatePiece>{{V::literal, "/b/", 0},
                                        {V::capture, "", 1},
                                        {V::literal, "/", 0},
                                        {V::capture, "", 2},
                                        {V::literal, "x$0", 0},
                                        {V::capture, "", 0}}));
  EXPECT_NE(parse_error("/b/$uri", TemplateSyntax::replacement).find("invalid capturing variable name"),
            std::string::npos);
  EXPECT_NE(parse_error("/b/${1", TemplateSyntax::replacement).find("closing bracket"), std::string::npos);
}

TEST(HeaderOps, FormsOrderAndReservedNames) {
  std::vector<HeaderOp> ops;
  std::string field;
  const HeaderOpsSyntax request{.request_side = true, .add_as_lines = false, .values = TemplateSyntax::vars};
  // Structured: every add, then every set, then every remove (APISIX's order), numbers as their text.
  ASSERT_EQ(
      read_header_ops(json::parse(R"j({"remove": ["X-R"], "set": {"X-S": 2}, "add": {"X-A": "$uri"}})j"),
                      request, ops, field),
      "");
  ASSERT_EQ(ops.size(), 3u);
  EXPECT_EQ(ops[0].kind, HeaderOp::Kind::add);
  EXPECT_EQ(ops[0].pieces, (std::vector<TemplatePiece>{{V::uri, "", 0}}));
  EXPECT_EQ(ops[1].kind, HeaderOp::Kind::set);
  EXPECT_EQ(ops[1].value, "2");
  EXPECT_EQ(ops[2].kind, HeaderOp::Kind::remove);
  // The flat form means set; response-rewrite's add takes "Name: value" lines.
  ASSERT_EQ(read_header_ops(json::parse(R"j({"X-F": "v"})j"), request, ops, field), "");
  EXPECT_EQ(ops[0].kind, HeaderOp::Kind::set);
  const HeaderOpsSyntax response{.request_side = false, .add_as_lines = true, .values = TemplateSyntax::vars};
  ASSERT_EQ(read_header_ops(json::parse(R"j({"add": ["X-L:  one two "]})j"), response, ops, field), "");
  EXPECT_EQ(ops[0].name, "X-L");
  EXPECT_EQ(ops[0].value, "one two");

  EXPECT_NE(read_header_ops(json::parse(R"j({"set": {"Content-Length": "1"}})j"), request, ops, field)
                .find("Content-Length is managed by Portico"),
            std::string::npos);
  EXPECT_EQ(field, "set.Content-Length");
  // Request side only: fields Portico states itself, underscore spellings included.
  EXPECT_FALSE(read_header_ops(json::parse(R"j({"X_Forwarded_For": "1"})j"), request, ops, field).empty());
  EXPECT_EQ(field, "X_Forwarded_For");
  EXPECT_EQ(read_header_ops(json::parse(R"j({"X-Forwarded-For": "1"})j"), response, ops, field), "");
  EXPECT_EQ(read_header_ops(json::parse(R"j({"remove": ["Transfer-Encoding"]})j"), response, ops, field)
                .substr(0, 17),
            "Transfer-Encoding");
  EXPECT_EQ(field, "remove[0]");
  EXPECT_EQ(read_header_ops(json::parse(R"j({"X A": "1"})j"), request, ops, field),
            "invalid field character in header");
  EXPECT_EQ(field, "[\"X A\"]");
  EXPECT_EQ(read_header_ops(json::parse(R"j({"X-A": "a\u0001"})j"), request, ops, field),
            "invalid value character in header");
  EXPECT_EQ(read_header_ops(json::parse(R"j({"set": {"X-A": "1"}, "X-B": "2"})j"), response, ops, field),
            "a header cannot be given next to add, set and remove (use set)");
}

// ---- the catalog's checks, through a route ----

struct Refusal {
  std::string path;
  std::string reason;
};

// The errors of a route carrying `plugin` with `conf`, as "path: reason".
std::vector<Refusal> refusals(const char* plugin, const json& conf) {
  json route = {{"id", "r1"},
                {"uri", "/a"},
                {"upstream", {{"nodes", {{"10.0.0.1:80", 1}}}}},
                {"plugins", {{plugin, conf}}}};
  Errors errors;
  validate_route(route, "routes[0]", errors);
  std::vector<Refusal> out;
  for (const FieldError& e : errors.list()) out.push_back({e.path, e.reason});
  return out;
}

void expect_refused(const char* plugin, const char* conf, const std::string& path,
                    const std::string& reason) {
  SCOPED_TRACE(std::string(plugin) + " " + conf);
  std::vector<Refusal> got = refusals(plugin, json::parse(conf));
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].path, "routes[0].plugins." + std::string(plugin) + path);
  EXPECT_NE(got[0].reason.find(reason), std::string::npos) << got[0].reason;
}

void expect_accepted(const char* plugin, const char* conf) {
  std::vector<Refusal> got = refusals(plugin, json::parse(conf));
  EXPECT_TRUE(got.empty()) << plugin << " " << conf << ": "
                           << (got.empty() ? "" : got[0].path + ": " + got[0].reason);
}

TEST(ProxyRewriteCheck, AcceptsAndRefuses) {
  expect_accepted("proxy-rewrite", R"j({"uri": "/v2$uri?from=$remote_addr", "host": "a.example:8080",
      "method": "POST", "headers": {"set": {"X-Id": "$route_id $http_x_user"}, "remove": ["Cookie"]}})j");
  expect_accepted("proxy-rewrite",
                  R"j({"regex_uri": ["^/a/(.*)", "/b/$1", "^/c", "/d"], "headers": {"X-Cap": "$1"}})j");
  expect_refused("proxy-rewrite", R"j({"uri": "/x/$nope"})j", ".uri", "unknown variable $nope");
  expect_refused("proxy-rewrite", R"j({"regex_uri": ["^/a", "/b", "^/c"]})j", ".regex_uri",
                 "The length of regex_uri should be an even number");
  expect_refused("proxy-rewrite", R"j({"regex_uri": ["^/a", "/b", "^/(c", "/d"]})j", ".regex_uri[2]",
                 "invalid regex_uri(^/(c, /d): invalid regular expression");
  expect_refused("proxy-rewrite", R"j({"regex_uri": ["^/a", "/b/$uri"]})j", ".regex_uri[1]",
                 "invalid capturing variable name");
  expect_refused("proxy-rewrite", R"j({"headers": {"set": {"Host": "x"}}})j", ".headers.set.Host",
                 "Host is managed by Portico itself");
  expect_refused("proxy-rewrite", R"j({"headers": {"Connection": "close"}})j", ".headers.Connection",
                 "managed by Portico");
  expect_refused("proxy-rewrite", R"j({"headers": {"add": {"X-Real-IP": "1"}}})j", ".headers.add.X-Real-IP",
                 "managed by Portico");
  expect_refused("proxy-rewrite", R"j({"headers": {"X-A": "$foo"}})j", ".headers.X-A",
                 "unknown variable $foo");
  expect_refused("proxy-rewrite", R"j({"use_real_request_uri_unsafe": true})j",
                 ".use_real_request_uri_unsafe", "not supported by this version");
  expect_refused("proxy-rewrite", R"j({"method": "HEAD"})j", ".method", "HEAD is not supported");
  expect_refused("proxy-rewrite", R"j({"bogus": 1})j", ".bogus", "");
}

TEST(ResponseRewriteCheck, AcceptsAndRefuses) {
  expect_accepted("response-rewrite", R"j({"status_code": 201, "body": "aGVsbG8=", "body_base64": true,
      "headers": {"add": ["X-A: $uri"], "set": {"X-B": 1}, "remove": ["Server"]},
      "vars": [["status", "==", 200], ["http_x_a", "~~", "^a"]]})j");
  expect_refused("response-rewrite", R"j({"filters": [{"regex": "a", "replace": "b"}]})j", ".filters",
                 "not supported by this version");
  // body and filters exclude each other (the schema's dependencies, one error per side).
  EXPECT_EQ(refusals("response-rewrite",
                     json::parse(R"j({"body": "a", "filters": [{"regex": "a", "replace": "b"}]})j"))
                .size(),
            2u);
  expect_refused("response-rewrite", R"j({"body": "not base64!", "body_base64": true})j", ".body",
                 "invalid base64 content");
  expect_refused("response-rewrite", R"j({"body_base64": true})j", ".body", "invalid base64 content");
  expect_refused("response-rewrite", R"j({"vars": [["status", "=", 200]]})j", ".vars[0][1]",
                 "failed to validate the 'vars' expression");
  expect_refused("response-rewrite", R"j({"vars": [["upstream_status", "==", 200]]})j", ".vars[0][0]",
                 "unknown variable \"upstream_status\"");
  expect_refused("response-rewrite", R"j({"headers": {"set": {"Content-Length": "5"}}})j",
                 ".headers.set.Content-Length", "managed by Portico");
  expect_refused("response-rewrite", R"j({"status_code": 600})j", ".status_code", "");
}

TEST(RedirectCheck, AcceptsAndRefuses) {
  expect_accepted("redirect", R"j({"uri": "/new$uri", "ret_code": 301, "append_query_string": true})j");
  expect_accepted("redirect", R"j({"regex_uri": ["^/a/(.*)", "/b/$1"], "encode_uri": true})j");
  expect_accepted("redirect", R"j({"http_to_https": true})j");
  expect_refused("redirect", R"j({"http_to_https": true, "append_query_string": true})j", "",
                 "only one of `http_to_https` and `append_query_string` can be configured.");
  expect_refused("redirect", R"j({"uri": "/a", "http_to_https": true})j", "",
                 "value should match only one schema, but matches both schemas 1 and 3");
  expect_refused("redirect", R"j({"ret_code": 301})j", "",
                 "value should match only one schema, but matches none");
  expect_refused("redirect", R"j({"uri": "/x/$foo"})j", ".uri", "unknown variable $foo");
  expect_refused("redirect", R"j({"regex_uri": ["(", "/x"]})j", ".regex_uri[0]",
                 "invalid regex_uri ((, /x), err:");
}

TEST(RequestIdCheck, AcceptsAndRefuses) {
  expect_accepted("request-id", R"j({})j");
  expect_accepted("request-id",
                  R"j({"algorithm": "range_id", "range_id": {"length": 32, "char_set": "abcdef"}})j");
  expect_refused("request-id", R"j({"algorithm": "snowflake"})j", ".algorithm",
                 "matches none of the enum values");
  expect_refused("request-id", R"j({"header_name": "X Id"})j", ".header_name", "invalid field character");
  expect_refused("request-id", R"j({"header_name": "Content-Length"})j", ".header_name",
                 "managed by Portico");
  expect_refused("request-id", R"j({"range_id": {"length": 5}})j", ".range_id.length", "");
  expect_refused("request-id", R"j({"range_id": {"length": 100000}})j", ".range_id.length", "at most 4096");
  expect_refused("request-id", R"j({"range_id": {"char_set": "abc def"}})j", ".range_id.char_set",
                 "visible ASCII");
}

}  // namespace
}  // namespace portico::config
