// The rewriting plugins' runtime: template expansion and its escaping (template.h), regex_uri, the id
// generators (request_ids.h), and proxy-rewrite, response-rewrite, redirect and request-id run on a parsed
// request.
#include <gtest/gtest.h>

#include <regex>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "config/plugin_catalog.h"
#include "config/schema.h"
#include "config/validate.h"
#include "http/parser.h"
#include "plugins/plugin.h"
#include "plugins/request_ids.h"
#include "plugins/template.h"

namespace portico::plugins {
namespace {

using json = nlohmann::json;

// One parsed request and the context a plugin sees.
struct Request {
  explicit Request(std::string text) : raw(std::move(text)) {
    http::ParseLimits limits;
    http::ParseResult r = http::parse_request(raw.data(), raw.size(), limits, head);
    EXPECT_EQ(r.status, http::ParseStatus::complete) << raw;
    ctx.request = &head;
    ctx.path = head.path;
    ctx.client_ip_text = "10.0.0.9";
    ctx.route_id = "r1";
  }
  std::string raw;
  http::RequestHead head;
  RequestContext ctx;
};

Request get(std::string_view target, std::string_view extra_headers = "") {
  return Request("GET " + std::string(target) + " HTTP/1.1\r\nHost: Api.Example.com:8080\r\n" +
                 std::string(extra_headers) + "\r\n");
}

std::string expand(std::string_view text, const RequestContext& ctx, Escape escape,
                   config::TemplateSyntax syntax = config::TemplateSyntax::vars) {
  std::string out;
  Expansion e(out, escape);
  Template::parse(text, syntax).expand(ctx, nullptr, e);
  return out;
}

// A plugin built as the snapshot builds it: the catalog's schema (defaults) and check, then the factory.
std::shared_ptr<const Plugin> build(const char* name, const char* conf_text) {
  json conf = json::parse(conf_text);
  const config::PluginDef* def = config::find_plugin(name);
  EXPECT_NE(def, nullptr);
  config::Errors errors;
  EXPECT_TRUE(config::plugin_schema(*def, false).validate(conf, "conf", errors)) << conf_text;
  std::string field;
  EXPECT_EQ(def->check(conf, false, field), "") << conf_text;
  std::string error;
  auto plugin = create_plugin(name, conf, def->priority, BuildEnv{}, &error);
  EXPECT_TRUE(plugin) << error;
  return plugin;
}

std::string header_edit(const HeaderEdits& edits, std::string_view name) {
  for (const HeaderEdit& e : edits) {
    if (e.name == name) return e.value;
  }
  return "<none>";
}

TEST(Template, VariablesReadTheRequest) {
  Request r = get("/p/a%2Fb?page=2&q=a%20b+c", "X-User: Alice\r\nCookie: sid=s1; lang=en\r\n");
  r.ctx.request_id = "id-1";
  EXPECT_EQ(expand("$uri|$args|$is_args|$host|$request_method|$scheme|$remote_addr|$route_id|$request_id",
                   r.ctx, Escape::header),
            "/p/a%2Fb|page=2&q=a%20b+c|?|api.example.com|GET|http|10.0.0.9|r1|id-1");
  // Headers: any case, '_' for '-'; arguments decoded; cookies; a missing one is empty.
  EXPECT_EQ(expand("$http_x_user/$arg_q/$cookie_lang/[$arg_none][$http_none][$consumer_name]", r.ctx,
                   Escape::header),
            "Alice/a b c/en/[][][]");
  // A header an earlier plugin set (or removed) is what the next one reads.
  r.ctx.set_upstream_header("X-User", "Bob");
  EXPECT_EQ(expand("$http_x_user", r.ctx, Escape::header), "Bob");
  r.ctx.remove_upstream_header("x-user");
  EXPECT_EQ(expand("$http_x_user", r.ctx, Escape::header), "");
}

TEST(Template, UriEscapingKeepsEncodedValuesAndEncodesTheRest) {
  Request r = get("/a%20b?x=1", "X-V: 50% ?#x\r\n");
  // $uri is already percent-encoded: its escapes stay. A decoded value gets its '%', '?', '#', spaces and
  // non-ASCII encoded; a '?' of the template starts the query.
  EXPECT_EQ(expand("/n$uri/$http_x_v?v=$http_x_v", r.ctx, Escape::uri),
            "/n/a%20b/50%25%20%3F%23x?v=50%25%20?%23x");
  Request utf = get("/x?name=%C3%A9%0D%0A");
  EXPECT_EQ(expand("/u/$arg_name", utf.ctx, Escape::uri), "/u/%C3%A9%0D%0A");
  // In a header value only control characters are escaped: no header injection through a decoded value.
  EXPECT_EQ(expand("v=$arg_name", utf.ctx, Escape::header), "v=\xC3\xA9%0D%0A");
  // Template text: a stray '%' is encoded, an escape kept.
  EXPECT_EQ(expand("/100%/a%41", r.ctx, Escape::uri), "/100%25/a%41");
  // $request_uri's own '?' starts the query.
  EXPECT_EQ(expand("https://$host$request_uri", r.ctx, Escape::uri), "https://api.example.com/a%20b?x=1");
}

TEST(RegexRewrite, FirstMatchReplacedWithCaptures) {
  RegexRewrite rr("^/api/v(\\d+)/(.*)", "/$2?version=$1");
  std::string out;
  Expansion e(out, Escape::uri);
  Captures caps;
  ASSERT_TRUE(rr.apply("/api/v3/users/7", e, &caps));
  EXPECT_EQ(out, "/users/7?version=3");
  EXPECT_EQ(e.query_at(), 8u);
  EXPECT_EQ(caps.get(1), "3");
  EXPECT_EQ(caps.get(2), "users/7");
  EXPECT_EQ(caps.get(9), "");
  // Unanchored, only the first match replaced, the rest of the subject kept.
  RegexRewrite mid("o", "0");
  out.clear();
  Expansion e2(out, Escape::uri);
  ASSERT_TRUE(mid.apply("/foo/boo", e2, nullptr));
  EXPECT_EQ(out, "/f0o/boo");
  out.clear();
  Expansion e3(out, Escape::uri);
  EXPECT_FALSE(rr.apply("/other", e3, nullptr));
  EXPECT_EQ(out, "");
}

TEST(RequestIds, Formats) {
  const std::regex uuid("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  std::set<std::string> seen;
  for (int i = 0; i < 1000; ++i) {
    std::string id;
    ids::uuid_v4(id);
    ASSERT_TRUE(std::regex_match(id, uuid)) << id;
    seen.insert(id);
  }
  EXPECT_EQ(seen.size(), 1000u);
  std::string nano;
  ids::nanoid(nano);
  EXPECT_TRUE(std::regex_match(nano, std::regex("^[A-Za-z0-9_-]{21}$"))) << nano;
  std::string range;
  ids::range_id("ab", 40, range);
  EXPECT_TRUE(std::regex_match(range, std::regex("^[ab]{40}$"))) << range;
  EXPECT_NE(range.find('a'), std::string::npos);
  EXPECT_NE(range.find('b'), std::string::npos);
  std::string k1, k2;
  ids::ksuid(1400000000 + 1000, k1);
  ids::ksuid(1400000000 + 2000, k2);
  EXPECT_TRUE(std::regex_match(k1, std::regex("^[0-9A-Za-z]{27}$"))) << k1;
  EXPECT_LT(k1, k2);  // ordered by their second
}

TEST(ProxyRewrite, UriTemplateQueryHostMethodHeaders) {
  auto p = build("proxy-rewrite", R"j({"uri": "/v2$uri?src=$arg_src", "host": "up.internal", "method": "POST",
      "headers": {"add": {"X-Add": "1"}, "set": {"X-From": "$remote_addr"}, "remove": ["X-Drop"]}})j");
  Request r = get("/a/./b?src=web&k=v", "X-Drop: yes\r\n");
  p->rewrite(r.ctx);
  ASSERT_FALSE(r.ctx.replied());
  EXPECT_EQ(r.ctx.upstream.path, "/v2/a/b");  // dot segments removed
  EXPECT_TRUE(r.ctx.upstream.query_set);
  EXPECT_EQ(r.ctx.upstream.query, "src=web&src=web&k=v");  // the template's query, then the client's
  EXPECT_EQ(r.ctx.upstream.host, "up.internal");
  EXPECT_EQ(r.ctx.upstream.method, "POST");
  ASSERT_EQ(r.ctx.upstream.headers.size(), 3u);
  EXPECT_EQ(r.ctx.upstream.headers[0].op, HeaderEdit::Op::add);
  EXPECT_EQ(header_edit(r.ctx.upstream.headers, "X-From"), "10.0.0.9");
  EXPECT_EQ(r.ctx.upstream.headers[2].op, HeaderEdit::Op::remove);
}

TEST(ProxyRewrite, RewrittenPathsAreNormalizedAndRooted) {
  auto p = build("proxy-rewrite", R"j({"uri": "/files/$arg_f"})j");
  Request up = get("/x?f=../../admin");
  p->rewrite(up.ctx);
  EXPECT_EQ(up.ctx.upstream.path, "/admin");
  EXPECT_EQ(up.ctx.upstream.query_set, false);  // the client's query goes as it came
  Request nul = get("/x?f=%00");
  p->rewrite(nul.ctx);
  EXPECT_EQ(nul.ctx.reply.status, 400);
  EXPECT_EQ(nul.ctx.reply.body, "{\"message\":\"invalid rewritten uri\"}\n");
  auto rooted = build("proxy-rewrite", R"j({"regex_uri": ["^/x/(.*)", "$1"]})j");
  Request r = get("/x/y%20z");
  rooted->rewrite(r.ctx);
  EXPECT_EQ(r.ctx.upstream.path, "/y%20z");
}

TEST(ProxyRewrite, RegexPairsFirstMatchWinsAndCapturesReachHeaders) {
  auto p = build("proxy-rewrite", R"j({"regex_uri": ["^/nope/(.*)", "/n/$1", "^/api/(\\w+)/(.*)", "/$2/$1"],
      "headers": {"X-Cap": "$1-$2", "X-Route": "$route_id"}})j");
  Request r = get("/api/users/7?x=1");
  p->rewrite(r.ctx);
  EXPECT_EQ(r.ctx.upstream.path, "/7/users");
  EXPECT_FALSE(r.ctx.upstream.query_set);
  EXPECT_EQ(header_edit(r.ctx.upstream.headers, "X-Cap"), "users-7");
  // No pair matches: the path is left alone, captures are empty.
  Request none = get("/other");
  p->rewrite(none.ctx);
  EXPECT_EQ(none.ctx.upstream.path, "");
  EXPECT_EQ(header_edit(none.ctx.upstream.headers, "X-Cap"), "-");
}

TEST(ProxyRewrite, HeadKeepsItsMethod) {
  auto p = build("proxy-rewrite", R"j({"method": "POST"})j");
  Request r("HEAD /a HTTP/1.1\r\nHost: h\r\n\r\n");
  p->rewrite(r.ctx);
  EXPECT_EQ(r.ctx.upstream.method, "");
}

TEST(ResponseRewrite, StatusBodyHeadersAndVars) {
  auto p = build("response-rewrite", R"j({"status_code": 203, "body": "aGVsbG8=", "body_base64": true,
      "headers": {"add": ["X-A: $uri"], "set": {"X-S": "s"}, "remove": ["Server"]},
      "vars": [["status", "==", 200], ["arg_x", "==", "1"]]})j");
  EXPECT_EQ(p->phases(), kResponse);
  Request r = get("/p?x=1");
  ResponseInfo info;
  info.status = 200;
  p->on_response(r.ctx, info);
  EXPECT_EQ(r.ctx.response.status, 203);
  EXPECT_TRUE(r.ctx.response.has_body);
  EXPECT_EQ(r.ctx.response.body, "hello");
  EXPECT_EQ(header_edit(r.ctx.response.headers, "X-A"), "/p");
  EXPECT_EQ(header_edit(r.ctx.response.headers, "Content-Encoding"), "");  // dropped with the old body
  // vars: another status, or another argument: nothing changes.
  Request other = get("/p?x=1");
  info.status = 404;
  p->on_response(other.ctx, info);
  EXPECT_TRUE(other.ctx.response.empty());
  Request arg = get("/p?x=2");
  info.status = 200;
  p->on_response(arg.ctx, info);
  EXPECT_TRUE(arg.ctx.response.empty());
}

