#include "proxy/worker.h"

#include <boost/asio/post.hpp>

#include "base/log.h"
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
      acceptor_(context_),
      tick_timer_(context_),
      accept_retry_(context_),
      backoff_("worker " + std::to_string(index)),
      pool_(context_.get_executor()),
      access_log_(access_log_fd) {}

Worker::~Worker() {
  join();
  draining_ = false;  // sessions destroyed with the context below must not run the drain bookkeeping
}

void Worker::listen(const asio::ip::tcp::endpoint& endpoint) {
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  int one = 1;
  if (::setsockopt(acceptor_.native_handle(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) != 0) {
    throw std::system_error(errno, std::generic_category(), "SO_REUSEPORT");
  }
  acceptor_.bind(endpoint);
  acceptor_.listen(4096);
}

void Worker::start() {
  accept_next();
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

void Worker::accept_next() {
  acceptor_.async_accept([this](const boost::system::error_code& ec, asio::ip::tcp::socket socket) {
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) return;
      if (base::classify_accept_error(ec) == base::AcceptError::connection) {
        // One connection failed (reset before it was taken, ...): nothing to wait for.
        accept_next();
      } else {
        // Out of a resource, or an error that retrying at once would only repeat (EINVAL, EBADF, ...): a
        // growing delay, logged once per streak, instead of a spinning core.
        retry_accept(backoff_.failed(ec));
      }
      return;
    }
    backoff_.succeeded();
    std::make_shared<Session>(*this, std::move(socket))->start();
    accept_next();
  });
}

void Worker::retry_accept(std::chrono::milliseconds delay) {
  accept_retry_.expires_after(delay);
  accept_retry_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || !acceptor_.is_open()) return;
    const std::chrono::milliseconds again = backoff_.after_wait();
    if (again.count() == 0) {
      accept_next();
    } else {
      retry_accept(again);
    }
  });
}

void Worker::tick() {
  tick_timer_.expires_after(kTick);
  tick_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (ec) return;
    access_log_.flush();
    pool_.sweep();
    if (!draining_ && !acceptor_.is_open()) return;
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
    acceptor_.close(ec);
    accept_retry_.cancel();
    backoff_.stopped();
    std::vector<Session*> current(sessions_.begin(), sessions_.end());
    for (Session* s : current) s->on_drain();
    pool_.sweep(true);
    maybe_finish();
  });
}

void Worker::abort() {
  asio::post(context_, [this] {
    std::vector<Session*> current(sessions_.begin(), sessions_.end());
    for (Session* s : current) s->force_close();
    pool_.sweep(true);
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
  boost::system::error_code ec;
  tick_timer_.cancel();
  context_.stop();
}

}  // namespace portico::proxy
