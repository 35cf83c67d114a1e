// accept_socket: takes one connection from a non-blocking listening socket with accept4(SOCK_NONBLOCK |
// SOCK_CLOEXEC) and hands it to Asio as what it is: non-blocking already, and the only descriptor of its
// file. Asio's own accept marks every accepted socket "possibly duplicated" and blocking, so each one cost
// two syscalls more than nginx's: an ioctl(FIONBIO) before its first operation (or TlsStream's), and an
// epoll_ctl(DEL) before close(2), which Asio skips only for sockets it knows no other descriptor shares
// (the kernel drops a closed file from the epoll set itself). docs/benchmarks.md (TLSHS) has the figures.
//
// The socket must stay the only descriptor of its file (never dup'd or passed on) for Asio's skipped
// epoll_ctl(DEL) to be right: Portico's client sockets are. Worker thread of `context` only.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/system/error_code.hpp>

namespace portico::proxy {

// One connection from `listener` (which must be non-blocking), registered with `context`'s reactor; `peer`
// receives the client's address. On failure the socket is closed and `ec` holds accept4's errno
// (asio::error::would_block when no connection is queued).
boost::asio::ip::tcp::socket accept_socket(boost::asio::ip::tcp::acceptor& listener,
                                           boost::asio::io_context& context,
                                           boost::asio::ip::tcp::endpoint& peer,
                                           boost::system::error_code& ec);

}  // namespace portico::proxy
