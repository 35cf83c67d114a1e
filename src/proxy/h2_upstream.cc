#include "proxy/h2_upstream.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <cstring>

#include "base/log.h"
#include "base/time.h"

namespace portico::proxy {

namespace asio = boost::asio;
using asio::awaitable;
using namespace asio::experimental::awaitable_operators;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

namespace {
constexpr size_t kReadBuffer = 16 * 1024;  // one TLS record, HAProxy's buffer
constexpr unsigned char kAlpnH2[] = {2, 'h', '2'};
// A write stalled this long closes the connection when the route sets no send timeout (nginx's
// grpc_send_timeout default).
constexpr double kDefaultSendTimeout = 60;

using base::deadline_in;
}  // namespace

std::string h2_pool_key(std::string_view node_pool_key, const tls::ClientContext* tls, std::string_view sni) {
  std::string key(node_pool_key);
  key += "|h2";
  if (tls != nullptr) {
    key += "|tls:";
    key += std::to_string(tls->id());
    key += '|';
    key += sni;
  }
  return key;
}

// One multiplexed connection (see the header). Worker thread only.
class H2UpstreamConnection : public std::enable_shared_from_this<H2UpstreamConnection> {
 public:
  H2UpstreamConnection(H2UpstreamPool* pool, std::string key, std::unique_ptr<UpstreamConnection> transport,
                       double idle_timeout, double send_timeout, const asio::any_io_executor& executor)
      : pool_(pool),
        key_(std::move(key)),
        transport_(std::move(transport)),
        idle_timeout_(idle_timeout),
        send_timeout_(send_timeout > 0 ? send_timeout : kDefaultSendTimeout),
        idle_timer_(executor),
        stall_timer_(executor),
        ready_(executor, Clock::time_point::max()),
        executor_(executor) {}

  void start() {
    asio::co_spawn(
        executor_, [self = shared_from_this()] { return self->read_loop(); }, asio::detached);
    flush();  // the preface and SETTINGS
  }

  bool has_room() const {
    return !closed_ && !closing_ && codec_.alive() && !codec_.goaway_received() &&
           codec_.open_streams() < codec_.peer_max_streams();
  }
  bool closed() const { return closed_; }
  const std::string& key() const { return key_; }
  bool ready() const { return !closed_ && codec_.settings_received(); }

  // Until the node's SETTINGS arrived (true), the connection closed or `deadline` passed (false; `timed_out`
  // tells which). A node that accepts and says nothing must not hold calls past the connect timeout.
  awaitable<bool> wait_ready(Clock::time_point deadline, bool& timed_out) {
    auto self = shared_from_this();
    asio::steady_timer timer(executor_, deadline);
    timed_out = false;
    while (!ready() && !closed_) {
      auto r = co_await (ready_.async_wait(nothrow) || timer.async_wait(nothrow));
      if (r.index() == 1) {
        timed_out = !ready() && !closed_;
        break;
      }
    }
    co_return ready();
  }

  // A stream could not be placed after all: the connection may be idle.
  void unused() {
    if (streams_.empty()) on_idle();
  }

  int32_t submit(const http2::Fields& head, bool end_stream) {
    idle_timer_.cancel();
    return codec_.submit_request(head, end_stream);
  }
  void attach(int32_t id, H2UpstreamStream* stream) { streams_[id] = stream; }
  void detach(int32_t id) {
    streams_.erase(id);
    codec_.forget(id);  // RST_STREAM CANCEL when still open; its unread DATA's window is given back
    flush();
    if (streams_.empty()) on_idle();
  }

  // Writes what the codec has to say, from one write coroutine at a time.
  void flush() {
    if (writing_ || closed_) return;
    if (!codec_.want_output()) {
      maybe_close();
      return;
    }
    writing_ = true;
    asio::co_spawn(
        executor_, [self = shared_from_this()] { return self->write_loop(); }, asio::detached);
  }

