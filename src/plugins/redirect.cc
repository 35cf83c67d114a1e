// redirect (APISIX 3.x): answers with `ret_code` (302) and a Location built from `uri` (a template) or from
// `regex_uri` (the routed path with its first match replaced; no match: the request goes on). With
// `http_to_https`, a request whose scheme (X-Forwarded-Proto when sent, else the connection's) is "http" is
// sent to https://$host$request_uri, with 301 for GET and HEAD and 308 for other methods (which must be
// repeated as they were); an https request goes on. `append_query_string` appends the client's query
// (after '&' when the new location has one). `encode_uri` escapes the location as a target (template.h);
// without it only the bytes a header value cannot hold are escaped. The answer has no body (APISIX sends
// nginx's HTML page for the status).
#include <nlohmann/json.hpp>

#include "plugins/factories.h"
#include "plugins/template.h"

namespace portico::plugins {

namespace {

class Redirect final : public Plugin {
 public:
  Redirect(const nlohmann::json& conf, int priority)
      : Plugin("redirect", priority, kRewrite),
        ret_code_(conf.at("ret_code").get<int>()),
        http_to_https_(conf.value("http_to_https", false)),
        encode_uri_(conf.at("encode_uri").get<bool>()),
        append_query_string_(conf.at("append_query_string").get<bool>()) {
    if (auto uri = conf.find("uri"); uri != conf.end()) {
      uri_ = Template::parse(uri->get<std::string>(), config::TemplateSyntax::vars);
      has_uri_ = true;
    }
    if (auto regex = conf.find("regex_uri"); regex != conf.end()) {
      regex_uri_ =
          std::make_unique<RegexRewrite>((*regex)[0].get<std::string>(), (*regex)[1].get<std::string>());
    }
    if (http_to_https_) https_ = Template::parse("https://$host$request_uri", config::TemplateSyntax::vars);
  }

  void rewrite(RequestContext& ctx) const override {
    int status = ret_code_;
    const Template* uri = has_uri_ ? &uri_ : nullptr;
    if (http_to_https_) {
      bool forwarded = false;
      std::string_view scheme = ctx.header("X-Forwarded-Proto", &forwarded);
      if (!forwarded) scheme = ctx.tls ? "https" : "http";
      if (scheme == "http") {
        uri = &https_;
        const http::Method m = ctx.request->method;
        status = m == http::Method::GET || m == http::Method::HEAD ? 301 : 308;
      }
    }
    std::string location;
    Expansion out(location, encode_uri_ ? Escape::uri : Escape::header);
    if (uri != nullptr) {
      uri->expand(ctx, nullptr, out);
    } else if (!regex_uri_ || !regex_uri_->apply(ctx.path, out, nullptr)) {
      return;
    }
    const std::string_view query = ctx.upstream_query();
    if (append_query_string_ && !query.empty()) {
      location += location.find('?') == std::string::npos ? '?' : '&';
      location += query;
    }
    ctx.respond(status, {});
    ctx.reply.headers.emplace_back("Location", std::move(location));
  }

 private:
  int ret_code_;
  bool http_to_https_;
  bool encode_uri_;
  bool append_query_string_;
  bool has_uri_ = false;
  Template uri_;
  Template https_;
  std::unique_ptr<RegexRewrite> regex_uri_;
};

}  // namespace

constinit const detail::Factory detail::make_redirect = detail::construct<Redirect>;

}  // namespace portico::plugins
