// basic-auth (APISIX 3.x): the consumer is found by the user and password of an `Authorization: Basic`
// header (basic_credentials.h parses it, ConsumerIndex::find_basic compares the password in constant time).
// Every refusal is a 401 with APISIX's message and `WWW-Authenticate: Basic realm="<realm>"` (APISIX 3.15+).
// With hide_credentials the Authorization header is not sent upstream.
#include <nlohmann/json.hpp>

#include "plugins/basic_credentials.h"
#include "plugins/consumers.h"
#include "plugins/factories.h"

namespace portico::plugins {

namespace {

class BasicAuth final : public Plugin {
 public:
  BasicAuth(const nlohmann::json& conf, int priority)
      : Plugin("basic-auth", priority, kRewrite),
        hide_credentials_(conf.at("hide_credentials").get<bool>()),
        challenge_("Basic realm=\"" + conf.at("realm").get<std::string>() + "\"") {}

  void rewrite(RequestContext& ctx) const override {
    bool present = false;
    const std::string_view authorization = ctx.header("Authorization", &present);
    if (!present) return refuse(ctx, basic::kMissingAuthorization);
    basic::Error error;
    const std::optional<basic::Credentials> credentials = basic::parse(authorization, error);
    if (!credentials) return refuse(ctx, error.message);
    const ConsumerIndex::BasicCredential* credential =
        ctx.consumers != nullptr ? ctx.consumers->find_basic(credentials->user, credentials->password)
                                 : nullptr;
    if (credential == nullptr) return refuse(ctx, basic::kInvalidUser);
    ctx.consumer = credential->consumer;
    ctx.credential_id = credential->credential_id;
    if (hide_credentials_) ctx.remove_upstream_header("Authorization");
  }

 private:
  void refuse(RequestContext& ctx, std::string_view message) const {
    ctx.respond_message(401, message);
    ctx.reply.headers.emplace_back("WWW-Authenticate", challenge_);
  }

  bool hide_credentials_;
  std::string challenge_;  // the WWW-Authenticate value
};

}  // namespace

constinit const detail::Factory detail::make_basic_auth = detail::construct<BasicAuth>;

}  // namespace portico::plugins