  // Graceful: GOAWAY, then close once the streams are done.
  void go_away() {
    if (closed_) return;
    auto self = shared_from_this();
    closing_ = true;
    if (pool_ != nullptr) pool_->remove(this);
    codec_.shutdown();
    flush();
  }

  // The transport is finished (error, EOF, abort): every open stream fails.
  void close_transport(uint32_t error_code) {
    if (closed_) return;
    auto self = shared_from_this();  // the pool's reference may be the last one
    closed_ = true;
    codec_.transport_closed(error_code);
    boost::system::error_code ec;
    idle_timer_.cancel();
    stall_timer_.cancel();
    ready_.cancel();
    transport_->socket.close(ec);
    if (pool_ != nullptr) pool_->remove(this);
    pool_ = nullptr;  // forgotten by the pool: a closed connection never reaches it again
    dispatch();
  }

  void detach_pool() { pool_ = nullptr; }

  http2::ClientCodec codec_;

 private:
  awaitable<void> read_loop() {
    auto self = shared_from_this();
    std::vector<char> buffer(kReadBuffer);
    while (!closed_) {
      auto b = asio::buffer(buffer);
      auto [ec, n] = transport_->tls ? co_await transport_->tls->async_read_some(b, nothrow)
                                     : co_await transport_->socket.async_read_some(b, nothrow);
      if (closed_) break;
      if (ec) {
        if (ec != asio::error::eof && ec != asio::error::operation_aborted && !closing_) {
          PORTICO_LOG(debug, "h2 upstream %s: read failed: %s", key_.c_str(), ec.message().c_str());
        }
        close_transport(http2::kInternalError);
        break;
      }
      const bool ok = codec_.feed(buffer.data(), n);
      if (codec_.settings_received()) ready_.cancel();  // wakes open()s waiting for the node's SETTINGS
      // A TLS 1.3 ticket arrives after the handshake: keep the newest resumable session (a no-op when
      // unchanged).
      if (transport_->tls && pool_ != nullptr) pool_->sessions_.store(key_, transport_->tls->native_handle());
      dispatch();
      flush();
      if (!ok) {
        PORTICO_LOG(debug, "h2 upstream %s: connection error %u", key_.c_str(), codec_.connection_error());
        break;  // the GOAWAY goes out (flush), then maybe_close closes
      }
    }
  }

  awaitable<void> write_loop() {
    auto self = shared_from_this();
    while (!closed_) {
      out_.clear();
      if (!codec_.take_output(out_)) break;
      dispatch();  // bodies framed into DATA: writers held back by kSendHighWater go on
      auto b = asio::buffer(out_);
      // A node that stops reading (full socket buffers) must not hold the connection forever: the streams
      // on it have their own deadlines, but a GOAWAY or RST_STREAM queued behind the stalled bytes has none.
      stall_timer_.expires_at(deadline_in(send_timeout_));
      auto written = transport_->tls ? co_await (asio::async_write(*transport_->tls, b, nothrow) ||
                                                 stall_timer_.async_wait(nothrow))
                                     : co_await (asio::async_write(transport_->socket, b, nothrow) ||
                                                 stall_timer_.async_wait(nothrow));
      if (written.index() == 1) {
        PORTICO_LOG(debug, "h2 upstream %s: write stalled for %gs", key_.c_str(), send_timeout_);
        writing_ = false;
        close_transport(http2::kInternalError);
        co_return;
      }
      if (auto [ec, n] = std::get<0>(written); ec) {
        writing_ = false;
        close_transport(http2::kInternalError);
        co_return;
      }
    }
    writing_ = false;
    maybe_close();
  }

  void maybe_close() {
    if (closed_ || writing_) return;
    if (!codec_.alive() || (closing_ && streams_.empty())) close_transport(codec_.connection_error());
  }

  // Wakes the streams whose state changed; a connection the node is draining takes no new streams.
  void dispatch() {
    for (int32_t id : codec_.take_changed()) {
      if (auto it = streams_.find(id); it != streams_.end()) it->second->wake();
    }
    if ((codec_.goaway_received() || !codec_.alive()) && pool_ != nullptr) pool_->remove(this);
  }

