// response-rewrite (APISIX 3.x): changes the response sent to the client, whether it came from the origin
// or from a plugin: `status_code`, headers (add, then set, then remove; values are templates), and `body`
// (base64-decoded once, at build, with body_base64). With `vars`, only a response whose request (and
// `status`) satisfies every expression is changed. A replaced body is sent with Content-Length; the
// origin's Content-Encoding, ETag and Last-Modified, which described the old body, are dropped with it (as
// APISIX's clear_header_as_body_modified does). `filters` (body substitutions) are refused by the catalog.
#include <nlohmann/json.hpp>

#include "config/header_ops.h"
#include "config/validate.h"
#include "plugins/base64.h"
#include "plugins/factories.h"
#include "plugins/template.h"
#include "router/router.h"

namespace portico::plugins {

namespace {

struct HeaderRule {
  HeaderEdit::Op op;
  std::string name;
  Template value;
};

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
      std::vector<config::HeaderOp> ops;
      std::string field;
      const config::HeaderOpsSyntax syntax{
          .request_side = false, .add_as_lines = true, .values = config::TemplateSyntax::vars};
      std::string why = config::read_header_ops(*headers, syntax, ops, field);
      if (!why.empty()) throw std::invalid_argument("headers." + field + ": " + why);
      for (config::HeaderOp& op : ops) {
        HeaderEdit::Op kind = op.kind == config::HeaderOp::Kind::add   ? HeaderEdit::Op::add
                              : op.kind == config::HeaderOp::Kind::set ? HeaderEdit::Op::set
                                                                       : HeaderEdit::Op::remove;
        headers_.push_back({kind, std::move(op.name), Template(std::move(op.pieces))});
      }
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
    for (const HeaderRule& h : headers_) {
      thread_local std::string value;
      value.clear();
      if (h.op != HeaderEdit::Op::remove) {
        Expansion out(value, Escape::header);
        h.value.expand(ctx, nullptr, out);
      }
      ctx.response.headers.push(h.op, h.name, value);
    }
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

namespace detail {

std::shared_ptr<const Plugin> make_response_rewrite(const nlohmann::json& conf, int priority, const BuildEnv&,
                                                    std::string*) {
  return std::make_shared<ResponseRewrite>(conf, priority);
}

}  // namespace detail

}  // namespace portico::plugins
