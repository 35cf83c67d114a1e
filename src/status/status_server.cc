#include "status/status_server.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <exception>
#include <memory>
#include <new>
#include <thread>

#include "base/accept_backoff.h"
#include "base/endpoint.h"
#include "base/socket_watchdog.h"
#include "http/parser.h"

namespace portico::status {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

struct StatusServer::Impl {
  StatusHandlers handlers;
  asio::io_context context{1};
  tcp::acceptor acceptor{context};
  base::AcceptBackoff backoff{"status listener"};
  base::ReserveDescriptor reserve;
  std::thread thread;

  awaitable<void> serve(tcp::socket socket);
  awaitable<void> accept_loop();
  std::string respond(const http::RequestHead& req);
};

namespace {
std::string make_response(int status, std::string_view content_type, const std::string& body, bool head) {
  std::string out =
      "HTTP/1.1 " + std::to_string(status) + " " + std::string(http::reason_phrase(status)) +
      "\r\nContent-Type: " + std::string(content_type) +
      "\r\nCache-Control: no-store\r\nConnection: close\r\nContent-Length: " + std::to_string(body.size()) +
      "\r\n\r\n";
  if (!head) out += body;
  return out;
}
}  // namespace

std::string StatusServer::Impl::respond(const http::RequestHead& req) {
  bool head = req.method == http::Method::HEAD;
  if (req.method != http::Method::GET && !head) {
    return make_response(405, "text/plain", "method not allowed\n", head);
  }
  std::string_view path = req.path;
  if (path == "/healthz") return make_response(200, "text/plain", "ok\n", head);
  if (path == "/readyz") {
    std::string reason;
    if (handlers.ready(reason)) return make_response(200, "text/plain", "ready\n", head);
    return make_response(503, "text/plain", "not ready: " + reason + "\n", head);
  }
  if (path == "/metrics") return make_response(200, "text/plain; version=0.0.4", handlers.metrics(), head);
  if (path == "/status/config") return make_response(200, "application/json", handlers.config_json(), head);
  return make_response(404, "text/plain", "not found\n", head);
}

awaitable<void> StatusServer::Impl::serve(tcp::socket socket) {
  std::string buf(16 * 1024, '\0');
  size_t len = 0;
  http::ParseLimits limits;
  limits.max_head_size = buf.size();
  http::RequestHead req;
  base::SocketWatchdog deadline(context, socket);
  deadline.arm(10);  // a client that never finishes its request
  while (len < buf.size()) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(buf.data() + len, buf.size() - len), nothrow);
    if (ec || n == 0) co_return;
    len += n;
    http::ParseResult r = http::parse_request(buf.data(), len, limits, req);
    if (r.status == http::ParseStatus::incomplete) continue;
    std::string out =
        r.status == http::ParseStatus::error
            ? make_response(r.error_status, "text/plain", std::string(r.error_reason) + "\n", false)
            : respond(req);
    co_await asio::async_write(socket, asio::buffer(out), nothrow);
    break;
  }
  boost::system::error_code ec;
  socket.shutdown(tcp::socket::shutdown_send, ec);
}

awaitable<void> StatusServer::Impl::accept_loop() {
  asio::steady_timer pause(context);
  while (acceptor.is_open()) {
    auto [ec, socket] = co_await acceptor.async_accept(nothrow);
    std::chrono::milliseconds delay{0};
    if (ec) {
      if (!acceptor.is_open()) co_return;
      const base::AcceptError kind = base::classify_accept_error(ec);
      if (kind == base::AcceptError::connection) continue;  // that one connection failed
      // Out of descriptors: the spare lets the connection waiting now be accepted and answered.
      if (kind == base::AcceptError::descriptors && reserve.release()) continue;
      delay = backoff.failed(ec);
    } else {
      backoff.succeeded();
      try {
        // Each closed connection gives back a descriptor: take the spare again if it was spent.
        asio::co_spawn(context, serve(std::move(socket)), [this](std::exception_ptr) { reserve.restore(); });
      } catch (const std::bad_alloc&) {
        // The connection is dropped; the listener lives on, backing off as for ENOMEM.
        delay = backoff.failed(make_error_code(boost::system::errc::not_enough_memory));
      }
    }
    if (delay.count() > 0) {
      while (delay.count() > 0) {
        pause.expires_after(delay);
        co_await pause.async_wait(nothrow);
        if (!acceptor.is_open()) co_return;
        delay = backoff.after_wait();
      }
      reserve.restore();
    }
  }
}

StatusServer::StatusServer(StatusHandlers handlers) : impl_(std::make_unique<Impl>()) {
  impl_->handlers = std::move(handlers);
}

StatusServer::~StatusServer() {
  stop();
}

void StatusServer::listen(const std::string& address) {
  tcp::endpoint ep = base::parse_endpoint(address);
  impl_->acceptor.open(ep.protocol());
  impl_->acceptor.set_option(asio::socket_base::reuse_address(true));
  impl_->acceptor.bind(ep);
  impl_->acceptor.listen(256);
}

void StatusServer::start() {
  asio::co_spawn(impl_->context, impl_->accept_loop(), asio::detached);
  impl_->thread = std::thread([this] { impl_->context.run(); });
}

void StatusServer::stop() {
  if (!impl_->thread.joinable()) return;
  asio::post(impl_->context, [this] {
    boost::system::error_code ec;
    impl_->acceptor.close(ec);
    impl_->backoff.stopped();
    impl_->context.stop();
  });
  impl_->thread.join();
}

}  // namespace portico::status