  void on_idle() {
    if (closing_ || closed_ || codec_.goaway_received()) {
      maybe_close();
      if (codec_.goaway_received() && !closed_) go_away();
      return;
    }
    if (idle_timeout_ <= 0) {
      go_away();
      return;
    }
    idle_timer_.expires_at(deadline_in(idle_timeout_));
    idle_timer_.async_wait([weak = weak_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      if (auto self = weak.lock(); self && self->streams_.empty()) self->go_away();
    });
  }

  H2UpstreamPool* pool_;
  std::string key_;
  std::unique_ptr<UpstreamConnection> transport_;
  double idle_timeout_;
  double send_timeout_;
  asio::steady_timer idle_timer_;
  asio::steady_timer stall_timer_;
  asio::steady_timer ready_;  // a condition: cancelled when the SETTINGS arrive or the connection closes
  asio::any_io_executor executor_;
  std::unordered_map<int32_t, H2UpstreamStream*> streams_;
  std::string out_;
  bool writing_ = false;
  bool closing_ = false;
  bool closed_ = false;
};

// --- H2UpstreamStream ---

H2UpstreamStream::H2UpstreamStream(std::shared_ptr<H2UpstreamConnection> conn, int32_t id,
                                   const asio::any_io_executor& executor)
    : conn_(std::move(conn)),
      id_(id),
      state_(conn_->codec_.stream(id)),
      wake_(executor),
      send_wake_(executor) {}

H2UpstreamStream::~H2UpstreamStream() {
  if (conn_) conn_->detach(id_);
}

awaitable<H2UpstreamStream::Wait> H2UpstreamStream::wait(asio::steady_timer& timer,
                                                         Clock::time_point deadline) {
  if (interrupted_) co_return Wait::interrupted;
  timer.expires_at(deadline);
  auto [ec] = co_await timer.async_wait(nothrow);
  if (interrupted_) co_return Wait::interrupted;
  co_return ec ? Wait::ready : Wait::timeout;  // cancelled: woken by the connection
}

void H2UpstreamStream::interrupt() {
  interrupted_ = true;
  wake();
}

awaitable<bool> H2UpstreamStream::write(std::string_view data, Clock::time_point deadline) {
  while (state_->out_pending() >= kSendHighWater) {
    if (state_->closed || conn_->closed()) co_return false;
    if (co_await wait(send_wake_, deadline) != Wait::ready) co_return false;
  }
  if (state_->closed || conn_->closed()) co_return false;
  const bool ok = conn_->codec_.send_data(id_, data);
  conn_->flush();
  co_return ok;
}

bool H2UpstreamStream::finish(const http2::Fields& trailers) {
  const bool ok = conn_->codec_.end_stream(id_, trailers);
  conn_->flush();
  return ok;
}

void H2UpstreamStream::reset(uint32_t code) {
  conn_->codec_.reset(id_, code);
  conn_->flush();
}

awaitable<H2UpstreamStream::Wait> H2UpstreamStream::wait_head(Clock::time_point deadline) {
  while (true) {
    if (state_->head_ready) co_return Wait::ready;
    if (state_->closed) co_return Wait::closed;
    if (Wait w = co_await wait(wake_, deadline); w != Wait::ready) co_return w;
  }
}

awaitable<H2UpstreamStream::Wait> H2UpstreamStream::wait_data(Clock::time_point deadline) {
  while (true) {
    if (!state_->data.empty() || state_->remote_ended) co_return Wait::ready;
    if (state_->closed) co_return Wait::closed;
    if (Wait w = co_await wait(wake_, deadline); w != Wait::ready) co_return w;
  }
}

void H2UpstreamStream::consume(size_t n) {
  conn_->codec_.consume(id_, n);
  conn_->flush();  // the WINDOW_UPDATE
}

// --- H2UpstreamPool ---

H2UpstreamPool::~H2UpstreamPool() {
  close_all(true);
}

void H2UpstreamPool::remove(H2UpstreamConnection* conn) {
  std::shared_ptr<H2UpstreamConnection> keep;
  if (auto it = conns_.find(conn->key()); it != conns_.end()) {
    auto& list = it->second;
    for (size_t i = 0; i < list.size(); ++i) {
      if (list[i].get() == conn) {
        keep = std::move(list[i]);
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
        break;
      }
    }
    if (list.empty()) conns_.erase(it);
  }
  if (conn->closed()) {
    std::erase_if(draining_, [conn](const auto& c) { return c.get() == conn; });
  } else if (keep) {
    draining_.push_back(std::move(keep));
  }
}

void H2UpstreamPool::close_all(bool now) {
  auto all = std::move(conns_);
  conns_.clear();
  for (auto& [key, list] : all) {
    for (auto& conn : list) {
      if (now) {
        conn->detach_pool();
        conn->close_transport(http2::kCancel);
      } else {
        draining_.push_back(conn);  // until it closes (remove)
        conn->go_away();
      }
    }
  }
  if (!now) return;
  auto draining = std::move(draining_);
  draining_.clear();
  for (auto& conn : draining) {
    conn->detach_pool();
    conn->close_transport(http2::kCancel);
  }
}

size_t H2UpstreamPool::connections() const {
  size_t n = 0;
  for (const auto& [key, list] : conns_) n += list.size();
  return n;
}

size_t H2UpstreamPool::connections_for(const std::string& key) const {
  auto it = conns_.find(key);
  return it == conns_.end() ? 0 : it->second.size();
}

awaitable<std::shared_ptr<H2UpstreamConnection>> H2UpstreamPool::connect(const H2Target& t,
                                                                         H2OpenError& error) {
  if (t.tls_required && !t.tls) {
    error = H2OpenError::connect;  // its material did not load (logged at build): never h2c instead
    co_return nullptr;
  }
  auto transport = std::make_unique<UpstreamConnection>(asio::ip::tcp::socket(executor_));
  asio::steady_timer timer(executor_);
  timer.expires_at(deadline_in(t.connect_timeout));
  auto connected =
      co_await (transport->socket.async_connect(t.endpoint, nothrow) || timer.async_wait(nothrow));
  if (connected.index() == 1) {
    error = H2OpenError::connect_timeout;
    co_return nullptr;
  }
  if (auto [ec] = std::get<0>(connected); ec) {
    error = H2OpenError::connect;
    co_return nullptr;
  }
  boost::system::error_code ec;
  transport->socket.set_option(asio::ip::tcp::no_delay(true), ec);
  if (t.tls) {
    transport->tls_context = t.tls;
    transport->tls =
        std::make_unique<asio::ssl::stream<asio::ip::tcp::socket&>>(transport->socket, t.tls->asio());
    SSL* ssl = transport->tls->native_handle();
    if (!t.tls->prepare(ssl, t.sni, sessions_.find(t.key))) {
      error = t.tls->verify() && t.sni.empty() ? H2OpenError::tls_verify : H2OpenError::connect;
      co_return nullptr;
    }
    // ALPN per connection: the shared context offers http/1.1 for scheme https.
    SSL_set_alpn_protos(ssl, kAlpnH2, sizeof kAlpnH2);
    auto shaken = co_await (transport->tls->async_handshake(asio::ssl::stream_base::client, nothrow) ||
                            timer.async_wait(nothrow));
    if (shaken.index() == 1) {
      sessions_.erase(t.key);
      error = H2OpenError::connect_timeout;
      co_return nullptr;
    }
    if (auto [hec] = std::get<0>(shaken); hec) {
      sessions_.erase(t.key);
      const long verify = SSL_get_verify_result(ssl);
      error = verify != X509_V_OK ? H2OpenError::tls_verify : H2OpenError::connect;
      if (verify != X509_V_OK) {
        static thread_local ::portico::log::Throttle throttle;
        uint64_t suppressed = 0;
        if (throttle.due(suppressed)) {
          PORTICO_LOG(warn,
                      "h2 upstream %s: certificate verification for \"%s\" failed: %s (%llu similar failures "
                      "not logged)",
                      t.key.c_str(), t.sni.c_str(), X509_verify_cert_error_string(verify),
                      static_cast<unsigned long long>(suppressed));
        }
      }
      co_return nullptr;
    }
    const unsigned char* alpn = nullptr;
    unsigned int alpn_len = 0;
    SSL_get0_alpn_selected(ssl, &alpn, &alpn_len);
    if (alpn_len != 2 || std::memcmp(alpn, "h2", 2) != 0) {
      PORTICO_LOG(warn, "h2 upstream %s: the node did not select ALPN \"h2\"", t.key.c_str());
      error = H2OpenError::no_h2;
      co_return nullptr;
    }
    sessions_.store(t.key, ssl);
  }
  auto conn = std::make_shared<H2UpstreamConnection>(this, t.key, std::move(transport), t.idle_timeout,
                                                     t.send_timeout, executor_);
  conns_[t.key].push_back(conn);
  conn->start();
  co_return conn;
}

std::shared_ptr<H2UpstreamConnection> H2UpstreamPool::find_room(const std::string& key) const {
  if (auto it = conns_.find(key); it != conns_.end()) {
    for (const auto& c : it->second) {
      if (c->has_room()) return c;
    }
  }
  return nullptr;
}

awaitable<std::unique_ptr<H2UpstreamStream>> H2UpstreamPool::open(const H2Target& t,
                                                                  const http2::Fields& head, bool end_stream,
                                                                  H2OpenError& error) {
  error = H2OpenError::none;
  const Clock::time_point deadline = deadline_in(t.connect_timeout);
  std::shared_ptr<H2UpstreamConnection> conn;
  // A connection joined before its SETTINGS may turn out to have no room for this stream (a node allowing
  // one stream): look again, a bounded number of times.
  for (size_t round = 0; round <= kMaxConnectionsPerKey && !conn; ++round) {
    conn = find_room(t.key);
    if (!conn) {
      if (auto found = connecting_.find(t.key); found != connecting_.end()) {
        // Join the connect in progress (bounded by its own connect timeout, the same as this call's).
        const std::shared_ptr<PendingConnect> pending = found->second;
        co_await pending->done.async_wait(nothrow);
        if (!pending->ok) {
          error = pending->error;
          co_return nullptr;
        }
        if (Clock::now() >= deadline) {
          error = H2OpenError::connect_timeout;
          co_return nullptr;
        }
        continue;  // its connection is in the pool now (ready or awaiting SETTINGS): look again
      }
      if (connections_for(t.key) >= kMaxConnectionsPerKey) {
        error = H2OpenError::busy;
        co_return nullptr;
      }
      const auto pending = std::make_shared<PendingConnect>(executor_);
      connecting_[t.key] = pending;
      conn = co_await connect(t, error);
      pending->ok = conn != nullptr;
      pending->error = error;
      if (auto it = connecting_.find(t.key); it != connecting_.end() && it->second == pending)
        connecting_.erase(it);
      pending->done.cancel();
      if (!conn) co_return nullptr;
    }
    if (!conn->ready()) {
      bool timed_out = false;
      if (!co_await conn->wait_ready(deadline, timed_out)) {
        if (timed_out) conn->close_transport(http2::kCancel);  // silent node: no one else waits on it
        error = timed_out ? H2OpenError::connect_timeout : H2OpenError::connect;
        co_return nullptr;
      }
      if (!conn->has_room()) conn.reset();
    }
  }
  if (!conn) {
    error = H2OpenError::busy;
    co_return nullptr;
  }
  const int32_t id = conn->submit(head, end_stream);
  if (id < 0) {
    error = H2OpenError::refused;
    conn->unused();  // a fresh connection still gets its idle timer
    co_return nullptr;
  }
  std::unique_ptr<H2UpstreamStream> stream(new H2UpstreamStream(conn, id, executor_));
  conn->attach(id, stream.get());
  conn->flush();
  co_return stream;
}

}  // namespace portico::proxy
