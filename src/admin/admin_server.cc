#include "admin/admin_server.h"

#include <openssl/crypto.h>
#include <sys/resource.h>

#include <algorithm>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstring>
#include <list>
#include <new>
#include <optional>
#include <stdexcept>
#include <thread>

#include "base/accept_backoff.h"
#include "base/endpoint.h"
#include "base/json_escape.h"
#include "base/log.h"
#include "base/socket_watchdog.h"
#include "http/parser.h"
#include "http/query.h"
#include "router/ip_address.h"
#include "tls/control_tls.h"

namespace portico::admin {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

namespace {

constexpr size_t kMaxHead = 64 * 1024;
constexpr size_t kInitialBuffer = 4 * 1024;  // grows by doubling for a larger head or body

asio::ip::address client_address(const tcp::endpoint& peer) {
  const asio::ip::address a = peer.address();
  if (a.is_v6() && a.to_v6().is_v4_mapped()) return asio::ip::make_address_v4(asio::ip::v4_mapped, a.to_v6());
  return a;
}

std::string serialize(const AdminResponse& r, bool keep_alive, bool head) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " +
                    std::string(http::reason_phrase(r.status)) + "\r\nCache-Control: no-store\r\n";
  if (r.status != 204) {  // RFC 9110 8.6: no Content-Length (and no content) in a 204
    out +=
        "Content-Type: " + r.content_type + "\r\nContent-Length: " + std::to_string(r.body.size()) + "\r\n";
  }
  for (const auto& [name, value] : r.headers) out += name + ": " + value + "\r\n";
  if (!keep_alive) out += "Connection: close\r\n";
  out += "\r\n";
  if (r.status != 204 && !head) out += r.body;
  return out;
}

bool is_write(std::string_view method) {
  return method != "GET" && method != "HEAD";
}

}  // namespace

std::string error_body(std::string_view message) {
  return "{\"error_msg\":\"" + base::json_escape(message) + "\"}";
}

AdminResponse error_response(int status, std::string_view message) {
  return AdminResponse{status, error_body(message), {}};
}

std::string query_arg(std::string_view query, std::string_view name, bool* present) {
  std::string_view raw;
  const bool found = http::find_query_arg(query, name, raw);
  if (present != nullptr) *present = found;
  return std::string(raw);
}

uint64_t Signal::generation() const {
  std::lock_guard lock(mu_);
  return generation_;
}

void Signal::notify() {
  std::lock_guard lock(mu_);
  ++generation_;
  for (auto& [id, wake] : waiters_) wake();
}

uint64_t Signal::add_waiter(uint64_t seen, std::function<void()> wake) {
  std::lock_guard lock(mu_);
  if (generation_ != seen) wake();
  const uint64_t id = next_id_++;
  waiters_.emplace(id, std::move(wake));
  return id;
}

void Signal::remove_waiter(uint64_t id) {
  std::lock_guard lock(mu_);
  waiters_.erase(id);
}

// Coroutines that run on the pool. Their arguments live in their own frames: a capturing lambda coroutine
// would read its captures from a closure that co_spawn may destroy first.
awaitable<AdminResponse> call_handler(const AdminHandler* handler, const AdminRequest* request) {
  co_return (*handler)(*request);
}
awaitable<AdminResponse> resume_deferred(std::shared_ptr<Deferred> deferred) {
  co_return deferred->resume();
}

struct AdminServer::Impl {
  // One accepted connection, owned by its serve() coroutine; the accounting below points at it while it
  // lives (the listener's thread only).
  struct Conn {
    Conn(Impl& impl, tcp::socket s, asio::ip::address a) : owner(impl), socket(std::move(s)), source(a) {}
    ~Conn() { owner.forget(*this); }
    Impl& owner;
    tcp::socket socket;
    asio::ip::address source;
    bool authenticated = false;
    // Set by admit() once registered, cleared when it authenticates or is closed to make room: until then
    // ~Conn has nothing to undo (admit() may fail half-way for lack of memory).
    bool listed = false;   // in `unauthenticated`
    bool counted = false;  // in `connections`
    std::list<Conn*>::iterator unauthenticated_pos;
  };

