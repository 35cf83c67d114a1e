// router::VarsCondition (a compiled `vars` list for plugins) and router::RequestVar as plugins read them.
#include <gtest/gtest.h>

#include "http/parser.h"
#include "router/router.h"

namespace portico::router {
namespace {

struct Req {
  explicit Req(std::string text, std::string_view client = "192.0.2.7") : raw(std::move(text)) {
    http::ParseLimits limits;
    EXPECT_EQ(http::parse_request(raw.data(), raw.size(), limits, head).status, http::ParseStatus::complete);
    EXPECT_TRUE(IpAddress::parse(client, match.client));
    match.method = head.method;
    match.method_text = head.method_text;
    match.host = head.host;
    match.path = head.path;
    match.query = head.query;
    match.target = head.target;
    match.head = &head;
  }
  std::string raw;
  http::RequestHead head;
  MatchRequest match;
};

config::VarExpr expr(std::string var, config::VarExpr::Op op, std::string value, bool negate = false) {
  config::VarExpr e;
  e.var = std::move(var);
  e.op = op;
  e.negate = negate;
  e.values.push_back(std::move(value));
  return e;
}

TEST(VarsCondition, AllExpressionsMustHold) {
  using Op = config::VarExpr::Op;
  VarsCondition cond;
  std::string error;
  ASSERT_TRUE(
      cond.compile({expr("host", Op::eq, "api.test"), expr("arg_name", Op::eq, "jack"),
                    expr("http_x_env", Op::regex, "^prod"), expr("request_method", Op::eq, "POST", true)},
                   &error))
      << error;
  Req hit("GET /a?name=jack HTTP/1.1\r\nHost: API.Test.\r\nX-Env: production\r\n\r\n");
  EXPECT_TRUE(cond.matches(hit.match));  // the host compared as the router does: lower-cased, no final dot
  Req post("POST /a?name=jack HTTP/1.1\r\nHost: api.test\r\nX-Env: prod\r\nContent-Length: 0\r\n\r\n");
  EXPECT_FALSE(cond.matches(post.match));
  Req other("GET /a?name=jim HTTP/1.1\r\nHost: api.test\r\nX-Env: prod\r\n\r\n");
  EXPECT_FALSE(cond.matches(other.match));

  EXPECT_TRUE(VarsCondition().matches(other.match));  // no expressions: always holds
  VarsCondition bad;
  EXPECT_FALSE(bad.compile({expr("uri", Op::regex, "(")}, &error));
  EXPECT_NE(error.find("regex"), std::string::npos) << error;
}

TEST(RequestVar, KnownNamesAndAStableRemoteAddr) {
  EXPECT_TRUE(RequestVar("remote_addr").known());
  EXPECT_TRUE(RequestVar("http_x_a").known());
  EXPECT_FALSE(RequestVar("server_addr").known());
  EXPECT_FALSE(RequestVar().known());
  Req r("GET / HTTP/1.1\r\nHost: h\r\n\r\n", "2001:db8::1");
  std::string_view addr, uri;
  ASSERT_TRUE(RequestVar("remote_addr").get(r.match, addr));
  ASSERT_TRUE(RequestVar("uri").get(r.match, uri));
  // Read after another lookup: the address does not live in the first lookup's stack frame.
  EXPECT_EQ(addr, "2001:db8::1");
  EXPECT_EQ(uri, "/");
}

}  // namespace
}  // namespace portico::router
