// proxy-rewrite (APISIX 3.x): rewrites what goes upstream: the path (`uri`, a template, or the first
// `regex_uri` pair whose regex matches the routed path), the Host (`host`), the method (`method`) and
// headers (add, then set, then remove; values are templates that may name regex_uri's captures).
//
// The new path is escaped for an origin-form target (template.h), gets a leading '/' when a regex
// replacement left none, and is normalized like a received path (http/path.h: dot segments removed), so a
// value such as $arg_x = "../admin" cannot reach past the rewrite; a path that cannot be normalized (an
// encoded NUL) is answered 400. A '?' written by the template starts a query, to which the client's query
// (as earlier plugins left it) is appended after '&'; otherwise the client's query is kept. A HEAD request
// keeps its method: its response carries no body for the client whatever the origin sends.
#include <nlohmann/json.hpp>

#include "http/path.h"
#include "plugins/factories.h"
#include "plugins/template.h"

namespace portico::plugins {

namespace {

class ProxyRewrite final : public Plugin {
 public:
  ProxyRewrite(const nlohmann::json& conf, int priority) : Plugin("proxy-rewrite", priority, kRewrite) {
    if (auto uri = conf.find("uri"); uri != conf.end()) {
      uri_ = Template::parse(uri->get<std::string>(), config::TemplateSyntax::vars);
      has_uri_ = true;
    } else if (auto regex = conf.find("regex_uri"); regex != conf.end()) {
      for (size_t i = 0; i + 1 < regex->size(); i += 2) {
        regex_uri_.emplace_back((*regex)[i].get<std::string>(), (*regex)[i + 1].get<std::string>());
      }
    }
    host_ = conf.value("host", "");
    method_ = conf.value("method", "");
    if (auto headers = conf.find("headers"); headers != conf.end()) {
      headers_ = read_header_rules(
          *headers,
          {.request_side = true, .add_as_lines = false, .values = config::TemplateSyntax::vars_and_captures});
    }
  }

  void rewrite(RequestContext& ctx) const override {
    Captures captures;
    bool matched = false;
    if (has_uri_ || !regex_uri_.empty()) {
      thread_local std::string target;
      target.clear();
      Expansion out(target, Escape::uri);
      bool rewritten = false;
      if (has_uri_) {
        uri_.expand(ctx, nullptr, out);
        rewritten = true;
      } else {
        for (const RegexRewrite& r : regex_uri_) {
          if (r.apply(ctx.path, out, &captures)) {
            rewritten = matched = true;
            break;
          }
        }
      }
      // Header values read the request as it came in (less what earlier plugins hid, e.g. key-auth's
      // hidden key), not the target this plugin is about to set: expanded before it.
      apply_header_rules(headers_, ctx, matched ? &captures : nullptr, ctx.upstream.headers);
      if (rewritten && !set_target(ctx, target, out.query_at())) {
        ctx.respond_message(400, "invalid rewritten uri");
        return;
      }
    } else {
      apply_header_rules(headers_, ctx, nullptr, ctx.upstream.headers);
    }
    if (!host_.empty()) ctx.upstream.host = host_;
    if (!method_.empty() && ctx.request->method != http::Method::HEAD) ctx.upstream.method = method_;
  }

 private:
  // `target` as expanded (path, then the template's query after `query_at`) into the upstream edits.
  static bool set_target(RequestContext& ctx, std::string_view target, size_t query_at) {
    std::string_view path = target.substr(0, query_at);
    thread_local std::string rooted, normal;
    if (path.empty() || path.front() != '/') {
      rooted.assign(1, '/');
      rooted += path;
      path = rooted;
    }
    switch (http::normalize_path(path, normal)) {
      case http::PathStatus::unchanged:
        ctx.upstream.path.assign(path);
        break;
      case http::PathStatus::normalized:
        ctx.upstream.path.assign(normal);
        break;
      case http::PathStatus::invalid:
        return false;
    }
    if (query_at == std::string_view::npos) return true;
    thread_local std::string query;
    query.assign(target.substr(query_at + 1));
    const std::string_view client = ctx.upstream_query();
    if (!client.empty()) {
      query += '&';
      query += client;
    }
    ctx.upstream.query.assign(query);
    ctx.upstream.query_set = true;
    return true;
  }

  bool has_uri_ = false;
  Template uri_;
  std::vector<RegexRewrite> regex_uri_;
  std::string host_;
  std::string method_;
  std::vector<HeaderRule> headers_;
};

}  // namespace

constinit const detail::Factory detail::make_proxy_rewrite = detail::construct<ProxyRewrite>;

}  // namespace portico::plugins