  AdminServerOptions options;  // `keys` is unused after listen(): see keys
  AdminHandler handler;
  mutable std::mutex keys_mu;
  std::shared_ptr<const std::vector<AdminKey>> keys;  // replaced whole by set_keys()
  std::shared_ptr<asio::ssl::context> tls;  // under keys_mu; null: plain HTTP; replaced by reload_tls()
  std::vector<router::Cidr> allowed;
  // Connection accounting (the listener's thread only). Declared before the io_context: destroying the
  // context destroys the coroutines still parked in it, and their Conns unregister here.
  size_t connections = 0;
  std::list<Conn*> unauthenticated;  // oldest first
  std::map<asio::ip::address, size_t> unauthenticated_by_source;
  asio::io_context context{1};
  tcp::acceptor acceptor{context};
  std::string name;
  base::AcceptBackoff backoff;
  // Unauthenticated connections closed because accept() ran out of descriptors, not yet logged (one line
  // every kEvictionLogInterval at most).
  size_t descriptor_evictions = 0;
  std::optional<std::chrono::steady_clock::time_point> eviction_logged;
  std::unique_ptr<asio::thread_pool> pool;
  std::thread thread;

  explicit Impl(std::string listener_name) : name(listener_name), backoff(std::move(listener_name)) {}
  awaitable<void> accept_loop();
  // Registers an accepted connection and starts serving it; on an exception (no memory) the connection is
  // closed and nothing of it stays registered.
  void admit(tcp::socket socket, const asio::ip::address& source);
  // accept() is out of descriptors: closes the oldest idle unauthenticated connection (nothing waiting to be
  // read) so the next accept() can have its descriptor; false when there is none. One with bytes waiting is a
  // client about to be read (a burst of data planes reconnecting), so the listener pauses instead and the
  // newcomers wait in the backlog.
  bool evict_for_descriptor();
  // Lowers the connection caps to what the process's descriptor limit can hold (logged).
  void clamp_to_descriptor_limit();
  awaitable<void> serve(std::unique_ptr<Conn> conn);
  // Closes unauthenticated connections (oldest first) until `source` is under its cap and the listener
  // under its caps; false when the newcomer still has no room (every slot held by an authenticated client).
  bool make_room(const asio::ip::address& source);
  void close_to_make_room(Conn& c);
  void authenticated(Conn& c);
  void forget(Conn& c);
  void leave_unauthenticated(Conn& c);
  // `source` as client_address() gives it (an IPv4-mapped peer as IPv4).
  bool client_allowed(const asio::ip::address& source) const;
  // Empty optional-like: role found, or an error response to send.
  bool authenticate(std::string_view key, Role& role, std::string& principal) const;
  std::shared_ptr<asio::ssl::context> tls_context() const {
    std::lock_guard lock(keys_mu);
    return tls;
  }
  std::shared_ptr<asio::ssl::context> build_tls() const {
    const AdminTlsOptions& t = options.tls;
    return tls::make_server_context(
        tls::ServerFiles{t.cert_file, t.key_file, t.client_ca_file, t.require_client_cert});
  }
};

bool AdminServer::Impl::client_allowed(const asio::ip::address& source) const {
  router::IpAddress ip;
  if (!router::IpAddress::parse(source.to_string(), ip)) return false;
  for (const router::Cidr& c : allowed) {
    if (c.contains(ip)) return true;
  }
  return false;
}

bool AdminServer::Impl::authenticate(std::string_view key, Role& role, std::string& principal) const {
  // Every configured key is compared, in constant time, so timing does not reveal which prefix matched.
  std::shared_ptr<const std::vector<AdminKey>> current;
  {
    std::lock_guard lock(keys_mu);
    current = keys;
  }
  bool found = false;
  for (const AdminKey& k : *current) {
    if (k.key.size() == key.size() && CRYPTO_memcmp(k.key.data(), key.data(), key.size()) == 0) {
      if (!found || k.role == Role::admin) {
        role = k.role;
        principal = k.name;
      }
      found = true;
    }
  }
  return found;
}

void AdminServer::Impl::leave_unauthenticated(Conn& c) {
  if (!c.listed) return;
  c.listed = false;
  unauthenticated.erase(c.unauthenticated_pos);
  auto it = unauthenticated_by_source.find(c.source);
  if (--it->second == 0) unauthenticated_by_source.erase(it);
}

void AdminServer::Impl::authenticated(Conn& c) {
  c.authenticated = true;
  leave_unauthenticated(c);
}

