// limit-conn (APISIX 3.x): at most `conn` requests in flight per key, `burst` more delayed (by
// default_conn_delay per `conn` requests ahead, or the requests' measured duration), the rest answered
// `rejected_code`. An admitted request holds a lease on its key's count (context.h LeaseHolder), given back
// exactly once: after the log phase, or when the request ends without one (the client gone, the session
// destroyed). Policies: `local`; Redis ones later.
#include "plugins/factories.h"
#include "plugins/limit_plugin.h"

namespace portico::plugins {

namespace {

class LimitConn final : public Plugin {
 public:
  LimitConn(const nlohmann::json& conf, int priority, const BuildEnv& env)
      : Plugin("limit-conn", priority, kAccess), common_("limit-conn", conf, env, false) {
    if (conf.value("policy", std::string("local")) != "local") {
      throw std::invalid_argument("policy " + conf.at("policy").get<std::string>() + " is not supported");
    }
    backend_ = std::make_unique<LocalConn>(
        *common_.stores, common_.ns, conf.at("conn").get<int64_t>(), conf.at("burst").get<int64_t>(),
        conf.at("default_conn_delay").get<double>(), conf.at("only_use_default_delay").get<bool>());
  }

  void access(RequestContext& ctx) const override {
    ConnDecision d;
    if (!backend_->incoming(ctx, common_.table_key(ctx), d)) return;
    apply(ctx, d);
  }
  void resume(RequestContext& ctx) const override { apply(ctx, backend_->finish(ctx)); }

 private:
  void apply(RequestContext& ctx, const ConnDecision& d) const {
    switch (d.kind) {
      case ConnDecision::Kind::failed:
        if (!common_.allow_degradation) ctx.respond(500, {});
        return;
      case ConnDecision::Kind::rejected:
        common_.reject(ctx);
        return;
      case ConnDecision::Kind::allowed:
        if (d.delay >= 0.001) ctx.delay(d.delay);
        return;
    }
  }

  detail::LimitCommon common_;
  std::unique_ptr<ConnBackend> backend_;
};

std::shared_ptr<const Plugin> make(const nlohmann::json& conf, int priority, const BuildEnv& env,
                                   std::string*) {
  return std::make_shared<LimitConn>(conf, priority, env);
}

}  // namespace

constinit const detail::Factory detail::make_limit_conn = make;

}  // namespace portico::plugins
