#include "proxy/worker.h"

#include <boost/asio/post.hpp>

#include "base/log.h"
#include "proxy/accept_socket.h"
#include "proxy/recycling.h"
#include "proxy/session.h"

namespace portico::proxy {

namespace asio = boost::asio;

namespace {
constexpr auto kTick = std::chrono::milliseconds(200);
}

Worker::Worker(size_t index, const Options& options, status::Metrics& metrics, int access_log_fd)
    : index_(index),
      options_(options),
      metrics_(metrics.worker(index)),
      // Only this worker's thread touches its sockets; other threads merely post to it.
      context_(BOOST_ASIO_CONCURRENCY_HINT_UNSAFE_IO),
      plain_(context_, "worker " + std::to_string(index)),
      tick_timer_(context_),
      pool_(context_.get_executor()),
      h2_pool_(context_.get_executor()),
      access_log_(access_log_fd) {}

Worker::~Worker() {
  join();
  draining_ = false;  // sessions destroyed with the context below must not run the drain bookkeeping
}

void Worker::bind(asio::ip::tcp::acceptor& acceptor, const asio::ip::tcp::endpoint& endpoint) {
  acceptor.open(endpoint.protocol());
  acceptor.set_option(asio::socket_base::reuse_address(true));
  int one = 1;
  if (::setsockopt(acceptor.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
  }
  acceptor.bind(endpoint);
  acceptor.listen(4096);
  acceptor.non_blocking(true);  // accept_next accepts only after a wait, and never blocks the worker
}

void Worker::listen(const asio::ip::tcp::endpoint& endpoint) {
  bind(plain_.acceptor, endpoint);
}

void Worker::listen_tls(const asio::ip::tcp::endpoint& endpoint, tls::ServerContext& tls) {
  tls_ = std::make_unique<Listener>(context_, "worker " + std::to_string(index_) + " (TLS)");
  tls_->tls = &tls;
  bind(tls_->acceptor, endpoint);
}

bool Worker::listening() const {
  return plain_.acceptor.is_open() || (tls_ && tls_->acceptor.is_open());
}

void Worker::start() {
  if (plain_.acceptor.is_open()) accept_next(plain_);
  if (tls_) accept_next(*tls_);
  tick();
  thread_ = std::thread([this] {
    context_.run();
    access_log_.flush();
    finished_.store(true);
  });
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::publish(std::shared_ptr<const snapshot::Snapshot> snapshot) {
  auto pinned = std::make_shared<PinnedSnapshot>(PinnedSnapshot{std::move(snapshot)});
  asio::post(context_, [this, pinned = std::move(pinned)]() mutable { snapshot_ = std::move(pinned); });
}

void Worker::accept_next(Listener& l) {
  // Wait for readiness, then accept once (as nginx). Asio's async_accept instead tries accept(2) at once,
  // and after the previous connection that try usually fails with EAGAIN, which is not cheap: the kernel
  // allocates the new socket and its file before it looks at the queue, and frees them again
  // (docs/benchmarks.md, TLSCONN). The wait re-arms the descriptor (epoll_ctl MOD), which also reports a
  // connection that was already queued.
  l.acceptor.async_wait(asio::socket_base::wait_read, [this, &l](const boost::system::error_code& wait_ec) {
    if (wait_ec || !l.acceptor.is_open()) return;  // closed (drain), or cancelled
    boost::system::error_code ec;
    // accept4 with SOCK_NONBLOCK, and no epoll_ctl(DEL) at close (accept_socket.h).
    asio::ip::tcp::socket socket = accept_socket(l.acceptor, context_, l.peer, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      accept_next(l);  // another worker's, or a connection reset before it was taken
      return;
    }
    if (ec) {
      if (ec == asio::error::operation_aborted || !l.acceptor.is_open()) return;
      if (base::classify_accept_error(ec) == base::AcceptError::connection) {
        // One connection failed (reset before it was taken, ...): nothing to wait for.
        accept_next(l);
      } else {
        // Out of a resource, or an error that retrying at once would only repeat (EINVAL, EBADF, ...): a
        // growing delay, logged once per streak, instead of a spinning core.
        retry_accept(l, l.backoff.failed(ec));
      }
      return;
    }
    l.backoff.succeeded();
    // The Session's memory (~10.7 KB, above glibc's per-thread cache) comes from the thread's free list, as
    // an HTTP/2 stream's does: warm in cache, and no trip through malloc's locked path per connection.
    std::allocate_shared<Session>(RecyclingAllocator<Session>(), *this, std::move(socket), l.tls, &l.peer)
        ->start();
    accept_next(l);
  });
}

void Worker::retry_accept(Listener& l, std::chrono::milliseconds delay) {
  l.retry.expires_after(delay);
  l.retry.async_wait([this, &l](const boost::system::error_code& ec) {
    if (ec || !l.acceptor.is_open()) return;
    const std::chrono::milliseconds again = l.backoff.after_wait();
    if (again.count() == 0) {
      accept_next(l);
    } else {
      retry_accept(l, again);
    }
  });
}

void Worker::tick() {
  tick_timer_.expires_after(kTick);
  tick_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    access_log_.flush();
    pool_.sweep();
    if (!draining_ && !listening()) return;
    if (draining_) {
      maybe_finish();
      if (sessions_.empty()) return;
    }
    tick();
  });
}

void Worker::drain() {
  asio::post(context_, [this] {
    draining_ = true;
    boost::system::error_code ec;
    for (Listener* l : {&plain_, tls_.get()}) {
      if (l == nullptr) continue;
      l->acceptor.close(ec);
      l->retry.cancel();
      l->backoff.stopped();
    }
    std::vector<Session*> current(sessions_.begin(), sessions_.end());
    for (Session* s : current) s->on_drain();
    pool_.sweep(true);
    h2_pool_.close_all(false);  // GOAWAY: streams in flight finish, no new ones
    maybe_finish();
  });
}

void Worker::abort() {
  asio::post(context_, [this] {
    std::vector<Session*> current(sessions_.begin(), sessions_.end());
    for (Session* s : current) s->force_close();
    pool_.sweep(true);
    h2_pool_.close_all(true);
    context_.stop();
  });
}

void Worker::remove_session(Session* s) {
  sessions_.erase(s);
  if (draining_) maybe_finish();
}

void Worker::maybe_finish() {
  if (!draining_ || !sessions_.empty()) return;
  pool_.sweep(true);
  h2_pool_.close_all(true);
  boost::system::error_code ec;
  tick_timer_.cancel();
  context_.stop();
}

}  // namespace portico::proxy
