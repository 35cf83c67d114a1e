// A deadline for one connection, shared by the listeners whose connections are coroutines (the Admin API and
// sync listener, the status listener).
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdint>
#include <memory>

#include "base/time.h"

namespace portico::base {

// The deadline of one connection: a timer whose expiry closes the socket. Asio runs an expiry that was
// already queued even after cancel() or a re-arm, and when the last read and the expiry complete in the same
// round of the event loop that is after the connection's coroutine returned and freed the socket. So the
// handler holds nothing of the coroutine: only this shared state and the generation it was armed for, and it
// acts only while the connection lives (socket set) and that arm is still the current one. The thread of
// the socket's event loop only; it must not outlive the socket.
class SocketWatchdog {
 public:
  SocketWatchdog(boost::asio::io_context& context, boost::asio::ip::tcp::socket& socket)
      : timer_(context), state_(std::make_shared<State>()) {
    state_->socket = &socket;
  }
  ~SocketWatchdog() {
    state_->socket = nullptr;
    ++state_->generation;
  }
  SocketWatchdog(const SocketWatchdog&) = delete;
  SocketWatchdog& operator=(const SocketWatchdog&) = delete;

  // Replaces any earlier deadline (an expiry of the earlier one already queued does nothing).
  void arm(double seconds) {
    const uint64_t generation = ++state_->generation;
    timer_.expires_after(base::seconds(seconds));
    timer_.async_wait([state = state_, generation](const boost::system::error_code& ec) {
      if (ec || state->socket == nullptr || state->generation != generation) return;
      state->fired = true;
      boost::system::error_code ignored;
      state->socket->close(ignored);
    });
  }
  void disarm() {
    ++state_->generation;
    timer_.cancel();
  }
  // The deadline closed the connection.
  bool fired() const { return state_->fired; }

 private:
  struct State {
    uint64_t generation = 0;
    bool fired = false;
    boost::asio::ip::tcp::socket* socket = nullptr;  // null once the connection is gone
  };
  boost::asio::steady_timer timer_;
  std::shared_ptr<State> state_;
};

}  // namespace portico::base
