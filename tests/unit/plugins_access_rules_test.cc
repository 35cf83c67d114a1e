// cors, ip-restriction (and its IpSet) and consumer-restriction: which requests each lets through, and the
// headers and answers it gives, as APISIX's t/plugin/cors*.t, ip-restriction.t and consumer-restriction.t.
#include <random>
#include <vector>

#include "plugins/consumers.h"
#include "plugins/ip_set.h"
#include "plugins_test_support.h"

namespace portico::plugins {
namespace {

using test::build;
using test::json;
using test::refusal;
using test::Request;

// ---- IpSet -----------------------------------------------------------------------------------------------

router::Cidr cidr(std::string_view text) {
  router::Cidr c;
  EXPECT_TRUE(router::Cidr::parse(text, c)) << text;
  return c;
}

router::IpAddress ip(std::string_view text) {
  router::IpAddress a;
  EXPECT_TRUE(router::IpAddress::parse(text, a)) << text;
  return a;
}

TEST(IpSet, MatchesIpv4AndIpv6AddressesAndBlocks) {
  std::vector<router::Cidr> blocks = {cidr("10.0.0.0/8"), cidr("192.168.1.7"), cidr("2001:db8::/32"),
                                      cidr("::1")};
  IpSet set(blocks);
  EXPECT_TRUE(set.contains(ip("10.255.0.1")));
  EXPECT_TRUE(set.contains(ip("192.168.1.7")));
  EXPECT_FALSE(set.contains(ip("192.168.1.8")));
  EXPECT_FALSE(set.contains(ip("11.0.0.0")));
  EXPECT_FALSE(set.contains(ip("9.255.255.255")));
  EXPECT_TRUE(set.contains(ip("2001:db8:ffff::1")));
  EXPECT_FALSE(set.contains(ip("2001:db9::")));
  EXPECT_TRUE(set.contains(ip("::1")));
  EXPECT_FALSE(set.contains(ip("::2")));
  // An IPv4 block does not cover IPv6 addresses with the same low bits.
  EXPECT_FALSE(set.contains(ip("::a00:1")));
  EXPECT_FALSE(IpSet().contains(ip("10.0.0.1")));
}

TEST(IpSet, MergesOverlappingAndAdjacentBlocks) {
  std::vector<router::Cidr> blocks = {cidr("10.0.0.128/25"), cidr("10.0.0.0/25"), cidr("10.0.1.0/24"),
                                      cidr("10.0.0.5"), cidr("10.9.0.0/16")};
  IpSet set(blocks);
  EXPECT_EQ(set.interval_count(), 2u);  // 10.0.0.0 - 10.0.1.255 and 10.9.0.0/16
  EXPECT_TRUE(set.contains(ip("10.0.1.255")));
  EXPECT_FALSE(set.contains(ip("10.0.2.0")));
  // The whole space, which ends at the largest address (no overflow when merging after it).
  std::vector<router::Cidr> all = {cidr("::/0"), cidr("ffff::/16"), cidr("10.0.0.0/8")};
  IpSet everything(all);
  EXPECT_EQ(everything.interval_count(), 1u);
  EXPECT_TRUE(everything.contains(ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff")));
  EXPECT_TRUE(everything.contains(ip("1.2.3.4")));  // ::/0 covers IPv4 too (router::Cidr's rule)
}

// Thousands of random blocks, v4 and v6: the set answers exactly as a scan of the blocks does.
TEST(IpSet, AgreesWithALinearScanOnLargeLists) {
  std::mt19937_64 rng(42);
  std::vector<router::Cidr> blocks;
  for (int i = 0; i < 5000; ++i) {
    router::IpAddress a;
    for (auto& b : a.bytes) b = static_cast<uint8_t>(rng());
    bool v4 = i % 2 == 0;
    if (v4) {
      for (int k = 0; k < 10; ++k) a.bytes[k] = 0;
      a.bytes[10] = a.bytes[11] = 0xff;
    }
    a.is_v4 = v4;
    std::string text = a.to_string() + "/" + std::to_string(v4 ? 8 + rng() % 25 : 16 + rng() % 113);
    blocks.push_back(cidr(text));
  }
  IpSet set(blocks);
  int hits = 0;
  for (int i = 0; i < 20000; ++i) {
    // Half the probes inside a random block (its base with random host bits), half anywhere.
    router::IpAddress probe;
    if (i % 2 == 0) {
      const router::Cidr& c = blocks[rng() % blocks.size()];
      probe = c.base;
      for (unsigned bit = c.prefix_len; bit < 128; ++bit) {
        if (rng() & 1) probe.bytes[bit / 8] |= static_cast<uint8_t>(0x80u >> (bit % 8));
      }
    } else {
      for (auto& b : probe.bytes) b = static_cast<uint8_t>(rng());
      if (i % 4 == 1) {
        for (int k = 0; k < 10; ++k) probe.bytes[k] = 0;
        probe.bytes[10] = probe.bytes[11] = 0xff;
      }
    }
    bool linear = false;
    for (const router::Cidr& c : blocks) linear = linear || c.contains(probe);
    ASSERT_EQ(set.contains(probe), linear) << probe.to_string();
    hits += linear;
  }
  EXPECT_GT(hits, 10000);  // the probes exercised both answers
  EXPECT_LT(set.interval_count(), blocks.size());
}

// ---- ip-restriction --------------------------------------------------------------------------------------

TEST(IpRestriction, WhitelistAndBlacklistOverIpv4AndIpv6) {
  auto allow = build("ip-restriction", {{"whitelist", {"127.0.0.1", "10.0.0.0/8", "fd00::/8"}}});
  auto deny =
      build("ip-restriction", {{"blacklist", {"::1"}}, {"message", "go away"}, {"response_code", 404}});
  ASSERT_TRUE(allow && deny);
  for (auto [client, allowed] : std::vector<std::pair<const char*, bool>>{{"127.0.0.1", true},
                                                                          {"10.1.2.3", true},
                                                                          {"fd12::5", true},
                                                                          {"::1", false},
                                                                          {"127.0.0.2", false}}) {
    Request r("GET / HTTP/1.1\r\nHost: h", client);
    allow->access(r.ctx);
    EXPECT_EQ(r.ctx.replied(), !allowed) << client;
    if (!allowed) {
      EXPECT_EQ(r.ctx.reply.status, 403);
      EXPECT_EQ(r.ctx.reply.body, "{\"message\":\"Your IP address is not allowed\"}\n");
    }
  }
  Request v6("GET / HTTP/1.1\r\nHost: h", "::1");
  deny->access(v6.ctx);
  EXPECT_EQ(v6.ctx.reply.status, 404);
  EXPECT_EQ(v6.ctx.reply.body, "{\"message\":\"go away\"}\n");
  Request v4("GET / HTTP/1.1\r\nHost: h", "127.0.0.1");
  deny->access(v4.ctx);
  EXPECT_FALSE(v4.ctx.replied());
}

TEST(IpRestriction, ConfigurationRules) {
  json both = {{"whitelist", {"1.2.3.4"}}, {"blacklist", {"1.2.3.4"}}};
  EXPECT_EQ(refusal("ip-restriction", both),
            ": value should match only one schema, but matches both schemas 1 and 2");
  json bad = {{"whitelist", {"1.2.3.4", "1.2.3.4/33"}}};
  EXPECT_EQ(refusal("ip-restriction", bad), "whitelist[1]: invalid ip address: 1.2.3.4/33");
  json bad6 = {{"blacklist", {"::1/129"}}};
  EXPECT_EQ(refusal("ip-restriction", bad6), "blacklist[0]: invalid ip address: ::1/129");
  json code = {{"blacklist", {"::1"}}, {"response_code", 401}};
  EXPECT_EQ(refusal("ip-restriction", code), "response_code: expected 401 to be at least 403");
  json none = json::object();
  EXPECT_NE(refusal("ip-restriction", none), "");
}

// ---- cors ------------------------------------------------------------------------------------------------

struct CorsCase {
  const char* name;
  json conf;
  const char* origin;        // null: no Origin header
  const char* allow_origin;  // expected Access-Control-Allow-Origin; "" = no CORS headers
};

TEST(Cors, WhichOriginIsAllowed) {
  const std::vector<CorsCase> cases = {
      {"star_any_origin", json::object(), "http://a.com", "*"},
      {"star_without_origin", json::object(), nullptr, "*"},
      {"double_star_echoes", {{"allow_origins", "**"}}, "http://a.com", "http://a.com"},
      {"double_star_without_origin", {{"allow_origins", "**"}}, nullptr, "*"},
      {"single_equal", {{"allow_origins", "http://a.com"}}, "http://a.com", "http://a.com"},
      {"single_other", {{"allow_origins", "http://a.com"}}, "http://b.com", ""},
      {"single_no_origin", {{"allow_origins", "http://a.com"}}, nullptr, ""},
      {"list_hit",
       {{"allow_origins", "http://a.com,http://b.com:8080"}},
       "http://b.com:8080",
       "http://b.com:8080"},
      {"list_miss", {{"allow_origins", "http://a.com,http://b.com"}}, "http://c.com", ""},
      {"list_prefix_is_no_match", {{"allow_origins", "http://a.com,http://b.com"}}, "http://a.co", ""},
      {"regex_hit",
       {{"allow_origins_by_regex", {"^http://.*\\.test\\.com$"}}},
       "http://x.test.com",
       "http://x.test.com"},
      {"regex_miss", {{"allow_origins_by_regex", {"^http://.*\\.test\\.com$"}}}, "http://test.com", ""},
      // allow_origins (default "*") is ignored once regexes are given, as in APISIX 3.x.
      {"regex_replaces_allow_origins", {{"allow_origins_by_regex", {"x\\.com$"}}}, "http://y.org", ""},
      {"regex_second_pattern",
       {{"allow_origins_by_regex", {"a\\.com$", "b\\.com$"}}},
       "http://b.com",
       "http://b.com"},
  };
  for (const CorsCase& c : cases) {
    auto cors = build("cors", c.conf);
    ASSERT_TRUE(cors) << c.name;
    std::string head = "GET /x HTTP/1.1\r\nHost: h";
    if (c.origin != nullptr) head += std::string("\r\nOrigin: ") + c.origin;
    Request r(head);
    cors->on_response(r.ctx, ResponseInfo{200, nullptr});
    EXPECT_EQ(r.response_header("Access-Control-Allow-Origin"), c.allow_origin) << c.name;
    EXPECT_EQ(r.ctx.response.headers.empty(), std::string(c.allow_origin).empty()) << c.name;
    const bool vary = !r.response_header("Vary").empty();
    EXPECT_EQ(vary, !std::string(c.allow_origin).empty() && std::string(c.allow_origin) != "*") << c.name;
  }
}

TEST(Cors, HeadersSent) {
  auto cors = build("cors", {{"allow_origins", "http://a.com"},
                             {"allow_methods", "GET,POST"},
                             {"allow_headers", "request-h"},
                             {"expose_headers", "expose-h"},
                             {"max_age", 10},
                             {"timing_allow_origins", "http://a.com"}});
  Request r("GET /x HTTP/1.1\r\nHost: h\r\nOrigin: http://a.com");
  cors->on_response(r.ctx, ResponseInfo{401, nullptr});
  EXPECT_EQ(r.response_header("Access-Control-Allow-Methods"), "GET,POST");
  EXPECT_EQ(r.response_header("Access-Control-Allow-Headers"), "request-h");
  EXPECT_EQ(r.response_header("Access-Control-Expose-Headers"), "expose-h");
  EXPECT_EQ(r.response_header("Access-Control-Max-Age"), "10");
  EXPECT_EQ(r.response_header("Access-Control-Allow-Credentials"), "");
  EXPECT_EQ(r.response_header("Timing-Allow-Origin"), "http://a.com");
  EXPECT_EQ(r.response_header("Vary"), "Origin");

  // "**" everywhere with credentials: all methods, the requested headers echoed, credentials allowed; no
  // expose_headers: Access-Control-Expose-Headers is left alone.
  auto forced = build("cors", {{"allow_origins", "**"},
                               {"allow_methods", "**"},
                               {"allow_headers", "**"},
                               {"allow_credential", true}});
  Request f("GET /x HTTP/1.1\r\nHost: h\r\nOrigin: http://z.com\r\nAccess-Control-Request-Headers: x-a, x-b");
  forced->on_response(f.ctx, ResponseInfo{200, nullptr});
  EXPECT_EQ(f.response_header("Access-Control-Allow-Origin"), "http://z.com");
  EXPECT_EQ(f.response_header("Access-Control-Allow-Methods"),
            "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE");
  EXPECT_EQ(f.response_header("Access-Control-Allow-Headers"), "x-a, x-b");
  EXPECT_EQ(f.response_header("Access-Control-Allow-Credentials"), "true");
  for (const HeaderEdit& e : f.ctx.response.headers) EXPECT_NE(e.name, "Access-Control-Expose-Headers");

  // Timing-Allow-Origin on its own rule: this origin is not allowed CORS but may see timings.
  auto timing =
      build("cors", {{"allow_origins", "http://one.com"}, {"timing_allow_origins_by_regex", {"two"}}});
  Request t("GET /x HTTP/1.1\r\nHost: h\r\nOrigin: http://two.com");
  timing->on_response(t.ctx, ResponseInfo{200, nullptr});
  EXPECT_EQ(t.response_header("Access-Control-Allow-Origin"), "");
  EXPECT_EQ(t.response_header("Timing-Allow-Origin"), "http://two.com");
}

TEST(Cors, PreflightIsAnsweredInTheRewritePhase) {
  auto cors = build("cors", json::object());
  EXPECT_EQ(cors->priority(), 4000);
  Request preflight(
      "OPTIONS /x HTTP/1.1\r\nHost: h\r\nOrigin: http://a.com\r\nAccess-Control-Request-Method: PUT");
  cors->rewrite(preflight.ctx);
  EXPECT_EQ(preflight.ctx.reply.status, 200);
  EXPECT_EQ(preflight.ctx.reply.body, "");
  // An OPTIONS that is not a CORS preflight, and other methods, go on.
  for (const char* head :
       {"OPTIONS /x HTTP/1.1\r\nHost: h", "OPTIONS /x HTTP/1.1\r\nHost: h\r\nOrigin: http://a.com",
        "GET /x HTTP/1.1\r\nHost: h\r\nOrigin: o\r\nAccess-Control-Request-Method: PUT"}) {
    Request r(head);
    cors->rewrite(r.ctx);
    EXPECT_FALSE(r.ctx.replied()) << head;
  }
}

TEST(Cors, ConfigurationRules) {
  json star = {{"allow_credential", true}};
  EXPECT_EQ(refusal("cors", star), ": you can not set '*' for other option when 'allow_credential' is true");
  json explicit_ok = {{"allow_credential", true},
                      {"allow_origins", "http://a.com"},
                      {"allow_methods", "GET"},
                      {"allow_headers", "x"}};
  EXPECT_EQ(refusal("cors", explicit_ok), "");
  json expose_star = {{"allow_credential", true},
                      {"allow_origins", "**"},
                      {"allow_methods", "GET"},
                      {"allow_headers", "x"},
                      {"expose_headers", "*"}};
  EXPECT_NE(refusal("cors", expose_star), "");
  json regex = {{"allow_origins_by_regex", {"ok", "(unclosed"}}};
  EXPECT_EQ(refusal("cors", regex).rfind("allow_origins_by_regex[1]: invalid regular expression", 0), 0u);
  json metadata = {{"allow_origins_by_metadata", {"EXAMPLE"}}};
  EXPECT_EQ(refusal("cors", metadata).rfind("allow_origins_by_metadata: plugin metadata is not supported", 0),
            0u);
  json origins = {{"allow_origins", "x.com"}};
  EXPECT_EQ(refusal("cors", origins).rfind("allow_origins: failed to match pattern", 0), 0u);
  json crlf = {{"allow_methods", "GET\r\nX-Injected: 1"}};
  EXPECT_EQ(refusal("cors", crlf), "allow_methods: invalid value character in header");
  // APISIX's origin pattern: accepted and refused values (t/plugin/cors4.t TEST 1).
  for (const char* good :
       {"*", "**", "null", "http://y.com.uk", "https://x.com,http://y.com.uk:12000,http://c.tv"}) {
    json c = {{"timing_allow_origins", good}};
    EXPECT_EQ(refusal("cors", c), "") << good;
  }
  for (const char* bad :
       {"", "*a", "*,http://y.com", "nulll", "http//y.com.uk", "x.com", "https://x.com,y.com.uk"}) {
    json c = {{"timing_allow_origins", bad}};
    EXPECT_NE(refusal("cors", c), "") << bad;
  }
}

// ---- consumer-restriction --------------------------------------------------------------------------------

struct Outcome {
  int status;
  std::string body;
};

Outcome run_restriction(const json& conf, const char* consumer, const char* method = "GET",
                        std::string_view service_id = {}) {
  auto plugin = build("consumer-restriction", conf);
  if (!plugin) return {-1, ""};
  Request r(std::string(method) + " /hello HTTP/1.1\r\nHost: h");
  ConsumerRuntime runtime;
  if (consumer != nullptr) {
    runtime.username = consumer;
    r.ctx.consumer = &runtime;
  }
  r.ctx.service_id = service_id;
  plugin->access(r.ctx);
  return {r.ctx.reply.status, r.ctx.reply.body};
}

TEST(ConsumerRestriction, ListsMethodsAndMessagesAsApisix) {
  const std::string forbidden = "{\"message\":\"The consumer_name is forbidden.\"}\n";
  const json whitelist = {{"whitelist", {"jack1"}}};
  EXPECT_EQ(run_restriction(whitelist, "jack1").status, 0);
  EXPECT_EQ(run_restriction(whitelist, "jack2").status, 403);
  EXPECT_EQ(run_restriction(whitelist, "jack2").body, forbidden);
  EXPECT_EQ(run_restriction(whitelist, nullptr).status, 401);
  EXPECT_EQ(run_restriction(whitelist, nullptr).body,
            "{\"message\":\"The request is rejected, please check the consumer_name for this request\"}\n");

  const json blacklist = {{"blacklist", {"jack1"}}, {"rejected_msg", "request is forbidden"}};
  EXPECT_EQ(run_restriction(blacklist, "jack1").body, "{\"message\":\"request is forbidden\"}\n");
  EXPECT_EQ(run_restriction(blacklist, "jack2").status, 0);

  const json post_only = {{"allowed_by_methods", {{{"user", "jack1"}, {"methods", {"POST"}}}}}};
  EXPECT_EQ(run_restriction(post_only, "jack1", "GET").status, 403);
  EXPECT_EQ(run_restriction(post_only, "jack1", "POST").status, 0);
  EXPECT_EQ(run_restriction(post_only, "jack2", "GET").status, 0);  // no entry for jack2

  // blacklist > whitelist > allowed_by_methods.
  const json black_first = {{"blacklist", {"jack1"}},
                            {"allowed_by_methods", {{{"user", "jack1"}, {"methods", {"POST", "GET"}}}}}};
  EXPECT_EQ(run_restriction(black_first, "jack1").status, 403);
  EXPECT_EQ(run_restriction(black_first, "jack2").status, 0);
  const json white_first = {{"whitelist", {"jack1"}},
                            {"allowed_by_methods", {{{"user", "jack1"}, {"methods", {"POST"}}}}}};
  EXPECT_EQ(run_restriction(white_first, "jack1", "GET").status, 0);
  EXPECT_EQ(run_restriction(white_first, "jack2", "GET").status, 403);

  const json by_service = {{"type", "service_id"}, {"whitelist", {"1"}}, {"rejected_code", 401}};
  EXPECT_EQ(run_restriction(by_service, "jack", "GET", "1").status, 0);
  EXPECT_EQ(run_restriction(by_service, "jack", "GET", "2").body,
            "{\"message\":\"The service_id is forbidden.\"}\n");
  EXPECT_EQ(run_restriction(by_service, "jack", "GET", "2").status, 401);
  EXPECT_EQ(run_restriction(by_service, "jack", "GET", "").body,
            "{\"message\":\"The request is rejected, please check the service_id for this request\"}\n");
  const json by_route = {{"type", "route_id"}, {"blacklist", {"r1"}}};
  EXPECT_EQ(run_restriction(by_route, nullptr).body, "{\"message\":\"The route_id is forbidden.\"}\n");
}

TEST(ConsumerRestriction, ConfigurationRules) {
  json groups = {{"type", "consumer_group_id"}, {"whitelist", {"g"}}};
  EXPECT_EQ(refusal("consumer-restriction", groups),
            "type: consumer groups are not supported by this version");
  json none = {{"rejected_code", 403}};
  EXPECT_EQ(refusal("consumer-restriction", none),
            ": object matches none of the required: [\"blacklist\"] or [\"whitelist\"] or "
            "[\"allowed_by_methods\"]");
  json method = {{"allowed_by_methods", {{{"user", "a"}, {"methods", {"get"}}}}}};
  EXPECT_EQ(refusal("consumer-restriction", method),
            "allowed_by_methods[0].methods[0]: matches none of the enum values");
  json defaults = {{"whitelist", {"a"}}};
  EXPECT_EQ(refusal("consumer-restriction", defaults), "");
  EXPECT_EQ(defaults["type"], "consumer_name");
  EXPECT_EQ(defaults["rejected_code"], 403);
}

}  // namespace
}  // namespace portico::plugins
