// accept_socket (src/proxy/accept_socket.h): the accepted socket is non-blocking and close-on-exec from
// accept4 itself, Asio knows it (no ioctl before its first operation), and it works as any socket.
#include "proxy/accept_socket.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>

namespace portico::proxy {
namespace {

namespace asio = boost::asio;

struct Listener {
  asio::io_context context;
  asio::ip::tcp::acceptor acceptor{context};
  Listener() {
    acceptor.open(asio::ip::tcp::v4());
    acceptor.bind({asio::ip::address_v4::loopback(), 0});
    acceptor.listen();
    acceptor.non_blocking(true);
  }
  // Connects `client` and accepts its connection with accept_socket; fails the test on an error.
  asio::ip::tcp::socket accept_from(asio::ip::tcp::socket& client, asio::ip::tcp::endpoint& peer) {
    client.connect(acceptor.local_endpoint());
    boost::system::error_code ec;
    asio::ip::tcp::socket s = accept_socket(acceptor, context, peer, ec);
    EXPECT_FALSE(ec) << ec.message();
    EXPECT_TRUE(s.is_open());
    return s;
  }
};

// A fresh listener, a client connected to it and the connection accept_socket took.
struct Accepted : Listener {
  asio::ip::tcp::socket client{context};
  asio::ip::tcp::endpoint peer;
  asio::ip::tcp::socket s = accept_from(client, peer);
};

TEST(AcceptSocket, NothingQueuedIsWouldBlock) {
  Listener l;
  asio::ip::tcp::endpoint peer;
  boost::system::error_code ec;
  asio::ip::tcp::socket s = accept_socket(l.acceptor, l.context, peer, ec);
  EXPECT_EQ(ec, asio::error::would_block);
  EXPECT_FALSE(s.is_open());
}

TEST(AcceptSocket, NonBlockingFromAcceptAndKnownToAsio) {
  Accepted a;
  asio::ip::tcp::socket& s = a.s;
  ASSERT_TRUE(s.is_open());
  EXPECT_EQ(a.peer, a.client.local_endpoint());
  const int fl = ::fcntl(s.native_handle(), F_GETFL);
  EXPECT_NE(fl & O_NONBLOCK, 0);
  EXPECT_NE(::fcntl(s.native_handle(), F_GETFD) & FD_CLOEXEC, 0);
  // Asio's own accept leaves this false: TlsStream (and Asio's first operation) would then ioctl(FIONBIO).
  EXPECT_TRUE(s.non_blocking());
}

TEST(AcceptSocket, WorksAsAnAsioSocketAndCloses) {
  Accepted a;
  Listener& l = a;
  asio::ip::tcp::socket& s = a.s;
  asio::ip::tcp::socket& client = a.client;
  ASSERT_TRUE(s.is_open());
  boost::system::error_code ec;
  std::string got(5, '\0');
  size_t n = 0;
  asio::async_read(s, asio::buffer(got), [&](boost::system::error_code e, size_t k) {
    ec = e;
    n = k;
  });
  asio::write(client, asio::buffer(std::string_view("hello")));
  l.context.run();
  EXPECT_FALSE(ec);
  EXPECT_EQ(n, 5u);
  EXPECT_EQ(got, "hello");
  // Non-blocking for Asio's synchronous calls too: nothing to read is would_block, not a wait.
  char c;
  s.read_some(asio::buffer(&c, 1), ec);
  EXPECT_EQ(ec, asio::error::would_block);
  // Closed without epoll_ctl(DEL): the reactor still sees the peer's next socket as new.
  s.close(ec);
  EXPECT_FALSE(ec);
  asio::ip::tcp::socket client2(l.context);
  client2.connect(l.acceptor.local_endpoint());
  asio::ip::tcp::socket s2 = accept_socket(l.acceptor, l.context, a.peer, ec);
  ASSERT_FALSE(ec);
  asio::write(client2, asio::buffer(std::string_view("again")));
  l.context.restart();
  asio::async_read(s2, asio::buffer(got), [&](boost::system::error_code e, size_t k) {
    ec = e;
    n = k;
  });
  l.context.run();
  EXPECT_FALSE(ec);
  EXPECT_EQ(got, "again");
}

}  // namespace
}  // namespace portico::proxy
