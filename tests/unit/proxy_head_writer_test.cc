// Head rewriting at the proxy: which fields a Connection header can remove from what Portico forwards
// (RFC 9110 7.6.1), and that it can never remove the framing Portico sends by or the fields Portico adds.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "http/parser.h"
#include "proxy/head_writer.h"

namespace portico::proxy {
namespace {

// The field lines of a serialised head (start line and final empty line left out).
std::vector<std::string> field_lines(const std::string& head) {
  std::vector<std::string> out;
  size_t start = head.find("\r\n") + 2;
  while (true) {
    const size_t end = head.find("\r\n", start);
    if (end == std::string::npos || end == start) break;
    out.push_back(head.substr(start, end - start));
    start = end + 2;
  }
  return out;
}

// Values of the fields named `name` (case-insensitive) in a serialised head.
std::vector<std::string> values(const std::string& head, std::string_view name) {
  std::vector<std::string> out;
  for (const std::string& line : field_lines(head)) {
    const size_t colon = line.find(':');
    if (iequals(std::string_view(line).substr(0, colon), name)) out.push_back(line.substr(colon + 2));
  }
  return out;
}

using Values = std::vector<std::string>;

// The heads' views point into `s`: callers pass literals or strings that outlive the checks.
http::ResponseHead parse_response(std::string_view s) {
  http::ResponseHead head;
  const http::ParseResult r = http::parse_response(s.data(), s.size(), http::Method::GET, {}, head);
  EXPECT_EQ(r.status, http::ParseStatus::complete) << r.error_reason;
  return head;
}

http::RequestHead parse_request(std::string_view s) {
  http::RequestHead head;
  const http::ParseResult r = http::parse_request(s.data(), s.size(), {}, head);
  EXPECT_EQ(r.status, http::ParseStatus::complete) << r.error_reason;
  return head;
}

UpstreamRequestParams upstream_params(OutFraming body = OutFraming::none) {
  UpstreamRequestParams p;
  p.target = "/";
  p.host = "a";
  p.client_ip = "10.0.0.1";
  p.body = body;
  return p;
}

// An origin's `Connection: Content-Length` must not cost the client the length Portico frames the body by:
// without it the client would read the body until close while Portico keeps the connection open.
TEST(ClientResponseHead, ConnectionCannotRemoveContentLength) {
  const std::string in =
      "HTTP/1.1 200 OK\r\nContent-Length: 5\r\nConnection: Content-Length, X-Hop\r\n"
      "X-Hop: 1\r\nX-Keep: 2\r\n\r\n";
  const http::ResponseHead resp = parse_response(in);
  std::string out;
  ClientResponseParams p;
  p.body = OutFraming::content_length;
  write_client_response_head(out, resp, p);
  EXPECT_EQ(values(out, "content-length"), Values{"5"}) << out;
  EXPECT_EQ(values(out, "transfer-encoding"), Values{}) << out;
  EXPECT_EQ(values(out, "x-hop"), Values{}) << out;  // other fields named in Connection are still dropped
  EXPECT_EQ(values(out, "x-keep"), Values{"2"}) << out;
  EXPECT_EQ(values(out, "connection"), Values{}) << out;  // the origin's Connection is not forwarded
}

TEST(ClientResponseHead, ConnectionCannotRemoveContentLengthOfHeadOr304) {
  const std::string in =
      "HTTP/1.1 304 Not Modified\r\nContent-Length: 100\r\nConnection: content-length\r\n\r\n";
  const http::ResponseHead resp = parse_response(in);
  std::string out;
  write_client_response_head(out, resp, ClientResponseParams{});
  EXPECT_EQ(values(out, "content-length"), Values{"100"}) << out;
}

// Transfer-Encoding is hop-by-hop: Portico always re-states it for the framing it sends, so an origin naming
// it in Connection changes nothing.
TEST(ClientResponseHead, ConnectionNamingTransferEncodingKeepsChunkedFraming) {
  const std::string in =
      "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: Transfer-Encoding, keep-alive\r\n\r\n";
  const http::ResponseHead resp = parse_response(in);
  ASSERT_EQ(resp.framing, http::BodyFraming::chunked);
  std::string out;
  ClientResponseParams p;
  p.body = OutFraming::chunked;
  write_client_response_head(out, resp, p);
  EXPECT_EQ(values(out, "transfer-encoding"), Values{"chunked"}) << out;
  EXPECT_EQ(values(out, "content-length"), Values{}) << out;
}

// The parser rejects a request whose Connection names Content-Length; the writer does not rely on it: even
// such a head keeps its Content-Length upstream, so the body is never sent unframed.
TEST(UpstreamRequestHead, ConnectionCannotRemoveContentLength) {
  http::RequestHead req;
  req.method_text = "POST";
  req.host_header = "a";
  req.headers[0] = {"Content-Length", "5"};
  req.headers[1] = {"Connection", "Content-Length"};
  req.header_count = 2;
  req.connection = http::kConnOther;
  req.framing = http::BodyFraming::content_length;
  req.content_length = 5;
  ASSERT_TRUE(req.connection_lists("content-length"));
  std::string out;
  write_upstream_request_head(out, req, upstream_params(OutFraming::content_length));
  EXPECT_EQ(values(out, "content-length"), Values{"5"}) << out;
}

// Fields Portico sets itself are written after the Connection-driven removal: a client naming them drops
// only its own copies, never Portico's.
TEST(UpstreamRequestHead, ConnectionCannotRemoveFieldsPorticoAdds) {
  const std::string in =
      "GET / HTTP/1.1\r\nHost: a\r\n"
      "Connection: X-Forwarded-For, X-Real-IP, X-Forwarded-Host, X-Forwarded-Proto, X-Custom, TE\r\n"
      "X-Forwarded-For: 1.2.3.4\r\nX-Real-IP: 9.9.9.9\r\nX-Forwarded-Proto: https\r\nX-Custom: v\r\n"
      "TE: trailers\r\nX-Other: o\r\n\r\n";
  const http::RequestHead req = parse_request(in);
  std::string out;
  write_upstream_request_head(out, req, upstream_params());
  EXPECT_EQ(values(out, "host"), Values{"a"}) << out;
  EXPECT_EQ(values(out, "x-forwarded-for"), Values{"10.0.0.1"}) << out;
  EXPECT_EQ(values(out, "x-real-ip"), Values{"10.0.0.1"}) << out;
  EXPECT_EQ(values(out, "x-forwarded-proto"), Values{"http"}) << out;
  EXPECT_EQ(values(out, "x-forwarded-host"), Values{"a"}) << out;
  EXPECT_EQ(values(out, "x-custom"), Values{}) << out;
  EXPECT_EQ(values(out, "te"), Values{}) << out;
  EXPECT_EQ(values(out, "x-other"), Values{"o"}) << out;
  EXPECT_EQ(values(out, "connection"), Values{}) << out;
}

// A CGI-style origin reads `X_Real_IP` as X-Real-IP: the client's underscore spellings of the fields Portico
// sets are dropped like the client's own copies, so they cannot stand in for Portico's values.
TEST(UpstreamRequestHead, UnderscoreSpellingsOfIdentityFieldsAreDropped) {
  const http::RequestHead req = parse_request(
      "GET / HTTP/1.1\r\nHost: a\r\nX_Forwarded_For: 6.6.6.6\r\nx_real_ip: 6.6.6.6\r\nX-Forwarded_Host: "
      "evil\r\n"
      "X_FORWARDED_PROTO: https\r\nX_Other: kept\r\n\r\n");
  std::string out;
  write_upstream_request_head(out, req, upstream_params());
  EXPECT_EQ(out.find("6.6.6.6"), std::string::npos) << out;
  EXPECT_EQ(out.find("evil"), std::string::npos) << out;
  EXPECT_EQ(values(out, "x_forwarded_proto"), Values{}) << out;
  EXPECT_EQ(values(out, "x-forwarded-for"), Values{"10.0.0.1"}) << out;
  EXPECT_EQ(values(out, "x_other"), Values{"kept"}) << out;
}

// Without Connection naming it, the client's X-Forwarded-For chain is extended, not replaced.
TEST(UpstreamRequestHead, ForwardedForIsExtended) {
  const http::RequestHead req =
      parse_request("GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.2.3.4\r\n\r\n");
  std::string out;
  write_upstream_request_head(out, req, upstream_params());
  EXPECT_EQ(values(out, "x-forwarded-for"), Values{"1.2.3.4, 10.0.0.1"}) << out;
}

// `Connection: Upgrade` names the Upgrade field, which Portico re-states itself for a WebSocket handshake.
TEST(UpstreamRequestHead, UpgradeSurvivesConnectionNamingIt) {
  const http::RequestHead req =
      parse_request("GET /ws HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, X-A\r\nUpgrade: websocket\r\n\r\n");
  std::string out;
  UpstreamRequestParams p = upstream_params();
  p.upgrade = req.find("upgrade");
  write_upstream_request_head(out, req, p);
  EXPECT_EQ(values(out, "upgrade"), Values{"websocket"}) << out;
  EXPECT_EQ(values(out, "connection"), Values{"upgrade"}) << out;
}

TEST(UpstreamRequestHead, ChunkedIsRestated) {
  const http::RequestHead req =
      parse_request("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: X-A\r\n\r\n");
  std::string out;
  write_upstream_request_head(out, req, upstream_params(OutFraming::chunked));
  EXPECT_EQ(values(out, "transfer-encoding"), Values{"chunked"}) << out;
  EXPECT_EQ(values(out, "content-length"), Values{}) << out;
}

// Routing sees the fields the origin will receive: end-to-end fields named in Connection leave the head
// before routing; hop-by-hop ones stay for Portico's own use (Upgrade) and are dropped when written.
TEST(RemoveConnectionOptions, DropsNamedEndToEndFieldsOnly) {
  http::RequestHead req = parse_request(
      "GET /ws HTTP/1.1\r\nHost: a\r\nX-Tier: gold\r\nConnection: Upgrade, x-tier\r\nUpgrade: websocket\r\n"
      "X-Keep: 1\r\nConnection: X-Gone\r\nX-Gone: 2\r\nUser-Agent: t\r\n\r\n");
  remove_connection_options(req);
  std::vector<std::string> names;
  for (uint16_t i = 0; i < req.header_count; ++i) names.emplace_back(req.headers[i].name);
  EXPECT_EQ(names, (std::vector<std::string>{"Host", "Connection", "Upgrade", "X-Keep", "Connection",
                                             "User-Agent"}));
  EXPECT_EQ(req.find("upgrade"), "websocket");
  EXPECT_TRUE(req.upgrade);
}

TEST(RemoveConnectionOptions, NothingNamedNothingRemoved) {
  http::RequestHead req =
      parse_request("GET / HTTP/1.1\r\nHost: a\r\nConnection: keep-alive\r\nKeep-Alive: 5\r\nX-A: 1\r\n\r\n");
  remove_connection_options(req);
  EXPECT_EQ(req.header_count, 4);
}

}  // namespace
}  // namespace portico::proxy

