// router::VarsCondition: a plugin's `vars` read with the router's semantics, plus `status`, which only a
// response-phase condition sets (a route's `vars` naming it never match while routing); bad regexes refused.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "config/model.h"
#include "router/router.h"

namespace portico::router {
namespace {

using Op = config::VarExpr::Op;

config::VarExpr expr(std::string var, Op op, std::vector<std::string> values, bool negate = false) {
  config::VarExpr e;
  e.var = std::move(var);
  e.op = op;
  e.negate = negate;
  e.values = std::move(values);
  return e;
}

TEST(VarsCondition, EveryExpressionMustHoldAndStatusIsTheResponses) {
  std::string error;
  auto cond = VarsCondition::compile({expr("status", Op::ge, {"200"}), expr("status", Op::lt, {"300"}),
                                      expr("host", Op::eq, {"api.example"})},
                                     &error);
  ASSERT_TRUE(cond) << error;
  MatchRequest m;
  m.host = "API.Example.";  // compared as the router does: lower-cased, trailing dot removed
  m.path = "/a";
  m.status = 204;
  EXPECT_TRUE(cond->matches(m));
  m.status = 404;
  EXPECT_FALSE(cond->matches(m));
  m.status = 0;  // no response yet: `status` is missing
  EXPECT_FALSE(cond->matches(m));
  auto missing = VarsCondition::compile({expr("status", Op::ne, {"200"})}, &error);
  EXPECT_TRUE(missing->matches(m));  // lua-resty-expr: nil ~= "200"

  // A route's `vars` naming `status` never match: routing sets none.
  config::Config config;
  config::Route r;
  r.id = "r";
  r.uris = {"/a"};
  r.vars = {expr("status", Op::eq, {"200"})};
  config.routes.push_back(r);
  auto router = Router::build(config, &error);
  ASSERT_TRUE(router) << error;
  m = MatchRequest();
  m.path = "/a";
  EXPECT_EQ(router->match(m), -1);
}

TEST(VarsCondition, ABadRegexIsAnError) {
  std::string error;
  EXPECT_FALSE(VarsCondition::compile({expr("uri", Op::regex, {"("})}, &error));
  EXPECT_NE(error.find("regex"), std::string::npos) << error;
}

}  // namespace
}  // namespace portico::router