void AdminServer::Impl::close_to_make_room(Conn& c) {
  leave_unauthenticated(c);
  if (c.counted) {
    c.counted = false;
    --connections;
  }
  // Its coroutine sees the read fail and ends; the descriptor is free at once.
  boost::system::error_code ignored;
  c.socket.close(ignored);
}

void AdminServer::Impl::forget(Conn& c) {
  leave_unauthenticated(c);
  if (c.counted) --connections;
}

bool AdminServer::Impl::make_room(const asio::ip::address& source) {
  auto by_source = unauthenticated_by_source.find(source);
  if (by_source != unauthenticated_by_source.end() &&
      by_source->second >= options.max_unauthenticated_per_source) {
    for (Conn* c : unauthenticated) {
      if (c->source == source) {
        close_to_make_room(*c);
        break;
      }
    }
  }
  if (!unauthenticated.empty() && unauthenticated.size() >= options.max_unauthenticated) {
    close_to_make_room(*unauthenticated.front());
  }
  if (!unauthenticated.empty() && connections >= options.max_connections) {
    close_to_make_room(*unauthenticated.front());
  }
  return connections < options.max_connections;
}

awaitable<void> AdminServer::Impl::serve(std::unique_ptr<Conn> conn) {
  tcp::socket& socket = conn->socket;
  const bool allowed_peer = client_allowed(conn->source);
  boost::system::error_code ignored;
  socket.set_option(tcp::no_delay(true), ignored);
  // TLS: the context is pinned for the connection's life (a reload applies to the next handshake).
  const std::shared_ptr<asio::ssl::context> tls_context = this->tls_context();
  std::optional<asio::ssl::stream<tcp::socket&>> tls;
  std::string cert_identity;  // a verified client certificate's identity, accepted for certificate_role
  std::string cert_refusal;   // why a verified certificate's identity was refused

  // No buffer until the client has sent something: an idle connection costs its socket and this frame.
  std::string buf;
  size_t len = 0;
  http::ParseLimits limits;
  limits.max_head_size = kMaxHead;
  // The parsed head (4 KiB of header slots) lives on the heap while a request is read, not in the frame of
  // every idle connection.
  std::unique_ptr<http::RequestHead> head_slots;
  base::SocketWatchdog watchdog(context, socket);
  if (tls_context) {
    // The handshake is part of the unauthenticated client's head deadline.
    watchdog.arm(allowed_peer ? std::min(options.idle_timeout, options.unauthenticated_timeout) : 5.0);
    tls.emplace(socket, *tls_context);
    auto [ec] = co_await tls->async_handshake(asio::ssl::stream_base::server, nothrow);
    if (ec) {
      PORTICO_LOG(debug, "%s: TLS handshake with %s failed: %s", name.c_str(),
                  conn->source.to_string().c_str(), ec.message().c_str());
      co_return;
    }
    if (options.tls.certificate_authenticates) {
      cert_identity = tls::peer_identity(tls->native_handle());
      if (SSL_get0_peer_certificate(tls->native_handle()) != nullptr && cert_identity.empty()) {
        cert_refusal =
            "the client certificate names no identity (a DNS subjectAltName, or the CN of a certificate "
            "without "
            "subjectAltName)";
      } else if (!cert_identity.empty() && options.tls.check_identity) {
        cert_refusal = options.tls.check_identity(cert_identity);
        if (!cert_refusal.empty()) cert_identity.clear();
      }
    }
  }
  auto read_some = [&](asio::mutable_buffer b) -> awaitable<std::tuple<boost::system::error_code, size_t>> {
    if (tls) co_return co_await tls->async_read_some(b, nothrow);
    co_return co_await socket.async_read_some(b, nothrow);
  };
  auto write_all = [&](asio::const_buffer b) -> awaitable<boost::system::error_code> {
    auto [ec, n] =
        tls ? co_await asio::async_write(*tls, b, nothrow) : co_await asio::async_write(socket, b, nothrow);
    co_return ec;
  };
  auto read_more = [&]() -> awaitable<bool> {
    if (buf.empty()) {
      // Plain: no buffer before the client sends. TLS may hold decrypted bytes already (the request came
      // with the handshake's last flight), so it reads at once.
      if (!tls) {
        auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, nothrow);
        if (ec) co_return false;
      }
      buf.resize(kInitialBuffer);
    } else if (len == buf.size()) {
      buf.resize(buf.size() * 2);
    }
    auto [ec, n] = co_await read_some(asio::buffer(buf.data() + len, buf.size() - len));
    if (ec || n == 0) co_return false;
    len += n;
    co_return true;
  };
  bool head_request = false;
  auto send = [&](const AdminResponse& r, bool keep_alive) -> awaitable<bool> {
    std::string out = serialize(r, keep_alive, head_request);
    watchdog.arm(options.idle_timeout);  // a client that stops reading is dropped, its response with it
    auto ec = co_await write_all(asio::buffer(out));
    watchdog.disarm();
    co_return !ec;
  };

  while (true) {
    // A client outside the allow-list gets a few seconds to send its request (to be told 403), no more; one
    // that has not authenticated yet gets the short head deadline.
    if (!allowed_peer) {
      watchdog.arm(5.0);
    } else if (!conn->authenticated) {
      watchdog.arm(std::min(options.idle_timeout, options.unauthenticated_timeout));
    } else {
      watchdog.arm(options.idle_timeout);
    }
    http::ParseResult parsed;
    while (true) {
      if (len > 0) {
        if (!head_slots) head_slots = std::make_unique<http::RequestHead>();
        parsed = http::parse_request(buf.data(), len, limits, *head_slots);
        if (parsed.status != http::ParseStatus::incomplete) break;
      }
      if (len >= kMaxHead || !co_await read_more()) co_return;
    }
    const http::RequestHead& head = *head_slots;
    if (parsed.status == http::ParseStatus::error) {
      co_await send(error_response(parsed.error_status, parsed.error_reason), false);
      break;
    }
    // The head's views point into buf; copy what outlives a buffer resize before reading the body.
    AdminRequest req;
    req.method = std::string(head.method_text);
    head_request = head.method == http::Method::HEAD;
    std::string path(head.path);
    req.query = std::string(head.query);
    req.if_match = std::string(head.find("If-Match"));
    req.if_none_match = std::string(head.find("If-None-Match"));
    bool key_present = false;
    std::string key;
    if (options.key_scheme == KeyScheme::api_key) {
      key = std::string(head.find("X-API-KEY", &key_present));
    } else {
      std::string_view authorization = head.find("Authorization", &key_present);
      if (authorization.size() > 7 &&
          (authorization.substr(0, 7) == "Bearer " || authorization.substr(0, 7) == "bearer ")) {
        key = std::string(authorization.substr(7));
      }
    }
    const char* key_name = options.key_scheme == KeyScheme::api_key ? "X-API-KEY" : "Authorization: Bearer";
    const bool keep_alive = head.keep_alive;
    const bool expect_continue = head.expect_continue;
    const http::BodyFraming framing = head.framing;
    const uint64_t content_length = head.content_length;
    size_t consumed = head.head_size;

    // Refuse before reading a body that would be thrown away.
    AdminResponse early;
    bool refuse = true;
    const bool no_key = !key_present || key.empty();
    if (!allowed_peer) {
      early = error_response(403, "client address not allowed by --allow-admin");
    } else if (path != options.path_prefix && !path.starts_with(options.path_prefix + "/")) {
      early = error_response(404, "not found: this listener serves " + options.path_prefix);
    } else if (no_key && cert_identity.empty()) {
      std::string why = std::string("missing ") + key_name;
      if (!cert_refusal.empty()) {
        why = cert_refusal;
      } else if (options.tls.certificate_authenticates) {
        why += " or client certificate";
      }
      early = error_response(401, why);
    } else if (no_key) {  // mutual TLS in place of a key
      req.role = options.tls.certificate_role;
      req.principal = cert_identity;
      refuse = false;
    } else if (!authenticate(key, req.role, req.principal)) {
      early = error_response(401, std::string("wrong ") + key_name);
    } else {
      refuse = false;
    }
    if (refuse) {
    } else if (req.role == Role::viewer && is_write(req.method)) {
      refuse = true;
      early = error_response(403, "the viewer role is read-only");
    } else if (framing == http::BodyFraming::content_length && content_length > options.max_body_size) {
      refuse = true;
      early = error_response(413, "request body over " + std::to_string(options.max_body_size) + " bytes");
    }
    if (refuse) {
      co_await send(early, false);
      break;
    }
    req.path = path.substr(options.path_prefix.size());
    if (!conn->authenticated) {
      authenticated(*conn);
      watchdog.arm(options.idle_timeout);  // the body, no longer under the unauthenticated head deadline
    }

    if (expect_continue && framing != http::BodyFraming::none) {
      static constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";
      if (co_await write_all(asio::buffer(kContinue))) break;
    }
    bool body_ok = true;
    if (framing == http::BodyFraming::content_length) {
      while (len - consumed < content_length) {
        if (!co_await read_more()) {
          body_ok = false;
          break;
        }
      }
      if (body_ok) {
        req.body.assign(buf.data() + consumed, content_length);
        consumed += content_length;
      }
    } else if (framing == http::BodyFraming::chunked) {
      http::ChunkedDecoder decoder;
      // Chunk framing is bounded too: extensions may not inflate a small body into an unbounded buffer.
      const size_t wire_limit = 2 * options.max_body_size + kMaxHead;
      size_t wire_bytes = 0;
      while (body_ok && !decoder.done()) {
        if (consumed > 0 && consumed == len) {  // everything decoded: reuse the buffer from its start
          wire_bytes += consumed;
          len = consumed = 0;
        }
        auto step = decoder.next(std::string_view(buf.data() + consumed, len - consumed));
        consumed += step.consumed;
        if (step.status == http::ChunkedDecoder::Status::data) {
          req.body.append(step.data);
          if (req.body.size() > options.max_body_size) {
            co_await send(
                error_response(413, "request body over " + std::to_string(options.max_body_size) + " bytes"),
                false);
            body_ok = false;
          }
        } else if (step.status == http::ChunkedDecoder::Status::error) {
          co_await send(error_response(400, std::string("bad chunked body: ") + decoder.error_reason()),
                        false);
          body_ok = false;
        } else if (step.status == http::ChunkedDecoder::Status::need_more) {
          if (wire_bytes + len > wire_limit) {
            co_await send(error_response(413, "chunked request body over its framing limit"), false);
            body_ok = false;
          } else if (!co_await read_more()) {
            body_ok = false;
          }
        }
      }
    }
    if (!body_ok) break;
    watchdog.disarm();

    AdminResponse response;
    try {
      response = co_await asio::co_spawn(*pool, call_handler(&handler, &req), asio::use_awaitable);
    } catch (const std::exception& e) {
      PORTICO_LOG(error, "admin: %s %s failed: %s", req.method.c_str(), req.path.c_str(), e.what());
      response = error_response(500, "internal error");
    }
    while (response.deferred) {
      // Wait without a thread: a timer at the deadline, cancelled early by the signal.
      const std::shared_ptr<Deferred> d = std::move(response.deferred);
      response.deferred.reset();
      auto wake = std::make_shared<asio::steady_timer>(context, d->deadline);
      struct Registration {
        std::shared_ptr<Signal> signal;
        uint64_t id;
        ~Registration() { signal->remove_waiter(id); }
      } registration{d->signal, d->signal->add_waiter(d->generation, [wake, ex = context.get_executor()] {
                       asio::post(ex, [wake] { wake->cancel(); });
                     })};
      co_await wake->async_wait(nothrow);
      try {
        response = co_await asio::co_spawn(*pool, resume_deferred(d), asio::use_awaitable);
      } catch (const std::exception& e) {
        PORTICO_LOG(error, "admin: %s %s failed: %s", req.method.c_str(), req.path.c_str(), e.what());
        response = error_response(500, "internal error");
      }
    }
    if (!co_await send(response, keep_alive)) break;
    if (!keep_alive) break;
    // Keep pipelined bytes for the next request; an idle keep-alive connection gives its buffer back.
    std::memmove(buf.data(), buf.data() + consumed, len - consumed);
    len -= consumed;
    if (len == 0) {
      std::string().swap(buf);
      head_slots.reset();
    }
  }
  watchdog.disarm();
  if (!watchdog.fired() && socket.is_open() && tls) {
    // TLS: close_notify, then the peer's (or its EOF), bounded like the plain lingering close.
    watchdog.arm(2.0);
    co_await tls->async_shutdown(nothrow);
  } else if (!watchdog.fired() && socket.is_open()) {
    // Lingering close: a client still sending a body we refused would get a reset (and may lose our answer)
    // if we closed with its bytes unread, so read and drop them for a moment first.
    boost::system::error_code ec;
    socket.shutdown(tcp::socket::shutdown_send, ec);
    watchdog.arm(2.0);
    if (buf.size() < kInitialBuffer) buf.resize(kInitialBuffer);
    size_t drained = 0;
    while (drained < 8 * 1024 * 1024) {
      auto [rec, n] = co_await socket.async_read_some(asio::buffer(buf.data(), buf.size()), nothrow);
      if (rec || n == 0) break;
      drained += n;
    }
  }
}

