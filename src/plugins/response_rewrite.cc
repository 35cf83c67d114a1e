// response-rewrite (APISIX 3.x): changes the response sent to the client, whether it came from the origin
// or from a plugin: `status_code`, headers (add, then set, then remove; values are templates), and `body`
// (base64-decoded once, at build, with body_base64). With `vars`, only a response whose request (and
// `status`) satisfies every expression is changed. A replaced body is sent with Content-Length; the
// origin's Content-Encoding, ETag and Last-Modified, which described the old body, are dropped with it (as
// APISIX's clear_header_as_body_modified does). `filters` (body substitutions) are refused by the catalog.
#include <nlohmann/json.hpp>

#include "config/validate.h"
#include "plugins/base64.h"
#include "plugins/factories.h"
#include "plugins/template.h"
#include "router/router.h"

namespace portico::plugins {

namespace {

class ResponseRewrite final : public Plugin {
 public:
  ResponseRewrite(const nlohmann::json& conf, int priority)
      : Plugin("response-rewrite", priority, kResponse) {
    status_ = conf.value("status_code", 0);
    if (auto body = conf.find("body"); body != conf.end()) {
      has_body_ = true;
      body_ = body->get<std::string>();
      if (conf.value("body_base64", false)) {
        std::string decoded;
        if (!b64::decode(body_, b64::Alphabet::standard, decoded))
          throw std::invalid_argument("body: invalid base64 content");
        body_ = std::move(decoded);
      }
    }
    if (auto headers = conf.find("headers"); headers != conf.end()) {
      headers_ = read_header_rules(
          *headers, {.request_side = false, .add_as_lines = true, .values = config::TemplateSyntax::vars});
    }
    if (auto vars = conf.find("vars"); vars != conf.end()) {
      config::Errors errors;
      std::optional<std::vector<config::VarExpr>> exprs = config::validate_vars(*vars, "vars", errors);
      if (!exprs) throw std::invalid_argument("vars: " + errors.list().front().reason);
      std::string error;
      vars_ = router::VarsCondition::compile(*exprs, &error);
      if (!vars_) throw std::invalid_argument(error);
    }
  }

  void on_response(RequestContext& ctx, const ResponseInfo& info) const override {
    if (vars_ && !matches(ctx, info)) return;
    if (status_ != 0) ctx.response.status = status_;
    if (has_body_) {
      ctx.response.has_body = true;
      ctx.response.body.assign(body_);
      for (std::string_view stale : {"Content-Encoding", "ETag", "Last-Modified"}) {
        ctx.response.headers.push(HeaderEdit::Op::remove, stale);
      }
    }
    apply_header_rules(headers_, ctx, nullptr, ctx.response.headers);
  }

 private:
  bool matches(const RequestContext& ctx, const ResponseInfo& info) const {
    router::MatchRequest m;
    if (ctx.request != nullptr) {
      m.method = ctx.request->method;
      m.method_text = ctx.request->method_text;
      m.host = ctx.request->host;
      m.query = ctx.request->query;
      m.target = ctx.request->target;
      m.head = ctx.request;
    }
    m.path = ctx.path;
    m.client = ctx.client_ip;
    // The status about to be sent: an earlier response-phase plugin may have changed it already.
    m.status = ctx.response.status != 0 ? ctx.response.status : info.status;
    return vars_->matches(m);
  }

  int status_ = 0;
  bool has_body_ = false;
  std::string body_;
  std::vector<HeaderRule> headers_;
  std::unique_ptr<router::VarsCondition> vars_;
};

}  // namespace

constinit const detail::Factory detail::make_response_rewrite = detail::construct<ResponseRewrite>;

}  // namespace portico::plugins
