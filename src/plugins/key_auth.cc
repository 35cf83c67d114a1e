// key-auth (APISIX 3.x): the consumer is found by an API key in a header (default `apikey`), else in a query
// argument (default `apikey`). With hide_credentials the key is removed from wherever it was sent, header
// and query both, so the origin never sees it (APISIX strips only the place it read the key from).
#include <nlohmann/json.hpp>

#include "plugins/consumers.h"
#include "plugins/factories.h"

namespace portico::plugins {

namespace {

class KeyAuth final : public Plugin {
 public:
  KeyAuth(const nlohmann::json& conf, int priority)
      : Plugin("key-auth", priority, kRewrite),
        header_(conf.at("header").get<std::string>()),
        query_(conf.at("query").get<std::string>()),
        hide_credentials_(conf.at("hide_credentials").get<bool>()) {}

  void rewrite(RequestContext& ctx) const override {
    bool in_header = false, in_query = false;
    std::string_view key = ctx.header(header_, &in_header);
    if (!in_header) key = ctx.query_arg(query_, &in_query);
    if (!in_header && !in_query) {
      ctx.respond_message(401, "Missing API key in request");
      return;
    }
    const ConsumerIndex::KeyCredential* credential =
        ctx.consumers != nullptr ? ctx.consumers->find_key(key) : nullptr;
    if (credential == nullptr) {
      ctx.respond_message(401, "Invalid API key in request");
      return;
    }
    ctx.consumer = credential->consumer;
    ctx.credential_id = credential->credential_id;
    if (hide_credentials_) {
      ctx.remove_upstream_header(header_);
      ctx.remove_query_arg(query_);
    }
  }

 private:
  std::string header_;
  std::string query_;
  bool hide_credentials_;
};

}  // namespace

constinit const detail::Factory detail::make_key_auth = detail::construct<KeyAuth>;

}  // namespace portico::plugins
