// fault-injection (APISIX 3.x, rewrite phase, priority 11000): delays a request and/or aborts it with a given
// status, body and headers, each for a `percentage` of requests (all when absent) and only when one of its
// `vars` alternatives holds (each alternative a list of expressions that must all hold, as a route's vars).
//
// The delay does not block the worker: the plugin asks for it (RequestContext::delay) and the session waits
// on a timer before it forwards the request or sends the abort reply. As in APISIX, the delay comes first,
// then the abort; the plugins after this one run before the wait rather than after it, which changes nothing
// they can observe but the clock.
#include <nlohmann/json.hpp>

#include "base/ascii.h"
#include "config/validate.h"
#include "plugins/factories.h"
#include "plugins/request_ids.h"
#include "plugins/template.h"
#include "router/router.h"

namespace portico::plugins {

namespace {

// What the two actions share: the share of requests and the conditions.
struct Trigger {
  int percentage = -1;  // -1: every request
  std::vector<std::unique_ptr<router::VarsCondition>> alternatives;

  bool compile(const nlohmann::json& action, std::string* error) {
    if (auto p = action.find("percentage"); p != action.end()) percentage = p->get<int>();
    auto vars = action.find("vars");
    if (vars == action.end()) return true;
    for (const nlohmann::json& alternative : *vars) {
      config::Errors errors;
      std::optional<std::vector<config::VarExpr>> exprs = config::validate_vars(alternative, "vars", errors);
      if (!exprs) {
        if (error != nullptr) *error = errors.list().front().path + ": " + errors.list().front().reason;
        return false;
      }
      alternatives.push_back(router::VarsCondition::compile(*exprs, error));
      if (!alternatives.back()) return false;
    }
    return true;
  }

  // APISIX evaluates the vars first, then draws the percentage.
  bool fires(const RequestContext& ctx) const {
    if (!alternatives.empty()) {
      bool any = false;
      for (const auto& c : alternatives) {
        if ((any = ctx.match != nullptr && c->matches(*ctx.match))) break;
      }
      if (!any) return false;
    }
    return percentage < 0 || static_cast<int>(ids::random64() % 100) + 1 <= percentage;
  }
};

class FaultInjection final : public Plugin {
 public:
  explicit FaultInjection(int priority) : Plugin("fault-injection", priority, kRewrite) {}

  bool build(const nlohmann::json& conf, std::string* error) {
    if (auto delay = conf.find("delay"); delay != conf.end()) {
      has_delay_ = true;
      duration_ = delay->at("duration").get<double>();
      if (!delay_.compile(*delay, error)) return false;
    }
    auto abort = conf.find("abort");
    if (abort == conf.end()) return true;
    has_abort_ = true;
    status_ = abort->at("http_status").get<int>();
    if (!abort_.compile(*abort, error)) return false;
    // Templates as the catalog's check accepted them (Template::parse throws otherwise).
    if (auto body = abort->find("body"); body != abort->end()) {
      body_ = Template::parse(body->get<std::string>(), config::TemplateSyntax::vars);
    }
    if (auto headers = abort->find("headers"); headers != abort->end()) {
      for (auto it = headers->begin(); it != headers->end(); ++it) {
        Template value = Template::parse(it->is_string() ? it->get<std::string>() : it->dump(),
                                         config::TemplateSyntax::vars);
        if (base::iequals(it.key(),
                          "content-type")) {  // replaces the reply's own rather than adding a second
          content_type_ = std::move(value);
          has_content_type_ = true;
        } else {
          headers_.emplace_back(it.key(), std::move(value));
        }
      }
    }
    return true;
  }

  void rewrite(RequestContext& ctx) const override {
    // Both decisions are taken before either acts, as APISIX evaluates both vars up front.
    const bool delay = has_delay_ && delay_.fires(ctx);
    const bool abort = has_abort_ && abort_.fires(ctx);
    if (delay) ctx.delay(duration_);
    if (!abort) return;
    std::string body;
    Expansion body_out(body, Escape::body);
    body_.expand(ctx, nullptr, body_out);
    std::string content_type;
    if (has_content_type_) {
      Expansion out(content_type, Escape::header);
      content_type_.expand(ctx, nullptr, out);
    }
    ctx.respond(status_, std::move(body), std::move(content_type));
    for (const auto& [name, value] : headers_) {
      std::string text;
      Expansion out(text, Escape::header);
      value.expand(ctx, nullptr, out);
      ctx.reply.headers.emplace_back(name, std::move(text));
    }
  }

 private:
  bool has_delay_ = false;
  double duration_ = 0;
  Trigger delay_;
  bool has_abort_ = false;
  int status_ = 0;
  Trigger abort_;
  Template body_;
  bool has_content_type_ = false;
  Template content_type_;
  std::vector<std::pair<std::string, Template>> headers_;
};

std::shared_ptr<const Plugin> build(const nlohmann::json& conf, int priority, const BuildEnv&,
                                    std::string* error) {
  auto plugin = std::make_shared<FaultInjection>(priority);
  std::string why;
  if (!plugin->build(conf, &why)) return detail::refuse(error, "fault-injection: " + why);
  return plugin;
}

}  // namespace

constinit const detail::Factory detail::make_fault_injection = build;

}  // namespace portico::plugins
