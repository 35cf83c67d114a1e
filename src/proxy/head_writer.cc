#include "proxy/head_writer.h"

#include <array>
#include <charconv>

#include "http/parser.h"

namespace portico::proxy {
namespace {

inline char lower_char(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

void append_uint(std::string& out, uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  (void)ec;
  out.append(buf, end);
}

void append_header(std::string& out, std::string_view name, std::string_view value) {
  out += name;
  out += ": ";
  out += value;
  out += "\r\n";
}

// `name` equals `lower` (lower case, '-' separated) ignoring case, with '_' standing for '-': CGI-style
// origins (WSGI, PHP, nginx with underscores_in_headers) map both spellings to one variable.
bool same_identity_field(std::string_view name, std::string_view lower) {
  if (name.size() != lower.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = name[i] == '_' ? '-' : lower_char(name[i]);
    if (c != lower[i]) return false;
  }
  return true;
}

// Fields Portico re-states on the request it sends upstream. The client's copies of the identity fields are
// dropped in their underscore spellings too (`X_Forwarded_For`), so that an origin folding '_' into '-'
// cannot read a client-supplied value in place of Portico's.
bool is_rewritten_request_field(std::string_view name) {
  switch (name.size()) {
    case 4:
      return iequals(name, "host");
    case 6:
      return iequals(name, "expect");  // 100-continue is answered by Portico itself
    case 9:
      return same_identity_field(name, "x-real-ip");
    case 15:
      return same_identity_field(name, "x-forwarded-for");
    case 16:
      return same_identity_field(name, "x-forwarded-host");
    case 17:
      return same_identity_field(name, "x-forwarded-proto");
    default:
      return false;
  }
}

// Hop-by-hop fields and the fields a Connection header names (RFC 9110 7.6.1) are not forwarded, with one
// exception: Content-Length stays whatever Connection says. Portico sends the body framed by it, and
// dropping it would let the next hop read that body as the next message. The parser already rejects a
// request naming it; a response naming it keeps its framing. Fields Portico sets itself (Host,
// X-Forwarded-*, X-Real-IP, Transfer-Encoding, Upgrade, Connection) are written after this filter, so no
// Connection list can remove them.
bool dropped(const http::MessageHead& head, std::string_view name) {
  if (is_hop_by_hop(name)) return true;
  if ((head.connection & http::kConnOther) == 0 || iequals(name, "content-length")) return false;
  return head.connection_lists(name);
}

// Whether header edits replace or remove the received field `name` (a `set` or `remove` of that name). Names
// compare as CGI-style origins read them, case-insensitively and with '_' standing for '-': a client's
// `X_Consumer_Username` must not survive Portico's own `X-Consumer-Username` (an origin folding '_' into '-'
// would otherwise read the client's value).
bool edited_away(const plugins::HeaderEdits* edits, std::string_view name) {
  if (edits == nullptr) return false;
  for (const plugins::HeaderEdit& e : *edits) {
    if (e.op == plugins::HeaderEdit::Op::add || e.name.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < name.size() && same; ++i) {
      const char a = e.name[i] == '_' ? '-' : lower_char(e.name[i]);
      const char b = name[i] == '_' ? '-' : lower_char(name[i]);
      same = a == b;
    }
    if (same) return true;
  }
  return false;
}

// The fields the edits add, in order: a `set` or `add` stands unless a later `set` or `remove` of the same
// name replaces it.
// On a request, `request_side`: the fields Portico re-states itself (X-Forwarded-*, X-Real-IP) are not
// taken from the edits either.
void append_edited(std::string& out, const plugins::HeaderEdits* edits, bool request_side = false) {
  if (edits == nullptr) return;
  for (size_t i = 0; i < edits->size(); ++i) {
    const plugins::HeaderEdit& e = (*edits)[i];
    if (e.op == plugins::HeaderEdit::Op::remove || is_reserved_field(e.name)) continue;
    if (request_side && is_rewritten_request_field(e.name)) continue;
    bool replaced = false;
    for (size_t j = i + 1; j < edits->size() && !replaced; ++j) {
      const plugins::HeaderEdit& later = (*edits)[j];
      replaced = later.op != plugins::HeaderEdit::Op::add && iequals(later.name, e.name);
    }
    if (!replaced) append_header(out, e.name, e.value);
  }
}

}  // namespace

bool is_reserved_field(std::string_view name) {
  return is_hop_by_hop(name) || iequals(name, "content-length") || iequals(name, "host");
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (lower_char(a[i]) != lower_char(b[i])) return false;
  }
  return true;
}

bool is_hop_by_hop(std::string_view name) {
  switch (name.size()) {
    case 2:
      return iequals(name, "te");
    case 7:
      return iequals(name, "trailer") || iequals(name, "upgrade");
    case 10:
      return iequals(name, "connection") || iequals(name, "keep-alive");
    case 16:
      return iequals(name, "proxy-connection");
    case 17:
      return iequals(name, "transfer-encoding");
    default:
      return false;
  }
}

void remove_connection_options(http::RequestHead& head) {
  if ((head.connection & http::kConnOther) == 0) return;
  // Decide first, then compact: the Connection fields must stay in place while they are consulted.
  std::array<bool, http::kMaxHeaders> drop{};
  for (uint16_t i = 0; i < head.header_count; ++i) {
    const std::string_view name = head.headers[i].name;
    drop[i] = !is_hop_by_hop(name) && dropped(head, name);
  }
  uint16_t kept = 0;
  for (uint16_t i = 0; i < head.header_count; ++i) {
    if (!drop[i]) head.headers[kept++] = head.headers[i];
  }
  head.header_count = kept;
}

void write_upstream_request_head(std::string& out, const http::RequestHead& req,
                                 const UpstreamRequestParams& p) {
  out.clear();
  const plugins::HeaderEdits* edits =
      p.edits != nullptr && !p.edits->headers.empty() ? &p.edits->headers : nullptr;
  out += p.edits != nullptr && !p.edits->method.empty() ? std::string_view(p.edits->method) : req.method_text;
  out += ' ';
  out += p.target;
  out += " HTTP/1.1\r\n";
  append_header(out, "Host", p.host);
  std::string_view forwarded_for;
  bool have_forwarded_for = false;
  for (uint16_t i = 0; i < req.header_count; ++i) {
    const http::Header& h = req.headers[i];
    if (dropped(req, h.name)) continue;
    if (edits != nullptr && !is_reserved_field(h.name) && edited_away(edits, h.name)) continue;
    if (is_rewritten_request_field(h.name)) {
      if (!have_forwarded_for && iequals(h.name, "x-forwarded-for")) {
        forwarded_for = h.value;
        have_forwarded_for = true;
      }
      continue;
    }
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  append_edited(out, edits, true);
  out += "X-Forwarded-For: ";
  if (have_forwarded_for && !forwarded_for.empty()) {
    out += forwarded_for;
    out += ", ";
  }
  out += p.client_ip;
  out += "\r\n";
  append_header(out, "X-Real-IP", p.client_ip);
  out += p.tls ? "X-Forwarded-Proto: https\r\n" : "X-Forwarded-Proto: http\r\n";
  append_header(out, "X-Forwarded-Host", req.host_header);
  // Content-Length (validated, single) was copied above; a chunked body is re-chunked by Portico.
  if (p.body == OutFraming::chunked) out += "Transfer-Encoding: chunked\r\n";
  if (!p.upgrade.empty()) {
    append_header(out, "Upgrade", p.upgrade);
    out += "Connection: upgrade\r\n";
  } else if (p.close) {
    out += "Connection: close\r\n";
  }
  out += "\r\n";
}

void write_client_response_head(std::string& out, const http::ResponseHead& resp,
                                const ClientResponseParams& p) {
  out.clear();
  const plugins::HeaderEdits* edits =
      p.edits != nullptr && !p.edits->headers.empty() ? &p.edits->headers : nullptr;
  const bool new_status = p.edits != nullptr && p.edits->status != 0;
  const bool new_body = p.edits != nullptr && p.edits->has_body;
  out += p.http10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  append_uint(out, new_status ? static_cast<uint64_t>(p.edits->status) : resp.status);
  out += ' ';
  out += new_status || resp.reason.empty() ? http::reason_phrase(new_status ? p.edits->status : resp.status)
                                           : resp.reason;
  out += "\r\n";
  for (uint16_t i = 0; i < resp.header_count; ++i) {
    const http::Header& h = resp.headers[i];
    if (dropped(resp, h.name)) continue;
    if (new_body && iequals(h.name, "content-length")) continue;
    if (edits != nullptr && !is_reserved_field(h.name) && edited_away(edits, h.name)) continue;
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  append_edited(out, edits);
  // A replaced body is framed by its length; a status that has no body (1xx, 204, 304) gets no framing
  // field at all when its body was replaced (RFC 9110 8.6: no Content-Length in a 204), and the session
  // sends no body bytes after it.
  if (new_body && !is_bodiless_status(new_status ? p.edits->status : resp.status)) {
    out += "Content-Length: ";
    append_uint(out, p.edits->body.size());
    out += "\r\n";
  }
  // Otherwise Content-Length (validated, single) was copied above, which also keeps it on HEAD and 304s.
  if (p.body == OutFraming::chunked) out += "Transfer-Encoding: chunked\r\n";
  if (p.upgrade) {
    append_header(out, "Upgrade", resp.find("upgrade"));
    out += "Connection: upgrade\r\n";
  } else if (p.close) {
    out += "Connection: close\r\n";
  } else if (p.http10) {
    out += "Connection: keep-alive\r\n";
  }
  out += "\r\n";
}

void write_h2_response_fields(std::vector<std::pair<std::string, std::string>>& out,
                              const http::ResponseHead& resp) {
  for (uint16_t i = 0; i < resp.header_count; ++i) {
    const http::Header& h = resp.headers[i];
    if (dropped(resp, h.name)) continue;
    std::string name(h.name);
    for (char& c : name) c = lower_char(c);
    out.emplace_back(std::move(name), std::string(h.value));
  }
}

void H2ResponseHead::add(std::string_view name, std::string_view value) {
  const size_t at = names_.size();
  names_.append(name);
  for (char *c = names_.data() + at, *end = c + name.size(); c != end; ++c) *c = lower_char(*c);
  refs_.push_back(Ref{at, name.size(), value});
}

void H2ResponseHead::finish() {
  // Views into names_ only now: it does not grow any more.
  fields.clear();
  for (const Ref& r : refs_) {
    fields.push_back(http2::FieldView{std::string_view(names_.data() + r.name_at, r.name_len), r.value});
  }
}

size_t H2ResponseHead::size() const {
  size_t n = sizeof ":status" - 1 + 3;
  for (const Ref& r : refs_) n += r.name_len + r.value.size();
  return n;
}

void write_h2_client_response_head(H2ResponseHead& out, const http::ResponseHead& resp,
                                   const ClientResponseParams& p) {
  out.clear();
  const plugins::HeaderEdits* edits =
      p.edits != nullptr && !p.edits->headers.empty() ? &p.edits->headers : nullptr;
  const bool new_status = p.edits != nullptr && p.edits->status != 0;
  const bool new_body = p.edits != nullptr && p.edits->has_body;
  out.status = new_status ? p.edits->status : resp.status;
  for (uint16_t i = 0; i < resp.header_count; ++i) {
    const http::Header& h = resp.headers[i];
    if (dropped(resp, h.name)) continue;
    if (new_body && iequals(h.name, "content-length")) continue;
    if (edits != nullptr && !is_reserved_field(h.name) && edited_away(edits, h.name)) continue;
    out.add(h.name, h.value);
  }
  if (edits != nullptr) {
    // As append_edited; a hop-by-hop name never reaches an HTTP/2 client (the text path's re-parse drops it).
    for (size_t i = 0; i < edits->size(); ++i) {
      const plugins::HeaderEdit& e = (*edits)[i];
      if (e.op == plugins::HeaderEdit::Op::remove || is_reserved_field(e.name) || is_hop_by_hop(e.name)) {
        continue;
      }
      bool replaced = false;
      for (size_t j = i + 1; j < edits->size() && !replaced; ++j) {
        const plugins::HeaderEdit& later = (*edits)[j];
        replaced = later.op != plugins::HeaderEdit::Op::add && iequals(later.name, e.name);
      }
      if (!replaced) out.add(e.name, e.value);
    }
  }
  if (new_body) {
    out.has_content_length = true;
    out.content_length = p.edits->body.size();
    if (!is_bodiless_status(out.status)) {
      char* digits = out.content_length_text;
      auto [end, ec] = std::to_chars(digits, digits + sizeof out.content_length_text, out.content_length);
      (void)ec;
      out.add("content-length", std::string_view(digits, static_cast<size_t>(end - digits)));
    }
  } else if (resp.framing == http::BodyFraming::content_length) {
    out.has_content_length = true;
    out.content_length = resp.content_length;
  }
  out.finish();
}

void write_plugin_reply(std::string& out, const plugins::Reply& reply, const plugins::ResponseEdits* edits,
                        bool close, bool head_only) {
  out.clear();
  const int status = edits != nullptr && edits->status != 0 ? edits->status : reply.status;
  const bool new_body = edits != nullptr && edits->has_body;
  // A status without a body (1xx, 204, 304) is sent without one, and without Content-Type/Content-Length.
  const bool bodiless = is_bodiless_status(status);
  static const std::string kNone;
  const std::string& body = bodiless ? kNone : new_body ? edits->body : reply.body;
  out += "HTTP/1.1 ";
  append_uint(out, static_cast<uint64_t>(status));
  out += ' ';
  out += http::reason_phrase(status);
  out += "\r\nServer: portico\r\n";
  const plugins::HeaderEdits* header_edits =
      edits != nullptr && !edits->headers.empty() ? &edits->headers : nullptr;
  if (!body.empty() && !edited_away(header_edits, "content-type")) {
    append_header(
        out, "Content-Type",
        reply.content_type.empty() ? std::string_view("text/plain; charset=utf-8") : reply.content_type);
  }
  for (const auto& [name, value] : reply.headers) {
    if (!is_reserved_field(name) && !edited_away(header_edits, name)) append_header(out, name, value);
  }
  append_edited(out, header_edits);
  if (!bodiless) {
    out += "Content-Length: ";
    append_uint(out, body.size());
    out += "\r\n";
  }
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head_only) out += body;
}

void write_error_response(std::string& out, int status, std::string_view message, bool close,
                          bool head_only) {
  out.clear();
  std::string body = "{\"error_msg\":\"";
  body += message;
  body += "\"}\n";
  out += "HTTP/1.1 ";
  append_uint(out, static_cast<uint64_t>(status));
  out += ' ';
  out += http::reason_phrase(status);
  out += "\r\nServer: portico\r\nContent-Type: application/json\r\nContent-Length: ";
  append_uint(out, body.size());
  out += "\r\n";
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head_only) out += body;
}

}  // namespace portico::proxy