namespace portico::proxy {
namespace {

TEST(PluginEdits, AClientsUnderscoreSpellingOfAnIdentityFieldDoesNotSurvivePorticosOwn) {
  const std::string raw =
      "GET / HTTP/1.1\r\nHost: a\r\nX_Consumer_Username: admin\r\nx-consumer-username: admin2\r\n\r\n";
  const http::RequestHead req = parse_request(raw);
  plugins::UpstreamEdits edits;
  edits.headers.push(plugins::HeaderEdit::Op::set, "X-Consumer-Username", "bob");
  UpstreamRequestParams p = upstream_params();
  p.edits = &edits;
  std::string out;
  write_upstream_request_head(out, req, p);
  EXPECT_EQ(values(out, "X-Consumer-Username"), (Values{"bob"}));
  EXPECT_EQ(values(out, "X_Consumer_Username"), (Values{}));
}

TEST(PluginEdits, AStatusWithoutABodyIsSentWithoutFramingOrBody) {
  const std::string raw = "HTTP/1.1 200 OK\r\nContent-Length: 20\r\nX-A: 1\r\n\r\n";
  const http::ResponseHead resp = parse_response(raw);
  plugins::ResponseEdits edits;
  edits.status = 204;
  edits.has_body = true;  // how the session sends a status of the other kind: an empty replaced body
  ClientResponseParams cp;
  cp.body = OutFraming::content_length;
  cp.edits = &edits;
  std::string out;
  write_client_response_head(out, resp, cp);
  EXPECT_TRUE(out.starts_with("HTTP/1.1 204 "));
  EXPECT_EQ(values(out, "Content-Length"), (Values{}));
  EXPECT_EQ(values(out, "X-A"), (Values{"1"}));

  // 304 from the origin turned into a 200: Content-Length 0 (the origin's is the representation's length).
  const std::string raw304 = "HTTP/1.1 304 Not Modified\r\nContent-Length: 1234\r\n\r\n";
  const http::ResponseHead not_modified = parse_response(raw304);
  edits.status = 200;
  write_client_response_head(out, not_modified, cp);
  EXPECT_EQ(values(out, "Content-Length"), (Values{"0"}));

  // A plugin's own 204: no body, no Content-Type, no Content-Length.
  plugins::Reply reply;
  reply.status = 204;
  reply.body = "{\"x\":1}";
  reply.content_type = "application/json";
  write_plugin_reply(out, reply, nullptr, false, false);
  EXPECT_TRUE(out.starts_with("HTTP/1.1 204 "));
  EXPECT_EQ(values(out, "Content-Length"), (Values{}));
  EXPECT_EQ(values(out, "Content-Type"), (Values{}));
  EXPECT_TRUE(out.ends_with("\r\n\r\n"));
}

TEST(H2ResponseFields, SameFilterLowerCaseNoFraming) {
  // What the HTTP/2 stream receives from a Session: the HTTP/1.1 head Portico wrote, parsed back.
  const std::string in =
      "HTTP/1.1 200 OK\r\nX-Custom: A\r\nConnection: close, x-secret\r\nX-Secret: s\r\nKeep-Alive: t=5\r\n"
      "Transfer-Encoding: chunked\r\nContent-Type: text/plain\r\n\r\n";
  const http::ResponseHead resp = parse_response(in);
  std::vector<std::pair<std::string, std::string>> fields;
  write_h2_response_fields(fields, resp);
  const std::vector<std::pair<std::string, std::string>> want = {{"x-custom", "A"},
                                                                 {"content-type", "text/plain"}};
  EXPECT_EQ(fields, want);
}

TEST(H2ResponseFields, ContentLengthKept) {
  const std::string in = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: content-length\r\n\r\n";
  const http::ResponseHead resp = parse_response(in);
  std::vector<std::pair<std::string, std::string>> fields;
  write_h2_response_fields(fields, resp);
  ASSERT_EQ(fields.size(), 1u);
  EXPECT_EQ(fields[0], std::make_pair(std::string("content-length"), std::string("3")));
}

// The structured HTTP/2 head (write_h2_client_response_head) gives exactly what the stream used to get by
// parsing back the HTTP/1.1 text of write_client_response_head: the same fields under the same filter, the
// same status, the same content length.
std::vector<std::pair<std::string, std::string>> via_text(const http::ResponseHead& resp,
                                                          const ClientResponseParams& cp, int& status,
                                                          std::string& text) {
  write_client_response_head(text, resp, cp);
  http::ResponseHead parsed = parse_response(text);
  status = parsed.status;
  std::vector<std::pair<std::string, std::string>> fields;
  write_h2_response_fields(fields, parsed);
  return fields;
}

std::vector<std::pair<std::string, std::string>> structured(const H2ResponseHead& head) {
  std::vector<std::pair<std::string, std::string>> out;
  for (const http2::FieldView& f : head.fields) out.emplace_back(std::string(f.name), std::string(f.value));
  return out;
}

TEST(H2ClientResponseHead, SameAsTheHttp11TextParsedBack) {
  const std::string raw =
      "HTTP/1.1 200 OK\r\nX-Custom: A\r\nConnection: keep-alive, x-secret\r\nX-Secret: s\r\n"
      "Keep-Alive: t=5\r\nContent-Length: 5\r\nContent-Type: text/plain\r\nX-Gone: 1\r\nX-Twice: a\r\n\r\n";
  const http::ResponseHead resp = parse_response(raw);
  plugins::ResponseEdits edits;
  edits.headers.push(plugins::HeaderEdit::Op::set, "X-Custom", "B");
  edits.headers.push(plugins::HeaderEdit::Op::remove, "X-Gone");
  edits.headers.push(plugins::HeaderEdit::Op::add, "X-Twice", "b");
  edits.headers.push(plugins::HeaderEdit::Op::set, "X-New", "n");
  for (int variant = 0; variant < 5; ++variant) {
    ClientResponseParams cp;
    cp.body = OutFraming::content_length;
    cp.close = variant == 1;
    if (variant >= 2) cp.edits = &edits;
    if (variant == 3) {
      edits.status = 201;
      edits.has_body = true;
      edits.body = "replaced";
    }
    if (variant == 4) {
      edits.status = 204;  // a bodiless status for a replaced body: no content-length at all
      edits.body.clear();
    }
    int status = 0;
    std::string text;
    const auto want = via_text(resp, cp, status, text);
    H2ResponseHead head;
    write_h2_client_response_head(head, resp, cp);
    EXPECT_EQ(structured(head), want) << "variant " << variant;
    EXPECT_EQ(head.status, status) << "variant " << variant;
    EXPECT_TRUE(head.has_content_length);
    EXPECT_EQ(head.content_length, variant == 3 ? 8u : variant == 4 ? 0u : 5u);
  }
}

TEST(H2ClientResponseHead, ChunkedOriginHasNoFramingField) {
  const std::string raw = "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-A: 1\r\n\r\n";
  const http::ResponseHead resp = parse_response(raw);
  ClientResponseParams cp;
  cp.body = OutFraming::chunked;
  int status = 0;
  std::string text;
  const auto want = via_text(resp, cp, status, text);
  H2ResponseHead head;
  write_h2_client_response_head(head, resp, cp);
  EXPECT_EQ(structured(head), want);
  EXPECT_EQ(structured(head), (std::vector<std::pair<std::string, std::string>>{{"x-a", "1"}}));
  EXPECT_FALSE(head.has_content_length);
  // ":status" + "200" + "x-a" + "1": the bytes an HTTP/2 stream counts as sent for this head.
  EXPECT_EQ(head.size(), 7u + 3u + 3u + 1u);
}

}  // namespace
}  // namespace portico::proxy
