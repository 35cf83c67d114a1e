// What a plugin sees and changes of one request: the RequestContext. The session (proxy/session.cc) owns one
// per connection and resets it per request; plugins read the received request through it, record their
// changes to the request sent upstream (UpstreamEdits) and to the response sent to the client
// (ResponseEdits), or answer the request themselves (reply()). A request on a route without plugins never
// touches any of it beyond the reset, which frees nothing: the vectors keep their capacity across requests.
//
// Worker thread only (one context per session).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "http/message.h"
#include "router/ip_address.h"

namespace portico::router {
struct MatchRequest;
}

namespace portico::plugins {

class ConsumerRuntime;
class ConsumerIndex;
class Plugin;
class RequestContext;

// The asynchronous access step. A plugin that must wait for I/O before the request can go on (a Redis reply)
// calls RequestContext::suspend() from access() and hands the Completion it gets to the I/O. The pipeline
// stops after that plugin; the session waits without blocking the worker and, once complete() was called,
// the pipeline calls the plugin's resume() and goes on with the next plugin. complete() runs on the worker
// thread (the I/O is on the worker's event loop); only its first call for the current wait counts, and a
// Completion of an earlier wait (an earlier request on the connection) does nothing: each suspend() numbers
// its wait. The I/O must not outlive the context: the plugin keeps it in a PluginState, whose cancel() and
// destructor stop it.
class Waiter {
 public:
  virtual void wake() = 0;  // the current wait completed

 protected:
  ~Waiter() = default;
};

class Completion {
 public:
  Completion() = default;
  void complete() const;

 private:
  friend class RequestContext;
  Completion(RequestContext* ctx, uint64_t seq) : ctx_(ctx), seq_(seq) {}
  RequestContext* ctx_ = nullptr;
  uint64_t seq_ = 0;
};

// Per-request state a plugin keeps in the context (an in-flight call). One object per type per context,
// reused by every request of the connection (RequestContext::state); the plugin re-initialises it.
class PluginState {
 public:
  virtual ~PluginState() = default;
  // The request is given up while this state's I/O may be pending (the session closes): stop it, so that
  // nothing completes into it.
  virtual void cancel() {}
};

// Something a plugin took for the request from process-wide state (limit-conn's connection count), given
// back exactly once: by the session after the log phase (with the request's duration) or, when the request
// ends without one (the session is destroyed mid-request), by the context (duration -1).
class LeaseHolder {
 public:
  virtual void release(uint64_t a, uint64_t b, double request_seconds) const = 0;

 protected:
  ~LeaseHolder() = default;
};

// Where the pipeline stopped for an asynchronous step (pipeline.cc); opaque to plugins.
struct ResumeCursor {
  uint8_t stage = 0;
  uint8_t phase = 0;
  uint32_t chain = 0;
  uint32_t i = 0;
  uint32_t j = 0;
  const Plugin* suspended = nullptr;  // the plugin whose resume() runs next
};

// One header change. `set` replaces every field of that name (or adds it), `add` appends one more field,
// `remove` drops every field of that name. Names compare case-insensitively.
struct HeaderEdit {
  enum class Op : uint8_t { set, add, remove };
  Op op = Op::set;
  std::string name;
  std::string value;
};

// A list of header changes that keeps its entries' storage across requests: clear() only forgets them, and
// push() assigns into a kept entry, so a plugin setting the same few headers on every request allocates
// nothing once the strings have grown to fit.
class HeaderEdits {
 public:
  void push(HeaderEdit::Op op, std::string_view name, std::string_view value = {}) {
    HeaderEdit& e = slot();
    e.op = op;
    e.name.assign(name);
    e.value.assign(value);
  }
  void push_back(HeaderEdit edit) { slot() = std::move(edit); }

  const HeaderEdit* begin() const { return list_.data(); }
  const HeaderEdit* end() const { return list_.data() + used_; }
  const HeaderEdit& operator[](size_t i) const { return list_[i]; }
  size_t size() const { return used_; }
  bool empty() const { return used_ == 0; }
  void clear() { used_ = 0; }

 private:
  HeaderEdit& slot() {
    if (used_ == list_.size()) list_.emplace_back();
    return list_[used_++];
  }
  std::vector<HeaderEdit> list_;
  size_t used_ = 0;
};

// Changes to the request Portico sends upstream, applied by the head writer in the order recorded.
struct UpstreamEdits {
  HeaderEdits headers;
  std::string path;        // non-empty: the path to send instead of the routed one
  bool query_set = false;  // `query` replaces the received query string (empty: none)
  std::string query;
  std::string method;  // non-empty: the method to send
  std::string host;    // non-empty: the Host header to send

  bool empty() const {
    return headers.empty() && path.empty() && !query_set && method.empty() && host.empty();
  }
  bool target_changed() const { return !path.empty() || query_set; }
  void clear() {
    headers.clear();
    path.clear();
    query_set = false;
    query.clear();
    method.clear();
    host.clear();
  }
};

// Changes to the response sent to the client (from the upstream, or a plugin's own reply).
struct ResponseEdits {
  HeaderEdits headers;
  int status = 0;         // non-zero: the status to send instead
  bool has_body = false;  // `body` replaces the response body (Content-Length framed)
  std::string body;

