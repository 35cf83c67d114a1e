// HTTP/2 to upstream nodes (scheme grpc and grpcs, docs/grpc.md): a per-worker pool of multiplexed
// connections, and the awaitable stream API the session's request path uses.
//
// H2UpstreamPool is owned by one Worker and used only on its thread (no locks). Connections are kept per key
// (node + TLS context + SNI, as UpstreamPool's https key, with an "|h2" mark so the two pools never share a
// TLS session), each carrying up to the node's SETTINGS_MAX_CONCURRENT_STREAMS streams; a request that finds
// every connection of its key full (or going away) opens another. A connection with no stream for the
// upstream's keepalive idle_timeout is closed (GOAWAY, then close). A GOAWAY from the node drains its
// connection: open streams finish, new ones go elsewhere. A connection error (read/write failure, protocol
// error) fails every stream on it.
//
// Each connection runs one read coroutine (bytes -> http2::ClientCodec -> wake the streams that changed) and,
// while it has output, one write coroutine. An H2UpstreamStream belongs to one session's coroutine; its waits
// are woken by the connection (a timer used as a condition: cancel() is the signal, expiry the deadline). The
// stream keeps its connection alive; destroying the stream forgets it in the codec (RST_STREAM CANCEL if it
// is still open). A stream has two waiters at most, one per direction (write() on send_wake_, the head and
// DATA waits on wake_), so a bidirectional call may send and receive at the same time (session_grpc.cc's
// body pump); the connection's wake reaches both. Every write races a send-stall timer
// (H2Target::send_timeout): a node that stops reading loses the connection instead of pinning it. The pool
// knows every connection not yet closed (open or draining); close_all(true), which its destructor runs,
// detaches them all, so a connection outliving the pool (in a coroutine frame the io_context destroys later)
// never reaches it.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "http2/client_codec.h"
#include "proxy/upstream_pool.h"
#include "tls/client_context.h"

namespace portico::proxy {

class H2UpstreamConnection;

// Why no stream could be opened.
enum class H2OpenError : uint8_t {
  none,
  connect,          // refused, unreachable, reset during the handshake, or the TLS material did not load
  connect_timeout,  // TCP connect + TLS handshake + the node's SETTINGS took longer than connect_timeout
  tls_verify,       // the node's certificate did not verify (a configuration problem, not a node failure)
  no_h2,            // TLS without ALPN "h2": the node does not speak HTTP/2 over TLS
  refused,          // the codec refused the request (invalid fields)
  busy,             // kMaxConnectionsPerKey connections, none with room: nothing reached the node
};

struct H2Target {
  std::string key;  // pool key (h2_pool_key)
  boost::asio::ip::tcp::endpoint endpoint;
  std::shared_ptr<const tls::ClientContext> tls;  // grpcs; null for grpc (h2c with prior knowledge)
  bool tls_required = false;                      // grpcs: a null `tls` (material did not load) fails
  std::string sni;                                // grpcs: SNI and the name verified
  double connect_timeout = 60;
  double idle_timeout = 60;  // keepalive_pool.idle_timeout: a connection without streams closes after it
  // The route's timeout.send: a write to the node that makes no progress for this long closes the
  // connection (a node that stops reading would otherwise hold it, and its socket, forever).
  double send_timeout = 60;
};

// "ip:port|h2" or "ip:port|h2|tls:<context id>|<sni>".
std::string h2_pool_key(std::string_view node_pool_key, const tls::ClientContext* tls, std::string_view sni);

class H2UpstreamStream {
 public:
  ~H2UpstreamStream();
  H2UpstreamStream(const H2UpstreamStream&) = delete;
  H2UpstreamStream& operator=(const H2UpstreamStream&) = delete;

  enum class Wait : uint8_t { ready, closed, timeout, interrupted };

  int32_t id() const { return id_; }
  // The codec's view of the exchange: head, buffered DATA, trailers, close and error code.
  const http2::ClientStream& state() const { return *state_; }

  // Queues body bytes; waits first while kSendHighWater bytes are still unframed (flow control or a slow
  // node). False when the stream or its connection is gone, or on the deadline / interrupt.
  boost::asio::awaitable<bool> write(std::string_view data, Clock::time_point deadline);
  // Ends the request body (with trailers when not empty). False if the stream is gone.
  bool finish(const http2::Fields& trailers = {});
  // RST_STREAM `code` (CANCEL: the client went away, a deadline passed).
  void reset(uint32_t code = http2::kCancel);

