// cors (APISIX 3.x): a preflight request (OPTIONS with Origin and Access-Control-Request-Method) is answered
// 200 by the gateway in the rewrite phase, before authentication and without reaching the origin; the CORS
// response headers are added in the response phase to every response of the route (the origin's, a
// plugin's own such as a 401 or that preflight answer).
//
// Which origin is allowed, for Access-Control-Allow-Origin (and likewise Timing-Allow-Origin from
// timing_allow_origins / timing_allow_origins_by_regex):
//   - allow_origins_by_regex set: the request's Origin when one of the regexes matches it (allow_origins is
//     then ignored, as in APISIX 3.x);
//   - else allow_origins: "*" allows every request ("*" is sent); "**" echoes the request's Origin (or "*"
//     without one); a comma-separated list echoes the Origin when it is listed; one origin is sent when the
//     request's Origin equals it.
// Nothing matches: no CORS header at all. An echoed origin also adds "Vary: Origin".
#include <algorithm>
#include <nlohmann/json.hpp>

#include "plugins/factories.h"
#include "plugins/regex.h"

namespace portico::plugins {

namespace {

constexpr std::string_view kAllMethods = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE";

// One origin rule (allow_origins or timing_allow_origins) compiled.
class OriginRule {
 public:
  OriginRule() = default;
  OriginRule(const nlohmann::json& conf, const char* list_key, const char* regex_key, std::string* error) {
    if (auto re = conf.find(regex_key); re != conf.end()) {
      configured_ = true;
      for (const nlohmann::json& pattern : *re) {
        Regex& r = regexes_.emplace_back();
        if (!r.compile(pattern.get<std::string>(), false, error)) return;
      }
      return;
    }
    auto list = conf.find(list_key);
    if (list == conf.end()) return;
    configured_ = true;
    text_ = list->get<std::string>();
    if (text_ == "**") {
      echo_any_ = true;
    } else if (text_.find(',') != std::string::npos) {
      std::string_view rest = text_;
      while (!rest.empty()) {
        const size_t comma = rest.find(',');
        std::string_view item = rest.substr(0, comma);
        if (!item.empty()) set_.emplace_back(item);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
      }
      std::sort(set_.begin(), set_.end());
      is_set_ = true;
    }
  }

  bool configured() const { return configured_; }

  // The value to send for a request whose Origin is `origin` (`has_origin` false: no Origin header), or
  // false when this rule does not allow it.
  bool allow(std::string_view origin, bool has_origin, std::string_view& out) const {
    if (!regexes_.empty()) {
      if (!has_origin) return false;
      for (const Regex& r : regexes_) {
        if (r.search(origin)) {
          out = origin;
          return true;
        }
      }
      return false;
    }
    if (echo_any_) {
      out = has_origin ? origin : std::string_view("*");
      return true;
    }
    if (is_set_) {
      if (!has_origin || !std::binary_search(set_.begin(), set_.end(), origin)) return false;
      out = origin;
      return true;
    }
    if (text_ == "*" || (has_origin && origin == text_)) {
      out = text_;
      return true;
    }
    return false;
  }

 private:
  bool configured_ = false;
  std::string text_;
  bool echo_any_ = false;
  bool is_set_ = false;
  std::vector<std::string> set_;  // sorted
  std::vector<Regex> regexes_;
};

class Cors final : public Plugin {
 public:
  Cors(const nlohmann::json& conf, int priority, std::string* error)
      : Plugin("cors", priority, kRewrite | kResponse),
        origins_(conf, "allow_origins", "allow_origins_by_regex", error),
        timing_(conf, "timing_allow_origins", "timing_allow_origins_by_regex", error),
        allow_methods_(conf.at("allow_methods").get<std::string>()),
        allow_headers_(conf.at("allow_headers").get<std::string>()),
        max_age_(std::to_string(conf.at("max_age").get<int64_t>())),
        allow_credential_(conf.at("allow_credential").get<bool>()) {
    if (allow_methods_ == "**") allow_methods_ = kAllMethods;
    echo_request_headers_ = allow_headers_ == "**";
    if (auto it = conf.find("expose_headers"); it != conf.end()) expose_headers_ = it->get<std::string>();
  }

  void rewrite(RequestContext& ctx) const override {
    if (ctx.request->method != http::Method::OPTIONS) return;
    bool has_origin = false, has_method = false;
    ctx.header("origin", &has_origin);
    ctx.header("access-control-request-method", &has_method);
    if (has_origin && has_method) ctx.respond(200, {});
  }

  void on_response(RequestContext& ctx, const ResponseInfo&) const override {
    bool has_origin = false;
    const std::string_view origin = ctx.header("origin", &has_origin);
    std::string_view allowed;
    if (origins_.allow(origin, has_origin, allowed)) add_cors_headers(ctx, allowed);
    std::string_view timing;
    if (timing_.configured() && timing_.allow(origin, has_origin, timing)) {
      set(ctx, "Timing-Allow-Origin", timing);
    }
  }

 private:
  static void set(RequestContext& ctx, std::string_view name, std::string_view value) {
    ctx.response.headers.push(HeaderEdit::Op::set, name, value);
  }

  void add_cors_headers(RequestContext& ctx, std::string_view allowed) const {
    set(ctx, "Access-Control-Allow-Origin", allowed);
    if (allowed != "*") ctx.response.headers.push(HeaderEdit::Op::add, "Vary", "Origin");
    set(ctx, "Access-Control-Allow-Methods", allow_methods_);
    set(ctx, "Access-Control-Max-Age", max_age_);
    if (!expose_headers_.empty()) set(ctx, "Access-Control-Expose-Headers", expose_headers_);
    if (echo_request_headers_) {
      bool found = false;
      std::string_view requested = ctx.header("access-control-request-headers", &found);
      if (found) set(ctx, "Access-Control-Allow-Headers", requested);
    } else {
      set(ctx, "Access-Control-Allow-Headers", allow_headers_);
    }
    if (allow_credential_) set(ctx, "Access-Control-Allow-Credentials", "true");
  }

  OriginRule origins_;
  OriginRule timing_;
  std::string allow_methods_;
  std::string allow_headers_;
  bool echo_request_headers_ = false;
  std::string expose_headers_;  // empty: Access-Control-Expose-Headers is left alone
  std::string max_age_;
  bool allow_credential_;
};

std::shared_ptr<const Plugin> build(const nlohmann::json& conf, int priority, const BuildEnv&,
                                    std::string* error) {
  std::string why;
  auto plugin = std::make_shared<Cors>(conf, priority, &why);
  if (!why.empty()) return detail::refuse(error, "cors: a regex does not compile: " + why);
  return plugin;
}

}  // namespace

constinit const detail::Factory detail::make_cors = build;

}  // namespace portico::plugins
