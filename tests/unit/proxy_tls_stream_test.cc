// TlsStream (src/proxy/tls_stream.h) against Asio's client ssl::stream over loopback: handshake and data both
// ways, a read and a write outstanding at once, the error mapping (close_notify is eof, a TCP close without
// it is stream_truncated, a reset connection_reset, a non-TLS client an SSL error), the error queue left
// empty, an error some other code left on the thread not taken for the stream's own, and cancellation by
// closing the socket.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <memory>
#include <string>

#include "proxy/tls_stream.h"
#include "tls_test_certs.h"

namespace portico::proxy {
namespace {

namespace asio = boost::asio;
using asio::awaitable;
using asio::ip::tcp;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

const test_certs::Pem& cert() {
  static const test_certs::Pem p = test_certs::make_cert("stream.test", false);
  return p;
}

class TlsStreamTest : public ::testing::Test {
 protected:
  TlsStreamTest()
      : server_ctx_(asio::ssl::context::tls_server),
        client_ctx_(asio::ssl::context::tls_client),
        acceptor_(io_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
        server_socket_(io_),
        client_(io_, client_ctx_) {
    server_ctx_.use_certificate_chain(asio::buffer(cert().cert));
    server_ctx_.use_private_key(asio::buffer(cert().key), asio::ssl::context::pem);
    client_ctx_.set_verify_mode(asio::ssl::verify_none);
    client_.lowest_layer().connect(acceptor_.local_endpoint());
    acceptor_.accept(server_socket_);
    server_ = std::make_unique<TlsStream>(server_socket_, server_ctx_.native_handle());
  }

  // Runs both sides' handshakes to completion.
  void handshake() {
    boost::system::error_code server_ec = asio::error::would_block, client_ec = asio::error::would_block;
    asio::co_spawn(
        io_,
        [&]() -> awaitable<void> {
          std::tie(server_ec, std::ignore) = co_await server_->async_handshake(nothrow);
        },
        asio::detached);
    client_.async_handshake(asio::ssl::stream_base::client,
                            [&](boost::system::error_code ec) { client_ec = ec; });
    io_.run();
    io_.restart();
    ASSERT_FALSE(server_ec) << server_ec.message();
    ASSERT_FALSE(client_ec) << client_ec.message();
  }

  // The server's next read, run to completion.
  std::pair<boost::system::error_code, std::string> server_read() {
    std::pair<boost::system::error_code, std::string> out{asio::error::would_block, {}};
    asio::co_spawn(
        io_,
        [&]() -> awaitable<void> {
          char buf[256];
          auto [ec, n] = co_await server_->async_read_some(buf, sizeof buf, nothrow);
          out = {ec, std::string(buf, n)};
        },
        asio::detached);
    io_.run();
    io_.restart();
    return out;
  }

  asio::io_context io_;
  asio::ssl::context server_ctx_;
  asio::ssl::context client_ctx_;
  tcp::acceptor acceptor_;
  tcp::socket server_socket_;
  asio::ssl::stream<tcp::socket> client_;
  std::unique_ptr<TlsStream> server_;
};

TEST_F(TlsStreamTest, DataBothWaysWithReadAndWriteOutstandingAtOnce) {
  handshake();
  // The server reads before the client has sent anything (it waits for readiness) while it writes.
  std::string got, client_got(5, '\0');
  boost::system::error_code read_ec = asio::error::would_block, write_ec = asio::error::would_block;
  asio::co_spawn(
      io_,
      [&]() -> awaitable<void> {
        char buf[64];
        auto [ec, n] = co_await server_->async_read_some(buf, sizeof buf, nothrow);
        read_ec = ec;
        got.assign(buf, n);
      },
      asio::detached);
  asio::co_spawn(
      io_,
      [&]() -> awaitable<void> {
        auto [ec, n] = co_await server_->async_write_some("world", 5, nothrow);
        write_ec = ec;
        EXPECT_EQ(n, 5u);
      },
      asio::detached);
  asio::async_read(client_, asio::buffer(client_got), [&](boost::system::error_code ec, size_t) {
    ASSERT_FALSE(ec);
    asio::async_write(client_, asio::buffer("hello", 5), [](boost::system::error_code, size_t) {});
  });
  io_.run();
  io_.restart();
  EXPECT_FALSE(read_ec);
  EXPECT_FALSE(write_ec);
  EXPECT_EQ(got, "hello");
  EXPECT_EQ(client_got, "world");
}

TEST_F(TlsStreamTest, CloseNotifyIsEofAndTheServerAnswersIt) {
  handshake();
  boost::system::error_code client_ec = asio::error::would_block, read_ec,
                            notify_ec = asio::error::would_block;
  size_t read_n = 1;
  // The client's shutdown waits for the server's close_notify.
  client_.async_shutdown([&](boost::system::error_code ec) { client_ec = ec; });
  asio::co_spawn(
      io_,
      [&]() -> awaitable<void> {
        char buf[16];
        std::tie(read_ec, read_n) = co_await server_->async_read_some(buf, sizeof buf, nothrow);
        std::tie(notify_ec, std::ignore) = co_await server_->async_close_notify(nothrow);
      },
      asio::detached);
  io_.run();
  EXPECT_EQ(read_ec, asio::error::eof);
  EXPECT_EQ(read_n, 0u);
  EXPECT_FALSE(notify_ec) << notify_ec.message();
  EXPECT_FALSE(client_ec) << client_ec.message();
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(TlsStreamTest, TcpCloseWithoutCloseNotifyIsTruncation) {
  handshake();
  client_.lowest_layer().shutdown(tcp::socket::shutdown_send);  // a FIN, no close_notify
  auto [ec, data] = server_read();
  EXPECT_EQ(ec, asio::ssl::error::stream_truncated) << ec.message();
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(TlsStreamTest, ResetIsConnectionReset) {
  // The session tells a reset client (no close_notify, no shutdown for it) by this code.
  handshake();
  client_.lowest_layer().set_option(asio::socket_base::linger(true, 0));
  client_.lowest_layer().close();
  auto [ec, data] = server_read();
  EXPECT_EQ(ec, asio::error::connection_reset) << ec.message();
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(TlsStreamTest, NonTlsClientFailsTheHandshakeAndLeavesNoErrorQueued) {
  asio::write(client_.next_layer(), asio::buffer(std::string("GET / HTTP/1.1\r\nHost: x\r\n\r\n")));
  boost::system::error_code server_ec;
  asio::co_spawn(
      io_,
      [&]() -> awaitable<void> {
        std::tie(server_ec, std::ignore) = co_await server_->async_handshake(nothrow);
      },
      asio::detached);
  io_.run();
  ASSERT_TRUE(server_ec);
  EXPECT_EQ(server_ec.category(), asio::error::get_ssl_category()) << server_ec.message();
  EXPECT_EQ(ERR_peek_error(), 0u);
}

TEST_F(TlsStreamTest, AnErrorLeftOnTheThreadIsNotTheStreams) {
  handshake();
  asio::write(client_, asio::buffer("hi", 2));
  ERR_raise(ERR_LIB_SSL, SSL_R_BAD_PACKET);  // as an earlier, unrelated failure on this thread leaves it
  auto [ec, data] = server_read();
  EXPECT_FALSE(ec) << ec.message();
  EXPECT_EQ(data, "hi");
}

TEST_F(TlsStreamTest, ClosingTheSocketEndsAWaitingReadAndLaterOnesFail) {
  handshake();
  boost::system::error_code ec = asio::error::would_block;
  asio::co_spawn(
      io_,
      [&]() -> awaitable<void> {
        char buf[16];
        std::tie(ec, std::ignore) = co_await server_->async_read_some(buf, sizeof buf, nothrow);
      },
      asio::detached);
  io_.poll();  // the read is now waiting for the socket
  EXPECT_EQ(ec, asio::error::would_block);
  server_socket_.close();
  io_.run();
  io_.restart();
  EXPECT_EQ(ec, asio::error::operation_aborted);
  auto [again, data] = server_read();
  EXPECT_EQ(again, asio::error::bad_descriptor);
}

// A ClientHello already queued when the handshake starts is read within the initiating call, which sends the
// server's flight at once: no trip through the scheduler for that first read.
TEST_F(TlsStreamTest, QueuedClientHelloIsAnsweredWithinTheInitiatingCall) {
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  SSL* c = SSL_new(cctx);
  BIO* in = BIO_new(BIO_s_mem());
  BIO* out = BIO_new(BIO_s_mem());
  SSL_set_bio(c, in, out);
  SSL_set_connect_state(c);
  ASSERT_EQ(SSL_do_handshake(c), -1);  // the ClientHello is in `out`, the client waits for the answer
  char* hello = nullptr;
  const long hello_len = BIO_get_mem_data(out, &hello);
  ASSERT_GT(hello_len, 0);
  asio::write(client_.next_layer(), asio::buffer(hello, static_cast<size_t>(hello_len)));
  boost::system::error_code ec = asio::error::would_block;
  server_->async_handshake([&](boost::system::error_code e, size_t) { ec = e; });
  // The io_context has not run: the ServerHello is on its way already.
  EXPECT_GT(client_.next_layer().available(), 0u);
  EXPECT_EQ(ec, asio::error::would_block);  // and the handshake waits for the client's Finished
  server_socket_.close();
  io_.run();
  EXPECT_TRUE(ec);
  SSL_free(c);
  SSL_CTX_free(cctx);
  ERR_clear_error();
}

}  // namespace
}  // namespace portico::proxy
