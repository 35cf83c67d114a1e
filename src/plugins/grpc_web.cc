// grpc-web (APISIX 3.x): gRPC-Web calls from browsers to a gRPC upstream (docs/grpc.md "gRPC-Web").
//
// The plugin does what APISIX's access and header_filter phases do: it accepts POST with one of the four
// gRPC-Web content types (OPTIONS is answered 204 by the gateway, another method 405, another content type
// 400), sends the part of the path the route's trailing `*` matched (APISIX's `:ext`) as the upstream path,
// and adds the CORS headers a browser needs to every response of the route. The translation itself (the
// body de-base64'd for -text, content-type application/grpc to the node, the response re-framed with the
// trailer frame) is the session's (proxy/session_grpc_web.cc): it streams both ways with bounded memory,
// where APISIX reads the whole request body into memory. The plugin tells the session through the
// RequestContext (grpc_web, grpc_web_mime).
#include <nlohmann/json.hpp>

#include "base/ascii.h"
#include "http2/grpc_web.h"
#include "plugins/factories.h"
#include "router/router.h"

namespace portico::plugins {

namespace {

class GrpcWebPlugin final : public Plugin {
 public:
  GrpcWebPlugin(const nlohmann::json& conf, int priority)
      : Plugin("grpc-web", priority, kAccess | kResponse),
        allow_headers_(conf.at("cors_allow_headers").get<std::string>()) {}

  void access(RequestContext& ctx) const override {
    const http::Method method = ctx.request->method;
    if (method == http::Method::OPTIONS) {
      ctx.respond(204, {});  // the CORS preflight, answered by the gateway (headers in on_response)
      return;
    }
    if (method != http::Method::POST) {
      ctx.respond(405, {});
      return;
    }
    const std::string_view mime = ctx.header("content-type");
    const http2::grpc_web::Encoding encoding = http2::grpc_web::encoding_of(mime);
    if (encoding == http2::grpc_web::Encoding::none) {
      ctx.respond(400, {});
      return;
    }
    ctx.grpc_web = encoding == http2::grpc_web::Encoding::text ? GrpcWeb::text : GrpcWeb::binary;
    ctx.grpc_web_mime = mime;
    // APISIX's `:ext`: on a prefix route ("/grpc/web/*") the node gets the rest of the path, which names the
    // gRPC method ("/package.Service/Method"). An earlier plugin's path (proxy-rewrite's uri) wins, as its
    // upstream_uri does in APISIX.
    // The router finds where the `*` matched: a parameter segment before it captures any length.
    const size_t star = ctx.upstream.path.empty() ? router::star_match_offset(ctx.matched_uri, ctx.path)
                                                  : std::string_view::npos;
    if (star != std::string_view::npos) {
      const std::string_view ext = ctx.path.substr(star);
      if (!ext.empty()) {
        if (ext.front() != '/') ctx.upstream.path.push_back('/');
        ctx.upstream.path.append(ext);
      }
    }
  }

  void on_response(RequestContext& ctx, const ResponseInfo&) const override {
    if (ctx.request->method == http::Method::OPTIONS) {
      set(ctx, "Access-Control-Allow-Methods", allow_methods_);
      set(ctx, "Access-Control-Allow-Headers", allow_headers_);
    }
    // The cors plugin (higher priority: its response phase ran first) decides the origin when it allowed
    // one, as APISIX's ctx.cors_allow_origins does.
    bool origin_set = false;
    for (const HeaderEdit& e : ctx.response.headers) {
      if (e.op != HeaderEdit::Op::remove && base::iequals(e.name, "Access-Control-Allow-Origin"))
        origin_set = true;
    }
    if (!origin_set) set(ctx, "Access-Control-Allow-Origin", any_origin_);
    set(ctx, "Access-Control-Expose-Headers", expose_headers_);
    if (ctx.grpc_web != GrpcWeb::none) set(ctx, "Content-Type", ctx.grpc_web_mime);
  }

 private:
  static void set(RequestContext& ctx, std::string_view name, std::string_view value) {
    ctx.response.headers.push(HeaderEdit::Op::set, name, value);
  }

  std::string allow_headers_;
  // Constants as members: GCC 12 warns (-Wrestrict, a false positive) on short literals inlined into push.
  std::string allow_methods_ = "POST";
  std::string any_origin_ = "*";
  std::string expose_headers_ = "grpc-message,grpc-status";
};

}  // namespace

constinit const detail::Factory detail::make_grpc_web = detail::construct<GrpcWebPlugin>;

}  // namespace portico::plugins
