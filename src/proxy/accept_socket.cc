#include "proxy/accept_socket.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

namespace portico::proxy {

namespace asio = boost::asio;

namespace {
// Asio keeps what it knows of a socket (blocking mode, whether the descriptor may be shared) in the
// implementation's state flags, which only a derived class can reach; a pointer to the protected member,
// named through this class, applies to any tcp::socket.
struct SocketState : asio::ip::tcp::socket {
  static asio::detail::socket_ops::state_type& of(asio::ip::tcp::socket& socket) {
    return (socket.*(&SocketState::impl_)).get_implementation().state_;
  }
};
}  // namespace

asio::ip::tcp::socket accept_socket(asio::ip::tcp::acceptor& listener, asio::io_context& context,
                                    asio::ip::tcp::endpoint& peer, boost::system::error_code& ec) {
  asio::ip::tcp::socket socket(context);
  socklen_t len = static_cast<socklen_t>(peer.capacity());
  int fd;
  do {
    fd = ::accept4(listener.native_handle(), peer.data(), &len, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    ec.assign(errno, boost::system::system_category());
    return socket;
  }
  peer.resize(len);
  // Registers it with the reactor (epoll_ctl ADD), as Asio's accept does.
  socket.assign(peer.protocol(), fd, ec);
  if (ec) {
    ::close(fd);
    return socket;
  }
  auto& state = SocketState::of(socket);
  state &= ~asio::detail::socket_ops::possible_dup;
  state |= asio::detail::socket_ops::user_set_non_blocking | asio::detail::socket_ops::internal_non_blocking;
  return socket;
}

}  // namespace portico::proxy