  bool empty() const { return headers.empty() && status == 0 && !has_body; }
  void clear() {
    headers.clear();
    status = 0;
    has_body = false;
    body.clear();
  }
};

// The response a plugin makes instead of forwarding (401, 403, a redirect, a CORS preflight answer).
struct Reply {
  int status = 0;  // 0: no reply; the request goes on
  std::string body;
  std::string content_type;  // empty with a body: "text/plain; charset=utf-8"
  std::vector<std::pair<std::string, std::string>> headers;
};

// A gRPC-Web call the grpc-web plugin accepted (plugins/grpc_web.cc): the session translates it to and from
// gRPC on a grpc/grpcs upstream (proxy/session_grpc_web.cc) and answers its own errors in its shape.
enum class GrpcWeb : uint8_t { none, binary, text };

// What the response filter phase sees of the response about to be sent.
struct ResponseInfo {
  int status = 0;
  const http::ResponseHead* upstream = nullptr;  // null for a plugin's or Portico's own response
};

// Facts for the log phase, when the response is complete.
struct LogInfo {
  int status = 0;
  double request_seconds = 0;
  double upstream_seconds = -1;  // -1: no upstream exchange
  uint64_t bytes_sent = 0;
  uint64_t bytes_received = 0;     // request head and body bytes read from the client
  std::string_view upstream_addr;  // "ip:port" of the node that answered; empty if none
  std::string_view upstream_ip;    // its IP alone ("10.0.0.5", "::1"); empty if none
};

class RequestContext {
 public:
  // The session's worker (0, 1, ...), for state a plugin keeps per worker (single writer, no lock).
  size_t worker = 0;

  // Per request, set by the session before the plugins run.
  const http::RequestHead* request = nullptr;
  std::string_view path;  // the normalized path the route matched (without the query)
  router::IpAddress client_ip;
  std::string_view client_ip_text;
  bool tls = false;  // the client connection is TLS (scheme https)
  // With a client certificate (ssls.client.ca): its subject (RFC 2253, nginx's $ssl_client_s_dn) and
  // "SUCCESS" (a failed verification ends the handshake); "NONE"/empty otherwise ("" on plain connections).
  std::string_view ssl_client_s_dn;
  std::string_view ssl_client_verify;
  std::string_view route_id;
  std::string_view route_name;
  std::string_view service_id;
  std::string_view service_name;  // empty when the route has no service or it has no name
  std::string_view matched_uri;   // the route's uri pattern that matched ("/users/*")
  std::string_view matched_host;  // the route's host pattern that matched; empty when none
  // The request as the router saw it, for request-phase `vars` conditions (router::VarsCondition: the
  // fault-injection plugin).
  const router::MatchRequest* match = nullptr;

  const ConsumerIndex* consumers = nullptr;  // the snapshot's credentials, for the auth plugins
  // Set by the pipeline while a global rule's plugin runs (its limits count every route's requests).
  bool global_rule = false;

  // Set by an auth plugin.
  const ConsumerRuntime* consumer = nullptr;
  std::string_view credential_id;  // the credential that authenticated it (APISIX 3.x credentials)

  UpstreamEdits upstream;
  ResponseEdits response;
  Reply reply;
  std::string request_id;  // set by request-id, read by the access log and later plugins
  // Seconds the session waits, after the request phases and before it forwards the request or sends a
  // plugin's reply (fault-injection's and mocking's `delay`). Plugins run synchronously on the worker, so a
  // plugin never sleeps: it asks for the wait, which the session spends on a timer while the worker serves
  // other connections. Several requests add up, as consecutive sleeps would in APISIX.
  double delay_seconds = 0;
  // traffic-split's choice (traffic_split.h): the plugin instance that chose and the number of the weighted
  // upstream it picked, -1 for the route's own. The session forwards to the upstream the snapshot compiled
  // for that number when the instance is the route's traffic-split (not a consumer's or a global rule's).
  const void* split_owner = nullptr;
  int split_choice = -1;
  // Set by grpc-web when it accepted the call: its encoding and the request's content type (a view into the
  // request head), which the response mirrors.
  GrpcWeb grpc_web = GrpcWeb::none;
  std::string_view grpc_web_mime;

  // The first request header named `name` (case-insensitive) as received; `found` tells an empty value from
  // a missing field.
  std::string_view header(std::string_view name, bool* found = nullptr) const {
    return request->find(name, found);
  }
  // The value of query argument `name` (first occurrence, not percent-decoded); `found` as above.
  std::string_view query_arg(std::string_view name, bool* found = nullptr) const;
  // The value of cookie `name` from the Cookie header(s).
  std::string_view cookie(std::string_view name, bool* found = nullptr) const;

