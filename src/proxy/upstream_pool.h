// Keep-alive connections to upstream nodes, owned by one worker (no locks). Idle connections are kept per
// node ("ip:port" pool key), most recently used first. A connection that stays idle past one sweep is
// watched for readability: if it becomes readable the origin closed it (or spoke out of turn) and it is
// dropped at once, so a request is rarely sent into a connection the origin has already closed. Connections
// reused right away are not watched: arming a watch costs an epoll_ctl, and a request that does hit a
// just-closed connection is retried once on a new one by the session.
//
// TLS connections (scheme https) are pooled the same way, under a key that also names the client context and
// the SNI they were made with ("ip:port|tls:<context id>|<sni>"), so a connection is only ever reused for the
// identity it was verified for. Since the SNI may come from clients (pass_host pass), the cap applies per
// node across all its keys, as nginx's keepalive cache: a check-in beyond it closes the node's oldest idle
// connection, whatever its SNI. The pool also keeps the worker's TLS session cache, for new connections.
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "tls/client_context.h"

namespace portico::proxy {

using Clock = std::chrono::steady_clock;

struct UpstreamConnection {
  boost::asio::ip::tcp::socket socket;
  // scheme https: the context the TLS layer was made with (kept alive as long as the layer) and the layer
  // over `socket`; both null for plain HTTP. Closing `socket` aborts pending TLS operations too.
  std::shared_ptr<const tls::ClientContext> tls_context;
  std::unique_ptr<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls;
  uint32_t requests = 0;  // requests already sent on this connection
  explicit UpstreamConnection(boost::asio::ip::tcp::socket s) : socket(std::move(s)) {}
  ~UpstreamConnection() {
    // Only a connection still in good standing: after a fatal alert (sent or received) or a failed
    // handshake OpenSSL is in its error state and the session must not be offered again.
    if (tls && SSL_is_init_finished(tls->native_handle())) tls::keep_session_resumable(tls->native_handle());
  }
};

class UpstreamPool {
 public:
  explicit UpstreamPool(boost::asio::any_io_executor executor) : executor_(std::move(executor)) {}

  // An idle connection to `key` whose idle time has not run out at `now`, or null.
  std::unique_ptr<UpstreamConnection> checkout(const std::string& key, Clock::time_point now = Clock::now());

  // Returns a connection after a complete exchange, to be kept `idle_timeout` seconds. If the node of `key`
  // (its part before '|') already holds `max_idle` idle connections under all its keys, the oldest of them
  // is closed to make room. `now`: the caller's clock reading, when it has one at hand.
  void checkin(const std::string& key, std::unique_ptr<UpstreamConnection> conn, size_t max_idle,
               double idle_timeout, Clock::time_point now = Clock::now());

  // Periodic sweep: closes connections whose idle time ran out (or every idle connection when `all`) and
  // starts watching those idle since the previous sweep.
  void sweep(bool all = false);

  // Idle connections held for the node of `key` (all its keys), and in total.
  size_t idle_for_node(const std::string& key) const;
  size_t idle_total() const;

  // The worker's TLS sessions by pool key, to resume on new connections.
  tls::ClientSessionCache& sessions() { return sessions_; }

 private:
  struct Idle {
    std::unique_ptr<UpstreamConnection> conn;
    Clock::time_point expires;
    uint64_t id;
    bool watched;
  };
  // Per node: how many idle connections it has, and its check-ins oldest first (entries whose connection
  // has left the pool are skipped lazily, and compacted away when they outnumber the live ones).
  struct NodeIdle {
    size_t count = 0;
    std::deque<std::pair<std::string, uint64_t>> order;
  };
  static std::string_view node_of(const std::string& key);
  void watch(const std::string& key, uint64_t id, UpstreamConnection* conn);
  bool drop(const std::string& key, uint64_t id);
  void forget(const std::string& key);  // one idle connection of `key` left the pool
  bool holds(const std::string& key, uint64_t id) const;

  boost::asio::any_io_executor executor_;
  std::unordered_map<std::string, std::vector<Idle>> idle_;
  std::unordered_map<std::string, NodeIdle> nodes_;
  uint64_t next_id_ = 1;
  tls::ClientSessionCache sessions_;
};

}  // namespace portico::proxy
