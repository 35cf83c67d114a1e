// limit-count (APISIX 3.x): at most `count` requests per `time_window` seconds per key; a fixed window (as
// APISIX) or, with Portico's `window_type: "sliding"`, a sliding one (limits.h LocalCount). The quota
// headers go on every answer, the rejection included (Remaining 0). Policies: `local` (process-wide, shared
// by the workers); the Redis ones come later (the catalog refuses them in this version).
#include "plugins/factories.h"
#include "plugins/limit_plugin.h"

namespace portico::plugins {

namespace {

class LimitCount final : public Plugin {
 public:
  LimitCount(const nlohmann::json& conf, int priority, const BuildEnv& env)
      : Plugin("limit-count", priority, kAccess),
        common_("limit-count", conf, env, true),
        show_headers_(conf.at("show_limit_quota_header").get<bool>()) {
    if (conf.value("policy", std::string("local")) != "local") {
      throw std::invalid_argument("policy " + conf.at("policy").get<std::string>() + " is not supported");
    }
    backend_ = std::make_unique<LocalCount>(*common_.stores, common_.ns, conf.at("count").get<int64_t>(),
                                            conf.at("time_window").get<int64_t>(),
                                            conf.value("window_type", std::string("fixed")) == "sliding");
  }

  void access(RequestContext& ctx) const override {
    CountDecision d;
    if (!backend_->incoming(ctx, common_.table_key(ctx), d)) return;  // suspended: resume() goes on
    apply(ctx, d);
  }
  void resume(RequestContext& ctx) const override { apply(ctx, backend_->finish(ctx)); }

 private:
  void apply(RequestContext& ctx, const CountDecision& d) const {
    if (d.kind == CountDecision::Kind::failed) {
      if (!common_.allow_degradation)
        ctx.respond(500, "{\"error_msg\":\"failed to limit count\"}\n", "application/json");
      return;
    }
    if (show_headers_) {
      char buf[24];
      ctx.response.headers.push(HeaderEdit::Op::set, "X-RateLimit-Limit", format_int(d.limit, buf));
      ctx.response.headers.push(HeaderEdit::Op::set, "X-RateLimit-Remaining",
                                format_int(d.kind == CountDecision::Kind::rejected ? 0 : d.remaining, buf));
      ctx.response.headers.push(HeaderEdit::Op::set, "X-RateLimit-Reset", format_int(d.reset, buf));
    }
    if (d.kind == CountDecision::Kind::rejected) common_.reject(ctx);
  }

  detail::LimitCommon common_;
  bool show_headers_;
  std::unique_ptr<CountBackend> backend_;
};

std::shared_ptr<const Plugin> make(const nlohmann::json& conf, int priority, const BuildEnv& env,
                                   std::string*) {
  return std::make_shared<LimitCount>(conf, priority, env);
}

}  // namespace

constinit const detail::Factory detail::make_limit_count = make;

}  // namespace portico::plugins
