// basic-auth and jwt-auth at run time (basic_auth.cc, jwt_auth.cc): each refusal's 401 message and challenge,
// where the token is taken from and in which order, who is authenticated, and what hide_credentials removes.
// Consumers go through the real validator (schema defaults, the catalog's checks) and the real ConsumerIndex.
#include <gtest/gtest.h>

#include <ctime>
#include <deque>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "config/plugin_catalog.h"
#include "config/schema.h"
#include "config/validate.h"
#include "plugins/consumers.h"
#include "plugins_jwt_sign.h"

namespace portico::plugins {
namespace {

using json = nlohmann::json;
namespace signing = jwt::signing;

// A request head whose views point into strings this object owns.
class Request {
 public:
  Request& header(std::string name, std::string value) {
    auto& n = text_.emplace_back(std::move(name));
    auto& v = text_.emplace_back(std::move(value));
    head_.headers[head_.header_count++] = http::Header{n, v};
    return *this;
  }
  Request& query(std::string q) {
    head_.query = text_.emplace_back(std::move(q));
    return *this;
  }
  const http::RequestHead& head() const { return head_; }

 private:
  http::RequestHead head_;
  std::deque<std::string> text_;
};

// The plugin `name` built from a route-side configuration, defaults filled by the catalog's schema.
std::shared_ptr<const Plugin> make(const std::string& name, json conf = json::object()) {
  const config::PluginDef* def = config::find_plugin(name);
  EXPECT_NE(def, nullptr);
  config::Errors errors;
  EXPECT_TRUE(config::plugin_schema(*def, false).validate(conf, "route", errors));
  std::string error;
  auto plugin = create_plugin(name, conf, def->priority, BuildEnv{}, &error);
  EXPECT_TRUE(plugin) << error;
  return plugin;
}

// Consumers from their Admin API form, through the validator, into an index.
std::shared_ptr<const ConsumerIndex> index_of(const std::vector<json>& consumers) {
  std::vector<config::Consumer> models;
  for (const json& c : consumers) {
    config::Errors errors;
    auto model = config::validate_consumer(c, "", errors);
    EXPECT_TRUE(model) << (errors.list().empty() ? ""
                                                 : errors.list()[0].path + ": " + errors.list()[0].reason);
    if (model) models.push_back(std::move(*model));
  }
  PluginCache cache;
  std::vector<std::string> problems;
  auto index = ConsumerIndex::build(models, {}, BuildEnv{}, cache, problems);
  for (const auto& p : problems) ADD_FAILURE() << p;
  return index;
}

json consumer(const std::string& name, const std::string& plugin, json conf) {
  return {{"username", name}, {"plugins", {{plugin, std::move(conf)}}}};
}

struct Outcome {
  int status = 0;
  std::string body;
  std::string challenge;  // WWW-Authenticate
  std::string consumer;   // the username authenticated as
  std::vector<HeaderEdit> edits;
  bool query_set = false;
  std::string query;
};

Outcome run(const Plugin& plugin, const ConsumerIndex& index, const Request& request) {
  RequestContext ctx;
  ctx.request = &request.head();
  ctx.consumers = &index;
  plugin.rewrite(ctx);
  Outcome out;
  out.status = ctx.reply.status;
  out.body = ctx.reply.body;
  for (const auto& [name, value] : ctx.reply.headers) {
    if (name == "WWW-Authenticate") out.challenge = value;
  }
  if (ctx.consumer != nullptr) out.consumer = ctx.consumer->username;
  out.edits.assign(ctx.upstream.headers.begin(), ctx.upstream.headers.end());
  out.query_set = ctx.upstream.query_set;
  out.query = ctx.upstream.query;
  return out;
}

std::string message(std::string_view m) {
  return "{\"message\":\"" + std::string(m) + "\"}\n";
}

// ---- basic-auth ----

std::string basic(std::string_view user_password) {
  return "Basic " + b64::encode(user_password, b64::Alphabet::standard, true);
}

class BasicAuthTest : public ::testing::Test {
 protected:
  std::shared_ptr<const ConsumerIndex> index_ =
      index_of({consumer("jack", "basic-auth", {{"username", "foo"}, {"password", "bar"}}),
                consumer("rose", "basic-auth", {{"username", "rose"}, {"password", "p:w d"}})});
  std::shared_ptr<const Plugin> plugin_ = make("basic-auth");
};

TEST_F(BasicAuthTest, RefusalsCarryApisixsMessagesAndTheChallenge) {
  const std::pair<std::string, std::string> cases[] = {
      {"", "Missing authorization in request"},  // no header at all (below)
      {"Bad_header YmFyOmJhcgo=", "Invalid authorization in request"},
      {"Basic aca_a", "Invalid authorization in request"},
      {"Basic YmFy", "Invalid authorization in request"},  // "bar": no ':'
      {basic("nobody:bar"), "Invalid user authorization"},
      {basic("foo:baz"), "Invalid user authorization"},
      {basic("foo:"), "Invalid user authorization"},
      {basic(":bar"), "Invalid user authorization"},
      {basic("rose:bar"), "Invalid user authorization"},  // another consumer's password
  };
  for (const auto& [value, want] : cases) {
    SCOPED_TRACE(value);
    Request r;
    if (!value.empty()) r.header("Authorization", value);
    Outcome o = run(*plugin_, *index_, r);
    EXPECT_EQ(o.status, 401);
    EXPECT_EQ(o.body, message(want));
    EXPECT_EQ(o.challenge, "Basic realm=\"basic\"");
    EXPECT_EQ(o.consumer, "");
  }
}

TEST_F(BasicAuthTest, AuthenticatesAndKeepsTheHeaderUnlessHidden) {
  Request r;
  r.header("authorization", basic("foo:bar"));
  Outcome o = run(*plugin_, *index_, r);
  EXPECT_EQ(o.status, 0);
  EXPECT_EQ(o.consumer, "jack");
  EXPECT_TRUE(o.edits.empty());

  // The password is everything after the first ':' and is compared as sent.
  Request r2;
  r2.header("Authorization", basic("rose:p:w d"));
  EXPECT_EQ(run(*plugin_, *index_, r2).consumer, "rose");

  auto hiding = make("basic-auth", {{"hide_credentials", true}, {"realm", "api"}});
  o = run(*hiding, *index_, r);
  EXPECT_EQ(o.consumer, "jack");
  ASSERT_EQ(o.edits.size(), 1u);
  EXPECT_EQ(o.edits[0].op, HeaderEdit::Op::remove);
  EXPECT_EQ(o.edits[0].name, "Authorization");
  EXPECT_EQ(run(*hiding, *index_, Request()).challenge, "Basic realm=\"api\"");
}

// ---- jwt-auth ----

const std::string kSecret = "my-secret-key";
const std::string kOtherSecret = "another-secret";

std::string hs256(const json& payload, const std::string& secret = kSecret) {
  return signing::sign("HS256", payload.dump(), secret);
}

int64_t now() {
  return static_cast<int64_t>(std::time(nullptr));
}

class JwtAuthTest : public ::testing::Test {
 protected:
  std::shared_ptr<const ConsumerIndex> index_ = index_of({
      consumer("jack", "jwt-auth", {{"key", "user-key"}, {"secret", kSecret}}),
      consumer("kate", "jwt-auth", {{"key", "kate-key"}, {"secret", kOtherSecret}}),
      consumer(
          "rsa", "jwt-auth",
          {{"key", "rsa-key"}, {"algorithm", "RS256"}, {"public_key", signing::test_key("RSA").public_pem}}),
      consumer("lax", "jwt-auth", {{"key", "lax-key"}, {"secret", kSecret}, {"lifetime_grace_period", 60}}),
  });
  std::shared_ptr<const Plugin> plugin_ = make("jwt-auth");