void AdminServer::Impl::admit(tcp::socket socket, const asio::ip::address& source) {
  // Registered step by step, each step recorded in the Conn as it succeeds, so an exception (bad_alloc) at
  // any point leaves ~Conn exactly what to undo.
  auto conn = std::make_unique<Conn>(*this, std::move(socket), source);
  unauthenticated.push_back(conn.get());
  const auto pos = std::prev(unauthenticated.end());
  try {
    ++unauthenticated_by_source[source];
  } catch (...) {
    unauthenticated.erase(pos);
    throw;
  }
  conn->unauthenticated_pos = pos;
  conn->listed = true;
  ++connections;
  conn->counted = true;
  asio::co_spawn(context, serve(std::move(conn)), asio::detached);
}

bool AdminServer::Impl::evict_for_descriptor() {
  // Bounded: this runs at every accept() that fails for a descriptor.
  constexpr size_t kScan = 64;
  Conn* idle = nullptr;
  size_t scanned = 0;
  for (Conn* c : unauthenticated) {
    if (scanned++ == kScan) break;
    if (!c->socket.is_open()) continue;  // closed by its deadline already: its descriptor is free
    boost::system::error_code ec;
    if (c->socket.available(ec) == 0 || ec) {
      idle = c;
      break;
    }
  }
  if (idle == nullptr) return false;
  close_to_make_room(*idle);
  ++descriptor_evictions;
  constexpr auto kEvictionLogInterval = std::chrono::seconds(10);
  const auto now = std::chrono::steady_clock::now();
  if (!eviction_logged || now - *eviction_logged >= kEvictionLogInterval) {
    PORTICO_LOG(
        warn,
        "%s: out of file descriptors: closed %zu idle unauthenticated connection(s), oldest first, to "
        "accept new ones",
        name.c_str(), descriptor_evictions);
    descriptor_evictions = 0;
    eviction_logged = now;
  }
  return true;
}

