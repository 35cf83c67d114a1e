// limit-req (APISIX 3.x): a leaky bucket per key (limits.h LocalReq): `rate` requests per second, up to
// `burst` more delayed until the bucket drains to them (no delay with `nodelay`), the rest answered
// `rejected_code`. The delay is RequestContext::delay: the session waits on a timer, the worker serving
// others meanwhile (APISIX sleeps in the access phase). Policies: `local`, `redis`, `redis-cluster`
// (limits_redis.h).
#include "plugins/factories.h"
#include "plugins/limit_plugin.h"
#include "plugins/limits_redis.h"

namespace portico::plugins {

namespace {

class LimitReq final : public Plugin {
 public:
  LimitReq(const nlohmann::json& conf, int priority, const BuildEnv& env)
      : Plugin("limit-req", priority, kAccess),
        common_("limit-req", conf, env, false),
        nodelay_(conf.at("nodelay").get<bool>()) {
    if (conf.value("policy", std::string("local")) != "local") {
      backend_ = make_redis_req(conf, env, common_.ns);
      return;
    }
    backend_ = std::make_unique<LocalReq>(*common_.stores, common_.ns, conf.at("rate").get<double>(),
                                          conf.at("burst").get<double>());
  }

  void access(RequestContext& ctx) const override {
    ReqDecision d;
    if (!backend_->incoming(ctx, common_.table_key(ctx), d)) return;
    apply(ctx, d);
  }
  void resume(RequestContext& ctx) const override { apply(ctx, backend_->finish(ctx)); }

 private:
  void apply(RequestContext& ctx, const ReqDecision& d) const {
    switch (d.kind) {
      case ReqDecision::Kind::failed:
        if (!common_.allow_degradation) ctx.respond(500, {});
        return;
      case ReqDecision::Kind::rejected:
        common_.reject(ctx);
        return;
      case ReqDecision::Kind::allowed:
        if (d.delay >= 0.001 && !nodelay_) ctx.delay(d.delay);
        return;
    }
  }

  detail::LimitCommon common_;
  bool nodelay_;
  std::unique_ptr<ReqBackend> backend_;
};

std::shared_ptr<const Plugin> make(const nlohmann::json& conf, int priority, const BuildEnv& env,
                                   std::string*) {
  return std::make_shared<LimitReq>(conf, priority, env);
}

}  // namespace

constinit const detail::Factory detail::make_limit_req = make;

}  // namespace portico::plugins