  Outcome with_bearer(const std::string& token) {
    Request r;
    r.header("Authorization", "Bearer " + token);
    return run(*plugin_, *index_, r);
  }
};

TEST_F(JwtAuthTest, TokenFromHeaderWithOrWithoutBearerThenQueryThenCookie) {
  const std::string token = hs256({{"key", "user-key"}});
  for (const std::string& value : {"Bearer " + token, "bearer " + token, token}) {
    Request r;
    r.header("Authorization", value);
    EXPECT_EQ(run(*plugin_, *index_, r).consumer, "jack") << value;
  }
  Request q;
  q.query("a=1&jwt=" + token);
  EXPECT_EQ(run(*plugin_, *index_, q).consumer, "jack");
  Request c;
  c.header("Cookie", "a=b; jwt=" + token);
  EXPECT_EQ(run(*plugin_, *index_, c).consumer, "jack");

  // The header wins over the query, the query over the cookie, whatever the later ones hold.
  const std::string kate = signing::sign("HS256", json{{"key", "kate-key"}}.dump(), kOtherSecret);
  Request both;
  both.header("Authorization", token).header("Cookie", "jwt=" + kate).query("jwt=" + kate);
  EXPECT_EQ(run(*plugin_, *index_, both).consumer, "jack");
  Request bad_header;
  bad_header.header("Authorization", "garbage").query("jwt=" + token);
  EXPECT_EQ(run(*plugin_, *index_, bad_header).body, message("JWT token invalid"));
  Request query_first;
  query_first.query("jwt=" + kate).header("Cookie", "jwt=" + token);
  EXPECT_EQ(run(*plugin_, *index_, query_first).consumer, "kate");
}

TEST_F(JwtAuthTest, RefusalsCarryApisixsMessagesAndTheChallenge) {
  const auto& rsa = signing::test_key("RSA");
  const std::pair<std::string, std::string> cases[] = {
      {"not-a-jwt", "JWT token invalid"},
      {"a.b", "JWT token invalid"},
      {signing::sign("HS256", "[1]", kSecret), "JWT token invalid"},
      {hs256({{"sub", "x"}}), "missing user key in JWT token"},
      {hs256({{"key", 5}}), "Invalid user key in JWT token"},
      {hs256({{"key", "nobody"}}), "Invalid user key in JWT token"},
      // Signed with another consumer's secret while naming jack.
      {hs256({{"key", "user-key"}}, kOtherSecret), "failed to verify jwt"},
      // alg none, whatever its case, and an empty signature.
      {signing::b64url(R"({"alg":"none"})") + "." + signing::b64url(R"({"key":"user-key"})") + ".",
       "JWT token invalid"},
      {signing::b64url(R"({"alg":"None"})") + "." + signing::b64url(R"({"key":"user-key"})") + ".c2ln",
       "JWT token invalid"},
      // Algorithm confusion: the RS256 consumer's public key PEM used as an HS256 secret.
      {signing::sign("HS256", json{{"key", "rsa-key"}}.dump(), rsa.public_pem), "failed to verify jwt"},
      // An RS256 token for an HS256 consumer.
      {signing::sign("RS256", json{{"key", "user-key"}}.dump(), rsa.private_pem), "failed to verify jwt"},
      {hs256({{"key", "user-key"}, {"exp", now() - 10}}), "failed to verify jwt"},
      {hs256({{"key", "user-key"}, {"nbf", now() + 100}}), "failed to verify jwt"},
      {hs256({{"key", "user-key"}, {"exp", "tomorrow"}}), "failed to verify jwt"},
  };
  for (const auto& [token, want] : cases) {
    SCOPED_TRACE(token);
    Outcome o = with_bearer(token);
    EXPECT_EQ(o.status, 401);
    EXPECT_EQ(o.body, message(want));
    EXPECT_EQ(o.challenge, "Bearer realm=\"jwt\"");
    EXPECT_EQ(o.consumer, "");
  }
  Outcome missing = run(*plugin_, *index_, Request());
  EXPECT_EQ(missing.body, message("Missing JWT token in request"));
  EXPECT_EQ(missing.challenge, "Bearer realm=\"jwt\"");
}

TEST_F(JwtAuthTest, ValidTimesTheGracePeriodAndAsymmetricConsumers) {
  EXPECT_EQ(with_bearer(hs256({{"key", "user-key"}, {"exp", now() + 60}, {"nbf", now() - 60}})).consumer,
            "jack");
  // The grace period is the consumer's: 30 s past exp is refused for jack and accepted for lax.
  EXPECT_EQ(with_bearer(hs256({{"key", "user-key"}, {"exp", now() - 30}})).status, 401);
  EXPECT_EQ(with_bearer(hs256({{"key", "lax-key"}, {"exp", now() - 30}})).consumer, "lax");
  EXPECT_EQ(with_bearer(hs256({{"key", "lax-key"}, {"exp", now() - 600}})).status, 401);
  const auto& rsa = signing::test_key("RSA");
  EXPECT_EQ(with_bearer(signing::sign("RS256", json{{"key", "rsa-key"}}.dump(), rsa.private_pem)).consumer,
            "rsa");
  // Another RSA key, same claim: refused.
  const auto& other = signing::test_key("RSA", 1);
  EXPECT_EQ(with_bearer(signing::sign("RS256", json{{"key", "rsa-key"}}.dump(), other.private_pem)).status,
            401);
}

TEST_F(JwtAuthTest, RouteOptionsNameThePlacesTheClaimAndTheChecks) {
  auto custom = make("jwt-auth", {{"header", "X-Token"},
                                  {"query", "t"},
                                  {"cookie", "session"},
                                  {"key_claim_name", "iss"},
                                  {"claims_to_verify", json::array({"nbf"})},
                                  {"realm", "api"}});
  const std::string token = hs256({{"iss", "user-key"}, {"exp", now() - 1000}});  // exp not checked
  Request h;
  h.header("X-Token", token).header("Authorization", "Bearer garbage");
  EXPECT_EQ(run(*custom, *index_, h).consumer, "jack");
  Request q;
  q.query("jwt=garbage&t=" + token);
  EXPECT_EQ(run(*custom, *index_, q).consumer, "jack");
  Request c;
  c.header("Cookie", "session=" + token);
  EXPECT_EQ(run(*custom, *index_, c).consumer, "jack");
  Request key_claim;
  key_claim.header("X-Token", hs256({{"key", "user-key"}}));
  Outcome o = run(*custom, *index_, key_claim);
  EXPECT_EQ(o.body, message("missing user key in JWT token"));
  EXPECT_EQ(o.challenge, "Bearer realm=\"api\"");
}

TEST_F(JwtAuthTest, HideCredentialsRemovesTheTokenFromAllThreePlaces) {
  auto hiding = make("jwt-auth", {{"hide_credentials", true}});
  const std::string token = hs256({{"key", "user-key"}});
  Request r;
  r.header("Authorization", "Bearer " + token)
      .header("Cookie", "a=1; jwt=" + token + "; b=2")
      .query("x=1&jwt=" + token + "&y=2");
  Outcome o = run(*hiding, *index_, r);
  EXPECT_EQ(o.consumer, "jack");
  ASSERT_EQ(o.edits.size(), 2u);
  EXPECT_EQ(o.edits[0].op, HeaderEdit::Op::remove);
  EXPECT_EQ(o.edits[0].name, "authorization");
  EXPECT_EQ(o.edits[1].op, HeaderEdit::Op::set);
  EXPECT_EQ(o.edits[1].name, "Cookie");
  EXPECT_EQ(o.edits[1].value, "a=1; b=2");
  EXPECT_TRUE(o.query_set);
  EXPECT_EQ(o.query, "x=1&y=2");

  // Without hide_credentials nothing is edited.
  o = run(*plugin_, *index_, r);
  EXPECT_EQ(o.consumer, "jack");
  EXPECT_TRUE(o.edits.empty());
  EXPECT_FALSE(o.query_set);
}

// A username or JWT key two consumers claim authenticates neither: who the request is from is ambiguous.
TEST(AuthAmbiguity, ASharedBasicUsernameOrJwtKeyAuthenticatesNeither) {
  std::vector<config::Consumer> models;
  for (const json& c : {consumer("a", "basic-auth", {{"username", "u"}, {"password", "pa"}}),
                        consumer("b", "basic-auth", {{"username", "u"}, {"password", "pb"}}),
                        consumer("c", "jwt-auth", {{"key", "k"}, {"secret", kSecret}}),
                        consumer("d", "jwt-auth", {{"key", "k"}, {"secret", kSecret}})}) {
    config::Errors errors;
    models.push_back(*config::validate_consumer(c, "", errors));
  }
  PluginCache cache;
  std::vector<std::string> problems;
  auto index = ConsumerIndex::build(models, {}, BuildEnv{}, cache, problems);
  EXPECT_EQ(problems.size(), 2u);
  Request basic_request;
  basic_request.header("Authorization", basic("u:pa"));
  EXPECT_EQ(run(*make("basic-auth"), *index, basic_request).body, message("Invalid user authorization"));
  Request jwt_request;
  jwt_request.header("Authorization", hs256({{"key", "k"}}));
  EXPECT_EQ(run(*make("jwt-auth"), *index, jwt_request).body, message("Invalid user key in JWT token"));
}

TEST(RequestContextCookies, RemoveCookieKeepsTheOthersAndDropsAnEmptyField) {
  Request r;
  r.header("Cookie", "jwt=1; a=2").header("cookie", "jwtx=3;jwt=4");
  RequestContext ctx;
  ctx.request = &r.head();
  ctx.remove_cookie("jwt");
  ASSERT_EQ(ctx.upstream.headers.size(), 1u);
  EXPECT_EQ(ctx.upstream.headers[0].value, "a=2; jwtx=3");

  Request only;
  only.header("Cookie", "jwt=1");
  RequestContext ctx2;
  ctx2.request = &only.head();
  ctx2.remove_cookie("jwt");
  ASSERT_EQ(ctx2.upstream.headers.size(), 1u);
  EXPECT_EQ(ctx2.upstream.headers[0].op, HeaderEdit::Op::remove);

  RequestContext ctx3;
  ctx3.request = &r.head();
  ctx3.remove_cookie("none");
  EXPECT_TRUE(ctx3.upstream.headers.empty());
}

}  // namespace
}  // namespace portico::plugins