TEST(Redirect, UriRegexAndQuery) {
  Request r = get("/old/a?k=v");
  build("redirect", R"j({"uri": "/new$uri", "append_query_string": true})j")->rewrite(r.ctx);
  EXPECT_EQ(r.ctx.reply.status, 302);
  ASSERT_EQ(r.ctx.reply.headers.size(), 1u);
  EXPECT_EQ(r.ctx.reply.headers[0], (std::pair<std::string, std::string>("Location", "/new/old/a?k=v")));

  Request q = get("/old/a?k=v");
  build("redirect", R"j({"uri": "/n?x=1", "ret_code": 307, "append_query_string": true})j")->rewrite(q.ctx);
  EXPECT_EQ(q.ctx.reply.status, 307);
  EXPECT_EQ(q.ctx.reply.headers[0].second, "/n?x=1&k=v");

  auto regex = build("redirect", R"j({"regex_uri": ["^/old/(.*)", "/moved/$1"], "ret_code": 301})j");
  Request m = get("/old/z");
  regex->rewrite(m.ctx);
  EXPECT_EQ(m.ctx.reply.status, 301);
  EXPECT_EQ(m.ctx.reply.headers[0].second, "/moved/z");
  Request miss = get("/else");
  regex->rewrite(miss.ctx);
  EXPECT_FALSE(miss.ctx.replied());  // no match: the request goes on
}

