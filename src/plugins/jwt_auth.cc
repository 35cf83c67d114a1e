// jwt-auth (APISIX 3.x). The token is taken from the `header` (default Authorization, "Bearer " or "bearer "
// prefix optional), else the `query` argument, else the `cookie` (both default `jwt`), and checked in
// APISIX's order (jwt.h): decoded, its key claim (`key_claim_name`) names a consumer
// (ConsumerIndex::find_jwt, one hash lookup), the consumer's verifier checks the signature with the
// consumer's algorithm only (pinned: CRYPTO.md), then exp and nbf with the consumer's lifetime_grace_period.
// Every refusal is a 401 with APISIX's message and `WWW-Authenticate: Bearer realm="<realm>"`.
//
// hide_credentials removes the token from all three places, whichever it was read from (APISIX strips only
// that one): a second copy left in a cookie would reach the origin otherwise.
#include <ctime>

#include <nlohmann/json.hpp>

#include "plugins/consumers.h"
#include "plugins/factories.h"
#include "plugins/jwt.h"

namespace portico::plugins {

std::shared_ptr<const jwt::Verifier> make_jwt_verifier(const nlohmann::json& conf, std::string* error) {
  jwt::KeyConfig key;
  key.algorithm = conf.value("algorithm", std::string("HS256"));
  key.secret = conf.value("secret", std::string());
  key.public_key = conf.value("public_key", std::string());
  key.base64_secret = conf.value("base64_secret", false);
  std::string why;
  std::optional<jwt::Verifier> verifier = jwt::Verifier::create(key, why);
  if (!verifier) {
    if (error != nullptr) *error = std::move(why);
    return nullptr;
  }
  return std::make_shared<const jwt::Verifier>(std::move(*verifier));
}

namespace {

class JwtAuth final : public Plugin {
 public:
  JwtAuth(const nlohmann::json& conf, int priority)
      : Plugin("jwt-auth", priority, kRewrite),
        header_(conf.at("header").get<std::string>()),
        query_(conf.at("query").get<std::string>()),
        cookie_(conf.at("cookie").get<std::string>()),
        key_claim_name_(conf.at("key_claim_name").get<std::string>()),
        hide_credentials_(conf.at("hide_credentials").get<bool>()),
        challenge_("Bearer realm=\"" + conf.at("realm").get<std::string>() + "\"") {
    claims_.exp = claims_.nbf = false;
    for (const auto& claim : conf.at("claims_to_verify")) {
      if (claim == "exp") claims_.exp = true;
      if (claim == "nbf") claims_.nbf = true;
    }
  }

  void rewrite(RequestContext& ctx) const override {
    bool found = false;
    std::string_view text = ctx.header(header_, &found);
    if (found) {
      text = jwt::strip_bearer(text);
    } else {
      text = ctx.query_arg(query_, &found);
      if (!found) text = ctx.cookie(cookie_, &found);
    }
    if (!found) return refuse(ctx, jwt::kMissingToken);

    jwt::Error error;
    const std::optional<jwt::Token> token = jwt::decode(text, error);
    if (!token) return refuse(ctx, error.message);
    const std::optional<std::string_view> key = jwt::consumer_key(*token, key_claim_name_, error);
    if (!key) return refuse(ctx, error.message);
    const ConsumerIndex::JwtCredential* credential =
        ctx.consumers != nullptr ? ctx.consumers->find_jwt(*key) : nullptr;
    if (credential == nullptr) return refuse(ctx, jwt::kInvalidUserKey);
    if (auto failed = credential->verifier->check(*token)) return refuse(ctx, failed->message);
    if (auto failed = jwt::check_time(*token, static_cast<int64_t>(std::time(nullptr)),
                                      credential->lifetime_grace_period, claims_))
      return refuse(ctx, failed->message);

    ctx.consumer = credential->consumer;
    ctx.credential_id = credential->credential_id;
    if (hide_credentials_) {
      ctx.remove_upstream_header(header_);
      ctx.remove_query_arg(query_);
      ctx.remove_cookie(cookie_);
    }
  }

 private:
  void refuse(RequestContext& ctx, std::string_view message) const {
    ctx.respond_message(401, message);
    ctx.reply.headers.emplace_back("WWW-Authenticate", challenge_);
  }

  std::string header_;
  std::string query_;
  std::string cookie_;
  std::string key_claim_name_;
  bool hide_credentials_;
  jwt::ClaimsToVerify claims_;
  std::string challenge_;  // the WWW-Authenticate value
};

}  // namespace

constinit const detail::Factory detail::make_jwt_auth = detail::construct<JwtAuth>;

}  // namespace portico::plugins
