// fault-injection and mocking: abort, delay, percentage, vars, mocked answers, and the APISIX variables their
// bodies and headers name (config/var_template.h).
#include "plugins/consumers.h"
#include "plugins_test_support.h"

namespace portico::plugins {
namespace {

using test::build;
using test::json;
using test::refusal;
using test::Request;

// ---- fault-injection -------------------------------------------------------------------------------------

TEST(FaultInjection, AbortWithBodyAndHeaders) {
  auto fault = build(
      "fault-injection",
      {{"abort",
        {{"http_status", 503},
         {"body", "client addr: $remote_addr\n${consumer_name}|$arg_who|\\$5 as written"},
         {"headers", {{"X-Fault", "$arg_who"}, {"Retry-After", 7}, {"content-type", "text/x-fault"}}}}}});
  ASSERT_TRUE(fault);
  EXPECT_EQ(fault->priority(), 11000);
  Request r("GET /x?who=me%0D%0Ayou HTTP/1.1\r\nHost: h", "::1");
  ConsumerRuntime consumer;
  consumer.username = "jack";
  r.ctx.consumer = &consumer;
  fault->rewrite(r.ctx);
  EXPECT_EQ(r.ctx.reply.status, 503);
  // A body is sent as expanded; in a header value the CR LF of a decoded argument is percent-encoded.
  EXPECT_EQ(r.ctx.reply.body, "client addr: ::1\njack|me\r\nyou|\\$5 as written");
  EXPECT_EQ(r.ctx.reply.content_type, "text/x-fault");
  EXPECT_EQ(r.reply_header("X-Fault"), "me%0D%0Ayou");
  EXPECT_EQ(r.reply_header("Retry-After"), "7");
  EXPECT_EQ(r.ctx.delay_seconds, 0);
}

TEST(FaultInjection, DelayIsAskedOfTheSessionAndCombinesWithAbort) {
  auto delay = build("fault-injection", {{"delay", {{"duration", 0.25}}}});
  Request r("GET /x HTTP/1.1\r\nHost: h");
  delay->rewrite(r.ctx);
  EXPECT_FALSE(r.ctx.replied());
  EXPECT_DOUBLE_EQ(r.ctx.delay_seconds, 0.25);

  auto both = build("fault-injection", {{"delay", {{"duration", 1}}}, {"abort", {{"http_status", 200}}}});
  Request b("GET /x HTTP/1.1\r\nHost: h");
  both->rewrite(b.ctx);
  EXPECT_EQ(b.ctx.reply.status, 200);
  EXPECT_EQ(b.ctx.reply.body, "");
  EXPECT_DOUBLE_EQ(b.ctx.delay_seconds, 1);
}

TEST(FaultInjection, PercentageAndVars) {
  auto never = build("fault-injection", {{"abort", {{"http_status", 500}, {"percentage", 0}}}});
  auto always = build("fault-injection", {{"abort", {{"http_status", 500}, {"percentage", 100}}}});
  auto half = build("fault-injection", {{"abort", {{"http_status", 500}, {"percentage", 50}}}});
  int aborted = 0;
  for (int i = 0; i < 1000; ++i) {
    Request n("GET / HTTP/1.1\r\nHost: h"), a("GET / HTTP/1.1\r\nHost: h"), h("GET / HTTP/1.1\r\nHost: h");
    never->rewrite(n.ctx);
    always->rewrite(a.ctx);
    half->rewrite(h.ctx);
    ASSERT_FALSE(n.ctx.replied());
    ASSERT_TRUE(a.ctx.replied());
    aborted += h.ctx.replied();
  }
  EXPECT_GT(aborted, 350);
  EXPECT_LT(aborted, 650);

  // (name == jack AND age == 18) OR name2 == allen; the delay has its own condition.
  json vars =
      json::array({json::array({json::array({"arg_name", "==", "jack"}), json::array({"arg_age", "==", 18})}),
                   json::array({json::array({"arg_name2", "==", "allen"})})});
  auto conditional =
      build("fault-injection", {{"abort", {{"http_status", 403}, {"vars", vars}}},
                                {"delay", {{"duration", 2}, {"vars", {{{"http_x_slow", "==", "1"}}}}}}});
  for (auto [target, abort] : std::vector<std::pair<const char*, bool>>{{"/?name=jack&age=18", true},
                                                                        {"/?name=jack&age=19", false},
                                                                        {"/?name2=allen", true},
                                                                        {"/", false}}) {
    Request r(std::string("GET ") + target + " HTTP/1.1\r\nHost: h\r\nX-Slow: 1");
    conditional->rewrite(r.ctx);
    EXPECT_EQ(r.ctx.replied(), abort) << target;
    EXPECT_DOUBLE_EQ(r.ctx.delay_seconds, 2) << target;
  }
  Request fast("GET /?name2=allen HTTP/1.1\r\nHost: h");
  conditional->rewrite(fast.ctx);
  EXPECT_EQ(fast.ctx.delay_seconds, 0);
}

TEST(FaultInjection, ConfigurationRules) {
  auto refused = [](json conf) { return refusal("fault-injection", conf); };
  EXPECT_EQ(refused(json::object()), ": expect object to have at least 1 properties");
  EXPECT_EQ(refused({{"abort", {{"body", "x"}}}}), "abort.http_status: property \"http_status\" is required");
  EXPECT_EQ(refused({{"abort", {{"http_status", 199}}}}),
            "abort.http_status: expected 199 to be at least 200");
  EXPECT_EQ(refused({{"abort", {{"http_status", 500}, {"percentage", 101}}}}),
            "abort.percentage: expected 101 to be at most 100");
  EXPECT_EQ(refused({{"delay", {{"duration", -1}}}}), "delay.duration: expected -1 to be at least 0");
  EXPECT_EQ(refused({{"delay", {{"duration", 1}, {"unknown", 1}}}}),
            "delay.unknown: additional properties forbidden, found unknown");
  EXPECT_EQ(refused({{"abort", {{"http_status", 500}, {"vars", {{{"arg_a", "===", "1"}}}}}}})
                .rfind("abort.vars[0][0][1]: must be an operator", 0),
            0u);
  EXPECT_EQ(refused({{"delay", {{"duration", 1}, {"vars", {{{"arg_a", "==", "1", "x", "y"}}}}}}}),
            "delay.vars[0][0]: must have 3 items [var, operator, value] or 4 items [var, \"!\", operator, "
            "value], got 5");
  EXPECT_EQ(refused({{"abort", {{"http_status", 500}, {"body", "$nope"}}}})
                .rfind("abort.body: unknown variable $nope", 0),
            0u);
  EXPECT_EQ(refused({{"abort", {{"http_status", 500}, {"headers", {{"X-A", "${server_addr}"}}}}}})
                .rfind("abort.headers.X-A: unknown variable $server_addr", 0),
            0u);
  EXPECT_EQ(
      refused({{"abort", {{"http_status", 500}, {"headers", {{"Content-Length", "1"}}}}}}),
      "abort.headers.Content-Length: Content-Length is managed by Portico itself and cannot be changed by "
      "a plugin");
  EXPECT_EQ(refused({{"abort", {{"http_status", 500}, {"headers", {{"X-A", "1\r\nX-B: 2"}}}}}}),
            "abort.headers.X-A: invalid value character in header");
  EXPECT_EQ(refused({{"abort", {{"http_status", 500}, {"headers", {{"Bad Name", "1"}}}}}}),
            "abort.headers[\"Bad Name\"]: invalid field character in header");
}

// ---- mocking ---------------------------------------------------------------------------------------------

TEST(Mocking, AnswersWithTheExampleAfterTheDelay) {
  auto mock = build("mocking", {{"response_example", "{\"from\":\"$remote_addr\"}"},
                                {"response_status", 201},
                                {"delay", 1},
                                {"response_headers", {{"X-Foo", "bar"}, {"X-Num", 5}}}});
  ASSERT_TRUE(mock);
  EXPECT_EQ(mock->priority(), 10900);
  Request r("GET /x HTTP/1.1\r\nHost: h", "10.0.0.9");
  mock->access(r.ctx);
  EXPECT_EQ(r.ctx.reply.status, 201);
  EXPECT_EQ(r.ctx.reply.body, "{\"from\":\"10.0.0.9\"}");
  EXPECT_EQ(r.ctx.reply.content_type, "application/json;charset=utf8");
  EXPECT_EQ(r.reply_header("x-mock-by"), "Portico/" PORTICO_VERSION);
  EXPECT_EQ(r.reply_header("X-Foo"), "bar");
  EXPECT_EQ(r.reply_header("X-Num"), "5");
  EXPECT_DOUBLE_EQ(r.ctx.delay_seconds, 1);

  auto quiet = build(
      "mocking", {{"response_example", "hi"}, {"with_mock_header", false}, {"content_type", "text/plain"}});
  Request q("GET /x HTTP/1.1\r\nHost: h");
  quiet->access(q.ctx);
  EXPECT_EQ(q.ctx.reply.status, 200);
  EXPECT_EQ(q.ctx.reply.content_type, "text/plain");
  EXPECT_EQ(q.reply_header("x-mock-by"), "");
  EXPECT_EQ(q.ctx.delay_seconds, 0);
}

TEST(Mocking, ConfigurationRules) {
  auto refused = [](json conf) { return refusal("mocking", conf); };
  EXPECT_EQ(refused(json::object()),
            ": object matches none of the required: [\"response_example\"] or [\"response_schema\"]");
  EXPECT_EQ(refused({{"response_schema", {{"type", "object"}}}})
                .rfind("response_schema: generating bodies from a JSON schema is not supported", 0),
            0u);
  EXPECT_EQ(refused({{"response_example", "x"}, {"content_type", "image/png"}}),
            "content_type: unsupported content type!");
  EXPECT_EQ(refused({{"response_example", "x"}, {"content_type", "text/html; charset=utf-8"}}), "");
  EXPECT_EQ(refused({{"response_example", "x"}, {"response_status", 1000}}),
            "response_status: expected 1000 to be at most 599");
  EXPECT_EQ(
      refused({{"response_example", "x"}, {"response_headers", {{"Transfer-Encoding", "chunked"}}}}),
      "response_headers.Transfer-Encoding: Transfer-Encoding is managed by Portico itself and cannot be "
      "changed by a plugin");
  EXPECT_EQ(refused({{"response_example", "$ref"}}).rfind("response_example: unknown variable $ref", 0), 0u);
}

}  // namespace
}  // namespace portico::plugins
