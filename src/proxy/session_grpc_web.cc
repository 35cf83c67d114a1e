// gRPC-Web on a grpc / grpcs try (docs/grpc.md "gRPC-Web"): the translation a call accepted by the grpc-web
// plugin (plugins/grpc_web.cc) gets on its way to the node and back. The plugin decides (method, content
// type, path, CORS headers); the session translates, because only it streams the body and the response:
// - to the node: content-type application/grpc (h2_request_fields), the -text body decoded piece by piece
//   as the pump reads it (send_h2_body), so a large or streamed body never sits in memory;
// - to the client: the node's head with the plugins' edits (content-type mirrored, CORS), each DATA piece
//   as it comes (base64 per piece for -text, as APISIX and Envoy encode it), then the node's trailers as a
//   trailer frame in the body; a trailers-only answer stays one (status in the head, no body), unless it has
//   no status (relay_h2_response then sends APISIX's status 2 in a trailer frame);
// - Portico's own errors (no node, timeout) as a trailers-only gRPC-Web answer with the CORS headers.
// The pump decodes into grpc_web_.decoded, the relay encodes into grpc_web_.out and .frame: the two run at
// once and each may wait while holding a view of its own buffer.
#include <boost/asio/use_awaitable.hpp>

#include "http2/grpc.h"
#include "proxy/session.h"

namespace portico::proxy {

namespace asio = boost::asio;
using asio::awaitable;

bool Session::grpc_web_call() const {
  // The context is reset only when plugins run: without a pipeline it may hold an earlier request's state.
  return !pipeline_.empty() && plugin_ctx_ && plugin_ctx_->grpc_web != plugins::GrpcWeb::none;
}

bool Session::decode_grpc_web_piece(std::string_view& piece) {
  grpc_web_.decoded.clear();
  if (!grpc_web_.decoder.feed(piece, grpc_web_.decoded)) return false;
  piece = grpc_web_.decoded;
  return true;
}

awaitable<bool> Session::write_grpc_web_body(std::string_view data, bool chunked) {
  if (!grpc_web_text()) co_return co_await write_client_body(data, chunked);
  // In slices of a multiple of 3 bytes (no padding but at the end): the scratch buffer a session keeps stays
  // at 64 KiB, whatever the node's DATA (up to a stream window) and for every later request.
  constexpr size_t kSlice = 48 * 1024;
  while (!data.empty()) {
    const std::string_view slice = data.substr(0, kSlice);
    data.remove_prefix(slice.size());
    grpc_web_.out.clear();
    http2::grpc_web::append_base64(slice, grpc_web_.out);
    if (!co_await write_client_body(grpc_web_.out, chunked)) co_return false;
  }
  co_return true;
}

awaitable<bool> Session::end_grpc_web(const http2::Fields& trailers, bool chunked) {
  bool has_status = false;
  for (const http2::Field& f : trailers) has_status = has_status || f.name == "grpc-status";
  grpc_web_.frame.clear();
  if (has_status) {
    http2::grpc_web::append_trailer_frame(trailers, grpc_web_.frame);
  } else {
    // The node ended the response without a status: what APISIX's body_filter reports then.
    http2::grpc_web::append_trailer_frame(
        {{"grpc-status", "2"}, {"grpc-message", "upstream grpc status not received"}}, grpc_web_.frame);
  }
  if (!co_await write_grpc_web_body(grpc_web_.frame, chunked)) co_return false;
  if (!chunked) co_return true;
  chunk_line_ = "0\r\n\r\n";  // the body's end; no HTTP trailers (an HTTP/2 client gets END_STREAM on DATA)
  co_return co_await write_client(bufs(asio::buffer(chunk_line_)));
}

awaitable<bool> Session::send_grpc_web_error(int status, std::string_view message, bool close) {
  // The status as for gRPC (send_grpc_error), in a trailers-only answer: HTTP 200, grpc-status and
  // grpc-message in the head, no body. The plugins' response phase adds the CORS headers and mirrors the
  // content type, without which a browser could not read the status at all.
  const bool expired = status == 504 && Clock::now() >= grpc_deadline_;
  const int code = expired ? http2::grpc::kDeadlineExceeded : http2::grpc::status_for_http(status);
  plugins::RequestContext& ctx = plugin_context();
  ctx.reply.status = 200;
  ctx.reply.body.clear();
  ctx.reply.content_type.clear();
  ctx.reply.headers.clear();
  ctx.reply.headers.emplace_back("grpc-status", std::to_string(code));
  const std::string encoded = http2::grpc::percent_encode(message);
  if (!encoded.empty()) ctx.reply.headers.emplace_back("grpc-message", encoded);
  plugins::ResponseInfo info;
  info.status = 200;
  pipeline_.run_response(ctx, info);
  // Header edits apply (CORS, the mirrored content type); a status or body edit (response-rewrite) would
  // break the trailers-only shape the client reads the status from, as in relay_h2_response.
  ctx.response.status = 0;
  ctx.response.has_body = false;
  ctx.response.body.clear();
  write_plugin_reply(head_out_, ctx.reply, &ctx.response, close, false);
  const bool ok = co_await write_client(bufs(asio::buffer(head_out_)));
  co_return ok && !close;
}

}  // namespace portico::proxy