TEST(Redirect, HttpToHttps) {
  auto p = build("redirect", R"j({"http_to_https": true})j");
  Request r = get("/a?b=1");
  p->rewrite(r.ctx);
  EXPECT_EQ(r.ctx.reply.status, 301);
  EXPECT_EQ(r.ctx.reply.headers[0].second, "https://api.example.com/a?b=1");
  Request post("POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n");
  p->rewrite(post.ctx);
  EXPECT_EQ(post.ctx.reply.status, 308);
  Request https = get("/a", "X-Forwarded-Proto: https\r\n");
  p->rewrite(https.ctx);
  EXPECT_FALSE(https.ctx.replied());
}

TEST(RequestId, GeneratesKeepsAndAnswers) {
  auto p = build("request-id", "{}");
  EXPECT_EQ(p->phases(), kRewrite | kResponse);
  Request r = get("/a");
  p->rewrite(r.ctx);
  EXPECT_EQ(r.ctx.request_id.size(), 36u);
  EXPECT_EQ(header_edit(r.ctx.upstream.headers, "X-Request-Id"), r.ctx.request_id);
  ResponseInfo info;
  info.status = 200;
  p->on_response(r.ctx, info);
  EXPECT_EQ(header_edit(r.ctx.response.headers, "X-Request-Id"), r.ctx.request_id);

  // The client's id is kept; an empty one is replaced.
  Request kept = get("/a", "x-request-id: mine\r\n");
  p->rewrite(kept.ctx);
  EXPECT_EQ(kept.ctx.request_id, "mine");
  EXPECT_TRUE(kept.ctx.upstream.headers.empty());
  Request empty = get("/a", "X-Request-Id: \r\n");
  p->rewrite(empty.ctx);
  EXPECT_EQ(empty.ctx.request_id.size(), 36u);

  // A second request-id (a route's after a global rule's) keeps the first one's id.
  Request twice = get("/a");
  p->rewrite(twice.ctx);
  const std::string first = twice.ctx.request_id;
  build("request-id", R"j({"algorithm": "nanoid"})j")->rewrite(twice.ctx);
  EXPECT_EQ(twice.ctx.request_id, first);

  auto quiet = build("request-id", R"j({"include_in_response": false, "algorithm": "range_id",
      "range_id": {"length": 8, "char_set": "xyzxyz"}})j");
  EXPECT_EQ(quiet->phases(), kRewrite);
  Request q = get("/a");
  quiet->rewrite(q.ctx);
  EXPECT_TRUE(std::regex_match(q.ctx.request_id, std::regex("^[xyz]{8}$"))) << q.ctx.request_id;
}

}  // namespace
}  // namespace portico::plugins