  // Ends the plugin phases: the client gets this response (filtered by the response phase like any other).
  void respond(int status, std::string body, std::string content_type = {}) {
    reply.status = status;
    reply.body = std::move(body);
    reply.content_type = std::move(content_type);
  }
  // APISIX's `return 401, {message = "..."}`: a JSON body {"message":"..."}.
  void respond_message(int status, std::string_view message);
  bool replied() const { return reply.status != 0; }

  // The path and query string as they will be sent upstream so far (after earlier plugins' edits).
  std::string_view upstream_path() const {
    return upstream.path.empty() ? path : std::string_view(upstream.path);
  }
  std::string_view upstream_query() const {
    return upstream.query_set ? std::string_view(upstream.query) : request->query;
  }
  // Drops every `name=...` argument from the query string sent upstream.
  void remove_query_arg(std::string_view name);
  // Drops every cookie `name` from the Cookie header(s) received: the others are sent upstream in one Cookie
  // field, or none when nothing is left. Nothing changes when no cookie has that name.
  void remove_cookie(std::string_view name);
  // Records a header change for the request sent upstream.
  void set_upstream_header(std::string_view name, std::string_view value) {
    upstream.headers.push(HeaderEdit::Op::set, name, value);
  }
  void remove_upstream_header(std::string_view name) { upstream.headers.push(HeaderEdit::Op::remove, name); }

  void delay(double seconds) {
    if (seconds > 0) delay_seconds += seconds;
  }

  // The asynchronous step (see Completion). From a plugin's access() only, at most once per call.
  Completion suspend() {
    wait_ = Wait::pending;
    return Completion(this, ++wait_seq_);
  }
  // Set by the session once: told when a pending wait completes. Null: nobody is told (tests poll).
  Waiter* waiter = nullptr;
  // A plugin suspended the request and its completion has not come yet.
  bool waiting() const { return wait_ == Wait::pending; }
  // A plugin suspended the request (completed or not) and the pipeline has not resumed it yet.
  bool suspended() const { return wait_ != Wait::none; }
  // Gives up the current wait (the session closes): late completions are ignored, pending I/O cancelled.
  void cancel_wait() {
    if (wait_ == Wait::none) return;
    wait_ = Wait::none;
    ++wait_seq_;
    for (auto& s : states_) s->cancel();
  }
  // Called by the pipeline when it resumes.
  void clear_wait() { wait_ = Wait::none; }
  ResumeCursor cursor;  // the pipeline's (pipeline.cc)

  // This context's object of type T (default-constructed the first time, then reused).
  template <class T>
  T& state() {
    for (auto& s : states_) {
      if (T* t = dynamic_cast<T*>(s.get())) return *t;
    }
    states_.push_back(std::make_unique<T>());
    return static_cast<T&>(*states_.back());
  }

  // Records a lease (LeaseHolder). The holder must outlive the request (it lives in the pinned snapshot or
  // in process-wide state).
  void add_lease(const LeaseHolder* holder, uint64_t a, uint64_t b) { leases_.push_back({holder, a, b}); }
  // Gives back every lease taken (each exactly once: the list is emptied).
  void release_leases(double request_seconds) {
    for (size_t n = 0; n < leases_.size(); ++n) {
      const Lease l = leases_[n];
      l.holder->release(l.a, l.b, request_seconds);
    }
    leases_.clear();
  }
  size_t leases() const { return leases_.size(); }

  RequestContext() = default;
  RequestContext(const RequestContext&) = delete;
  RequestContext& operator=(const RequestContext&) = delete;
  // Not while a wait is pending (its Completion points at this object).
  RequestContext(RequestContext&&) = default;
  RequestContext& operator=(RequestContext&&) = default;
  ~RequestContext() {
    cancel_wait();
    release_leases(-1);
  }

  // Back to the state of a new request (keeps allocated capacity).
  void reset() {
    cancel_wait();
    release_leases(-1);
    cursor = {};
    delay_seconds = 0;
    split_owner = nullptr;
    split_choice = -1;
    grpc_web = GrpcWeb::none;
    grpc_web_mime = {};
    consumer = nullptr;
    credential_id = {};
    upstream.clear();
    response.clear();
    reply.status = 0;
    reply.body.clear();
    reply.content_type.clear();
    reply.headers.clear();
    request_id.clear();
  }

 private:
  friend class Completion;
  enum class Wait : uint8_t { none, pending, completed };
  struct Lease {
    const LeaseHolder* holder;
    uint64_t a, b;
  };
  Wait wait_ = Wait::none;
  uint64_t wait_seq_ = 0;
  std::vector<std::unique_ptr<PluginState>> states_;
  std::vector<Lease> leases_;
};

inline void Completion::complete() const {
  if (ctx_ == nullptr || ctx_->wait_seq_ != seq_ || ctx_->wait_ != RequestContext::Wait::pending) return;
  ctx_->wait_ = RequestContext::Wait::completed;
  if (ctx_->waiter != nullptr) ctx_->waiter->wake();
}

}  // namespace portico::plugins
