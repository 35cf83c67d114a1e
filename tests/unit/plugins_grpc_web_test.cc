// grpc-web (plugins/grpc_web.cc): what it accepts and refuses, the path the node gets (APISIX's `:ext`), and
// the CORS headers, as APISIX's apisix/plugins/grpc-web.lua and t/plugin/grpc-web*.t. The translation is
// the session's (e2e: tests/e2e/test_grpc_web.py).
#include "plugins_test_support.h"

namespace portico::plugins {
namespace {

using test::build;
using test::json;
using test::refusal;
using test::Request;

TEST(GrpcWebPlugin, SchemaAsApisix) {
  json conf = json::object();
  EXPECT_EQ(refusal("grpc-web", conf), "");
  EXPECT_EQ(conf["cors_allow_headers"], "content-type,x-grpc-web,x-user-agent");
  EXPECT_EQ(config::find_plugin("grpc-web")->priority, 505);
  json split = {{"cors_allow_headers", "a\r\nSet-Cookie: x=1"}};
  EXPECT_NE(refusal("grpc-web", split), "");  // a response field: no line breaks
  json other = {{"cors_allow_headers", 1}};
  EXPECT_NE(refusal("grpc-web", other), "");
}

TEST(GrpcWebPlugin, AcceptsPostWithAGrpcWebContentType) {
  auto p = build("grpc-web", json::object());
  for (auto [ct, mode] : {std::pair{"application/grpc-web", GrpcWeb::binary},
                          std::pair{"application/grpc-web+proto", GrpcWeb::binary},
                          std::pair{"application/grpc-web-text", GrpcWeb::text},
                          std::pair{"application/grpc-web-text+proto", GrpcWeb::text}}) {
    Request r(std::string("POST /grpc/web/a6.RouteService/GetRoute HTTP/1.1\r\nHost: h\r\nContent-Type: ") +
              ct);
    r.ctx.matched_uri = "/grpc/web/*";
    p->access(r.ctx);
    EXPECT_FALSE(r.ctx.replied()) << ct;
    EXPECT_EQ(r.ctx.grpc_web, mode) << ct;
    EXPECT_EQ(r.ctx.grpc_web_mime, ct);
    EXPECT_EQ(r.ctx.upstream.path, "/a6.RouteService/GetRoute");
    p->on_response(r.ctx, ResponseInfo{200, nullptr});
    EXPECT_EQ(r.response_header("Content-Type"), ct);
    EXPECT_EQ(r.response_header("Access-Control-Allow-Origin"), "*");
    EXPECT_EQ(r.response_header("Access-Control-Expose-Headers"), "grpc-message,grpc-status");
    EXPECT_EQ(r.response_header("Access-Control-Allow-Methods"), "");  // preflight only
  }
}

TEST(GrpcWebPlugin, RefusesOtherMethodsAndContentTypes) {
  auto p = build("grpc-web", json::object());
  Request get("GET /grpc/web/a.S/M HTTP/1.1\r\nHost: h\r\nContent-Type: application/grpc-web");
  p->access(get.ctx);
  EXPECT_EQ(get.ctx.reply.status, 405);
  for (const char* ct : {"application/grpc", "application/json", "application/grpc-web; charset=utf-8"}) {
    Request r(std::string("POST /grpc/web/a.S/M HTTP/1.1\r\nHost: h\r\nContent-Type: ") + ct);
    p->access(r.ctx);
    EXPECT_EQ(r.ctx.reply.status, 400) << ct;
    EXPECT_EQ(r.ctx.grpc_web, GrpcWeb::none);
    p->on_response(r.ctx, ResponseInfo{400, nullptr});
    EXPECT_EQ(r.response_header("Content-Type"), "");  // not mirrored for a refusal
    EXPECT_EQ(r.response_header("Access-Control-Allow-Origin"), "*");
  }
  Request none("POST /grpc/web/a.S/M HTTP/1.1\r\nHost: h");
  p->access(none.ctx);
  EXPECT_EQ(none.ctx.reply.status, 400);
}

TEST(GrpcWebPlugin, PreflightAnsweredWithTheConfiguredHeaders) {
  auto p = build("grpc-web", {{"cors_allow_headers", "content-type,x-a"}});
  Request r(
      "OPTIONS /grpc/web/a.S/M HTTP/1.1\r\nHost: h\r\nOrigin: http://o\r\nAccess-Control-Request-Method: "
      "POST");
  p->access(r.ctx);
  EXPECT_EQ(r.ctx.reply.status, 204);
  p->on_response(r.ctx, ResponseInfo{204, nullptr});
  EXPECT_EQ(r.response_header("Access-Control-Allow-Methods"), "POST");
  EXPECT_EQ(r.response_header("Access-Control-Allow-Headers"), "content-type,x-a");
}

TEST(GrpcWebPlugin, PathFromTheRoutesStar) {
  auto p = build("grpc-web", json::object());
  struct Case {
    const char* pattern;
    const char* target;
    const char* expect;  // "" : the routed path is sent unchanged
  } cases[] = {
      {"/grpc/web/*", "/grpc/web/a.S/M", "/a.S/M"},
      {"/grpc/web*", "/grpc/web/a.S/M", "/a.S/M"},
      {"/grpc/web*", "/grpc/weba.S/M", "/a.S/M"},  // a leading '/' is added, as APISIX does
      {"/grpc/web/*", "/grpc/web/", ""},           // nothing matched: unchanged
      {"/g/:tenant/*", "/g/acme-corp/test.Echo/Echo", "/test.Echo/Echo"},  // after what the param took
      {"/g/:t/*", "/g/a/b.S/M", "/b.S/M"},
      {"/a.S/M", "/a.S/M", ""},  // an exact route: unchanged
  };
  for (const Case& c : cases) {
    Request r(std::string("POST ") + c.target + " HTTP/1.1\r\nHost: h\r\nContent-Type: application/grpc-web");
    r.ctx.matched_uri = c.pattern;
    p->access(r.ctx);
    EXPECT_EQ(r.ctx.upstream.path, c.expect) << c.pattern << " " << c.target;
  }
  // An earlier plugin's path (proxy-rewrite's uri) wins.
  Request r("POST /grpc/web/a.S/M HTTP/1.1\r\nHost: h\r\nContent-Type: application/grpc-web");
  r.ctx.matched_uri = "/grpc/web/*";
  r.ctx.upstream.path = "/other.S/M";
  p->access(r.ctx);
  EXPECT_EQ(r.ctx.upstream.path, "/other.S/M");
}

TEST(GrpcWebPlugin, CorsPluginsOriginWins) {
  auto p = build("grpc-web", json::object());
  Request r(
      "POST /grpc/web/a.S/M HTTP/1.1\r\nHost: h\r\nContent-Type: application/grpc-web\r\nOrigin: http://o");
  r.ctx.response.headers.push(HeaderEdit::Op::set, "Access-Control-Allow-Origin", "http://o");
  p->access(r.ctx);
  p->on_response(r.ctx, ResponseInfo{200, nullptr});
  EXPECT_EQ(r.response_header("Access-Control-Allow-Origin"), "http://o");
}

}  // namespace
}  // namespace portico::plugins