  // Until the final response head arrives (ready), the stream closes first (closed), or `deadline`.
  boost::asio::awaitable<Wait> wait_head(Clock::time_point deadline);
  // Until DATA is buffered, the response ends (trailers or END_STREAM) or the stream closes, or `deadline`.
  // ready: state().data holds bytes, or state().remote_ended.
  boost::asio::awaitable<Wait> wait_data(Clock::time_point deadline);
  // The caller took `n` bytes of state().data: the node may send as much more.
  void consume(size_t n);
  // Wakes a pending wait with `interrupted` (the client side went away); later waits return it at once.
  void interrupt();

  static constexpr size_t kSendHighWater = 64 * 1024;

 private:
  friend class H2UpstreamConnection;
  friend class H2UpstreamPool;
  H2UpstreamStream(std::shared_ptr<H2UpstreamConnection> conn, int32_t id,
                   const boost::asio::any_io_executor& executor);
  boost::asio::awaitable<Wait> wait(boost::asio::steady_timer& timer, Clock::time_point deadline);
  void wake() {
    wake_.cancel();
    send_wake_.cancel();
  }

  std::shared_ptr<H2UpstreamConnection> conn_;
  int32_t id_;
  const http2::ClientStream* state_;
  boost::asio::steady_timer wake_;       // the response waits (wait_head, wait_data)
  boost::asio::steady_timer send_wake_;  // write(): a timer per waiter, since setting the expiry of one
                                         // cancels every wait on it
  bool interrupted_ = false;
};

class H2UpstreamPool {
 public:
  // Connections per key, connecting ones included: a burst, or a node announcing
  // SETTINGS_MAX_CONCURRENT_STREAMS 0 or 1, gets no more (the call fails UNAVAILABLE) instead of one
  // connection per call (Envoy's per-host max_connections plays this part).
  static constexpr size_t kMaxConnectionsPerKey = 16;

  explicit H2UpstreamPool(boost::asio::any_io_executor executor) : executor_(std::move(executor)) {}
  ~H2UpstreamPool();

  // A stream carrying a request with `head` (pseudo-headers first, names lower case) on a connection of
  // target.key with room, or on a new one (connect, TLS with ALPN h2, preface, and the node's SETTINGS)
  // bounded by connect_timeout. A connection whose SETTINGS have not arrived yet is joined (its waiters
  // submit once they do).
  // `end_stream`: the request has no body. Null with `error` set when none could be opened.
  boost::asio::awaitable<std::unique_ptr<H2UpstreamStream>> open(const H2Target& target,
                                                                 const http2::Fields& head, bool end_stream,
                                                                 H2OpenError& error);

  // Drain: GOAWAY on every connection; each closes once its streams are done. `now`: close them at once,
  // the draining ones too, and forget them (they never reach the pool again).
  void close_all(bool now);

  size_t connections() const;
  size_t connections_for(const std::string& key) const;
  tls::ClientSessionCache& sessions() { return sessions_; }

 private:
  friend class H2UpstreamConnection;
  boost::asio::awaitable<std::shared_ptr<H2UpstreamConnection>> connect(const H2Target& target,
                                                                        H2OpenError& error);
  // Takes `conn` out of the list new streams are placed on; a connection not yet closed is kept in draining_
  // until it is.
  void remove(H2UpstreamConnection* conn);

  std::shared_ptr<H2UpstreamConnection> find_room(const std::string& key) const;

  boost::asio::any_io_executor executor_;
  std::unordered_map<std::string, std::vector<std::shared_ptr<H2UpstreamConnection>>> conns_;
  // A connect in progress (TCP, TLS) for a key. Calls that find no room while one runs wait for it instead of
  // opening their own: a burst of calls to a cold node shares one connection (the node's SETTINGS then say
  // how many streams it takes), rather than opening one each until the per-key cap refuses the rest.
  struct PendingConnect {
    explicit PendingConnect(const boost::asio::any_io_executor& executor) : done(executor) {
      done.expires_at(boost::asio::steady_timer::time_point::max());
    }
    boost::asio::steady_timer done;  // cancelled when the connect ends
    bool ok = false;
    H2OpenError error = H2OpenError::none;
  };
  std::unordered_map<std::string, std::shared_ptr<PendingConnect>> connecting_;
  // Going away (GOAWAY sent or received) and not closed yet: tracked so that close_all(true) and the
  // destructor reach every connection that still points at the pool.
  std::vector<std::shared_ptr<H2UpstreamConnection>> draining_;
  tls::ClientSessionCache sessions_;
};

}  // namespace portico::proxy