awaitable<void> AdminServer::Impl::accept_loop() {
  asio::steady_timer pause(context);
  while (acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(nothrow);
    std::chrono::milliseconds delay{0};
    bool evict_when_paused = false;
    if (ec) {
      if (!acceptor.is_open()) co_return;
      const base::AcceptError kind = base::classify_accept_error(ec);
      if (kind == base::AcceptError::connection) continue;  // that one connection failed
      // Out of descriptors while this listener holds connections that never authenticated: they are what
      // an attacker can pile up, so the oldest makes room (as at the caps) and accept() runs again at once,
      // rather than pausing every listener of the process until some deadline frees a descriptor.
      if (kind == base::AcceptError::descriptors && evict_for_descriptor()) continue;
      delay = backoff.failed(ec);
      evict_when_paused = kind == base::AcceptError::descriptors;
    } else {
      backoff.succeeded();
      boost::system::error_code peer_ec;
      const tcp::endpoint peer = socket.remote_endpoint(peer_ec);
      if (peer_ec) continue;  // already gone
      const asio::ip::address source = client_address(peer);
      if (!make_room(source)) {
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
      try {
        admit(std::move(socket), source);
      } catch (const std::bad_alloc& e) {
        // Out of memory: this connection is closed (nothing of it stays registered) and the listener backs
        // off as for ENOMEM instead of ending (a dead listener that readiness would not notice).
        delay = backoff.failed(make_error_code(boost::system::errc::not_enough_memory), e.what());
      } catch (const std::exception& e) {
        delay = backoff.failed(make_error_code(boost::system::errc::state_not_recoverable), e.what());
      }
    }
    while (delay.count() > 0) {
      pause.expires_after(delay);
      co_await pause.async_wait(nothrow);
      if (!acceptor.is_open()) co_return;
      // Paused for descriptors: an unauthenticated connection read meanwhile may be idle now.
      if (evict_when_paused) evict_for_descriptor();
      delay = backoff.after_wait();
    }
  }
}

void AdminServer::Impl::clamp_to_descriptor_limit() {
  rlimit files{};
  if (::getrlimit(RLIMIT_NOFILE, &files) != 0 || files.rlim_cur == RLIM_INFINITY) return;
  // Unauthenticated connections are what anyone who reaches the port can hold: a quarter of the process's
  // descriptors per listener, so the two control-plane listeners together leave half to etcd, the proxy and
  // authenticated clients. All connections of one listener: half.
  const size_t limit = static_cast<size_t>(files.rlim_cur);
  const size_t unauthenticated_cap = std::max<size_t>(1, limit / 4);
  const size_t connections_cap = std::max<size_t>(1, limit / 2);
  const AdminServerOptions before = options;
  options.max_unauthenticated = std::min(options.max_unauthenticated, unauthenticated_cap);
  options.max_unauthenticated_per_source =
      std::min(options.max_unauthenticated_per_source, options.max_unauthenticated);
  options.max_connections = std::min(options.max_connections, connections_cap);
  if (options.max_unauthenticated != before.max_unauthenticated ||
      options.max_unauthenticated_per_source != before.max_unauthenticated_per_source ||
      options.max_connections != before.max_connections) {
    PORTICO_LOG(warn,
                "%s: connection caps lowered to fit the descriptor limit (%zu): max_connections %zu -> %zu, "
                "unauthenticated %zu -> %zu, unauthenticated per source %zu -> %zu",
                name.c_str(), limit, before.max_connections, options.max_connections,
                before.max_unauthenticated, options.max_unauthenticated,
                before.max_unauthenticated_per_source, options.max_unauthenticated_per_source);
  }
}

AdminServer::AdminServer(AdminServerOptions options, AdminHandler handler)
    : impl_(std::make_unique<Impl>("listener " + options.listen + " (" + options.path_prefix + ")")) {
  impl_->options = std::move(options);
  impl_->handler = std::move(handler);
}

AdminServer::~AdminServer() {
  stop();
}

void AdminServer::listen() {
  Impl& s = *impl_;
  for (const std::string& text : s.options.allow_admin) {
    router::Cidr cidr;
    if (!router::Cidr::parse(text, cidr)) {
      throw std::runtime_error("--allow-admin: '" + text + "' is not an IP address or CIDR");
    }
    s.allowed.push_back(cidr);
  }
  if (s.options.keys.empty() && !s.options.tls.certificate_authenticates)
    throw std::runtime_error("no key configured for " + s.options.path_prefix);
  if (s.options.tls.certificate_authenticates && s.options.tls.client_ca_file.empty())
    throw std::runtime_error("listener " + s.options.listen + ": client certificates need a client CA");
  if (s.options.tls.enabled()) s.tls = s.build_tls();
  if (s.options.max_connections == 0 || s.options.max_unauthenticated == 0 ||
      s.options.max_unauthenticated_per_source == 0) {
    throw std::runtime_error("listener " + s.options.listen + ": connection limits must be at least 1");
  }
  s.clamp_to_descriptor_limit();
  s.keys = std::make_shared<const std::vector<AdminKey>>(s.options.keys);
  tcp::endpoint ep = base::parse_endpoint(s.options.listen);
  s.acceptor.open(ep.protocol());
  s.acceptor.set_option(asio::socket_base::reuse_address(true));
  s.acceptor.bind(ep);
  s.acceptor.listen(256);
}

void AdminServer::reload_tls() {
  if (!impl_->options.tls.enabled()) return;
  auto next = impl_->build_tls();
  std::lock_guard lock(impl_->keys_mu);
  impl_->tls = std::move(next);
}

bool AdminServer::set_keys(std::vector<AdminKey> keys) {
  if (keys.empty() && !impl_->options.tls.certificate_authenticates) return false;
  auto next = std::make_shared<const std::vector<AdminKey>>(std::move(keys));
  std::lock_guard lock(impl_->keys_mu);
  impl_->keys = std::move(next);
  return true;
}

void AdminServer::start() {
  impl_->pool = std::make_unique<asio::thread_pool>(std::max(1u, impl_->options.handler_threads));
  asio::co_spawn(impl_->context, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([this] { impl_->context.run(); });
}

void AdminServer::stop() {
  if (!impl_->thread.joinable()) return;
  asio::post(impl_->context, [this] {
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    impl_->backoff.stopped();
    impl_->context.stop();
  });
  impl_->thread.join();
  impl_->pool->join();
}

}  // namespace portico::admin
