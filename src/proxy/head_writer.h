// Serialises the heads Portico sends: the request head to the upstream and the response head to the client,
// both rewritten per RFC 9110 7.6.1 (hop-by-hop fields and fields named in Connection are dropped; framing is
// re-stated by Portico itself), plus Portico's own error responses. Pure functions over caller-owned buffers.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "http/message.h"
#include "http2/field.h"
#include "plugins/context.h"

namespace portico::proxy {

// How the body Portico sends is framed.
enum class OutFraming { none, content_length, chunked, until_close };

struct UpstreamRequestParams {
  std::string_view target;     // origin-form target to send (normalized path + query)
  std::string_view host;       // Host header value to send
  std::string_view client_ip;  // appended to X-Forwarded-For; X-Real-IP
  OutFraming body = OutFraming::none;
  bool close = false;        // Connection: close (no keep-alive to this node)
  bool tls = false;          // the client connection is TLS: X-Forwarded-Proto https
  std::string_view upgrade;  // non-empty: ask the node to switch to this protocol (WebSocket)
  // Plugins' changes (headers, method); null when none. The target and host above already include theirs.
  const plugins::UpstreamEdits* edits = nullptr;
};

void write_upstream_request_head(std::string& out, const http::RequestHead& request,
                                 const UpstreamRequestParams& params);

struct ClientResponseParams {
  OutFraming body = OutFraming::none;
  bool close = false;    // Portico will close the client connection after this response
  bool http10 = false;   // client spoke HTTP/1.0
  bool upgrade = false;  // a 101 to a WebSocket upgrade: Upgrade and Connection: upgrade are kept
  // Plugins' changes (status, headers); null when none. A replaced body (edits->has_body) is framed by
  // Content-Length here: `body` must then be OutFraming::content_length and the upstream's framing fields
  // are dropped.
  const plugins::ResponseEdits* edits = nullptr;
};

void write_client_response_head(std::string& out, const http::ResponseHead& response,
                                const ClientResponseParams& params);

// The HTTP/2 serialisation of a response head Portico wrote for HTTP/1.1 (write_client_response_head,
// write_plugin_reply, write_error_response, parsed back by the stream seam): the same filter (hop-by-hop
// fields and fields named in Connection dropped, Content-Length kept), names in lower case, no framing
// fields (Transfer-Encoding, Connection). Appends (name, value) pairs to `out`.
void write_h2_response_fields(std::vector<std::pair<std::string, std::string>>& out,
                              const http::ResponseHead& response);

// A response head for an HTTP/2 stream, built in place: the status, and fields by reference (values in the
// response and the plugins' edits, names in `names` in lower case). Reused from stream to stream (its
// capacity kept), so a head costs no allocation once warm.
struct H2ResponseHead {
  int status = 0;
  std::vector<http2::FieldView> fields;  // valid once finish() ran, until the next clear()
  // The content length a replaced body is framed by (edits->has_body), else the response's own.
  uint64_t content_length = 0;
  bool has_content_length = false;

  void clear() {
    status = 0;
    fields.clear();
    names_.clear();
    refs_.clear();
    content_length = 0;
    has_content_length = false;
  }
  void add(std::string_view name, std::string_view value);  // `name` in any case
  void finish();                                            // sets `fields`
  // The field bytes as HTTP/2 states them (":status" and each name and value, before HPACK).
  size_t size() const;

 private:
  struct Ref {
    size_t name_at;
    size_t name_len;
    std::string_view value;
  };
  std::string names_;
  std::vector<Ref> refs_;

 public:
  char content_length_text[24] = {0};  // a re-stated content-length's value (fields refers to it)
};

// The HTTP/2 form of write_client_response_head, without HTTP/1.1 text in between: the same fields under the
// same filter (hop-by-hop fields and fields named in Connection dropped, the plugins' edits, Content-Length
// kept or re-stated for a replaced body), names in lower case, no framing fields (Transfer-Encoding,
// Connection, Upgrade), as write_h2_response_fields gives for that head's text. `out` is cleared first.
void write_h2_client_response_head(H2ResponseHead& out, const http::ResponseHead& response,
                                   const ClientResponseParams& params);

// A complete response made by a plugin (RequestContext::respond), with the response phase's edits applied.
void write_plugin_reply(std::string& out, const plugins::Reply& reply, const plugins::ResponseEdits* edits,
                        bool close, bool head_only);

// Statuses whose responses never have a body (RFC 9110 6.4.1): 1xx, 204, 304.
constexpr bool is_bodiless_status(int status) {
  return status < 200 || status == 204 || status == 304;
}

// True for fields a plugin may not set or remove: the framing and connection management Portico owns
// (hop-by-hop fields, Content-Length, Host). The config validator refuses them; the writers skip them too.
bool is_reserved_field(std::string_view name);

// A complete response generated by Portico: `{"error_msg":"<message>"}` with the status's reason phrase.
void write_error_response(std::string& out, int status, std::string_view message, bool close, bool head_only);

// Removes from a parsed request the end-to-end fields its Connection header names (RFC 9110 7.6.1), before
// routing: those fields never reach the origin, so route conditions (vars, hash keys) must not see them
// either. Hop-by-hop fields stay in the head (Portico reads Upgrade from it); the writers drop them.
void remove_connection_options(http::RequestHead& head);

// True for fields that never cross a proxy (RFC 9110 7.6.1) or that Portico re-states itself.
bool is_hop_by_hop(std::string_view name);

bool iequals(std::string_view a, std::string_view b);

}  // namespace portico::proxy
