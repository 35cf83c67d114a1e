// TlsStream: the server side of one client TLS connection, without Asio's SSL engine. The SSL writes to the
// non-blocking socket itself (send from OpenSSL's record buffer, as nginx's SSL_set_fd) and reads from one
// buffer this stream fills with the socket's async_read_some (17 KB, taken from a per-thread list of
// closed streams' buffers, never zero-filled): an operation that gets WANT_READ refills it
// (Asio's speculative read, or its wait when the last read drained the socket), one that gets WANT_WRITE
// waits with async_wait(wait_write), then tries again. Asio's ssl::stream instead moves every byte through a
// BIO pair (two copies each way), clears the thread's error queue on every step and runs composed operations
// per step. Plain SSL_set_fd cost more syscalls under Asio's reactor than it saved (a read that fails with
// EAGAIN, then an epoll_ctl per async_wait, and two reads per record): docs/benchmarks.md.
//
// Operations follow Asio's completion-token style (async_compose), so `as_tuple(use_awaitable)`, awaitable
// operators and per-operation cancellation work as with any Asio stream. One read and one write may be
// outstanding at a time (as an Asio stream: an HTTP/2 connection reads and writes at once); the handshake and
// close_notify run alone. An operation that completes without waiting is posted, never completed inline.
//
// Errors: SSL_ERROR_ZERO_RETURN (the peer's close_notify) is asio::error::eof; a socket error its errno (so a
// reset is asio::error::connection_reset); an end of the TCP stream without close_notify is
// asio::ssl::error::stream_truncated; a protocol error its OpenSSL code in asio::error::get_ssl_category().
// Nothing is logged here. The thread's OpenSSL error queue is cleared only when it holds an error.
//
// The socket is borrowed (its owner closes it; after close every operation fails with bad_descriptor, so the
// SSL never touches a reused descriptor). Owned by its ClientStream; worker thread only.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/compose.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/system/error_code.hpp>
#include <cstddef>
#include <memory>
#include <string>

namespace portico::proxy {

class TlsStream {
 public:
  // A server-side SSL from `context` on `socket` (open, connected). Sets the socket non-blocking.
  TlsStream(boost::asio::ip::tcp::socket& socket, SSL_CTX* context);
  ~TlsStream();
  TlsStream(const TlsStream&) = delete;
  TlsStream& operator=(const TlsStream&) = delete;

  SSL* native_handle() { return ssl_; }

  // Completion signature of every operation: void(error_code, size_t).
  template <typename Token>
  auto async_handshake(Token&& token) {
    return run(Kind::handshake, nullptr, 0, std::forward<Token>(token));
  }
  // Reads what one or more records give, up to `size` bytes (0 only with an error).
  template <typename Token>
  auto async_read_some(void* data, size_t size, Token&& token) {
    return run(Kind::read, data, size, std::forward<Token>(token));
  }
  // Writes one record's worth at most (16 KB) of `data` (the caller keeps it alive until completion).
  template <typename Token>
  auto async_write_some(const void* data, size_t size, Token&& token) {
    return run(Kind::write, const_cast<void*>(data), size, std::forward<Token>(token));
  }
  // Sends close_notify without waiting for the peer's.
  template <typename Token>
  auto async_close_notify(Token&& token) {
    SSL_set_shutdown(ssl_, SSL_RECEIVED_SHUTDOWN);
    return run(Kind::shutdown, nullptr, 0, std::forward<Token>(token));
  }

 private:
  enum class Kind { handshake, read, write, shutdown };
  enum class Want { nothing, read, write };
  struct Step {
    Want want = Want::nothing;
    boost::system::error_code ec;
    size_t bytes = 0;
  };

  // One attempt at the operation; no waiting.
  Step perform(Kind kind, void* data, size_t size);
  // Sends what the handshake queued; false while the socket takes no more (or with `ec` set).
  bool flush(boost::system::error_code& ec);
  // The read buffer's free space after compacting it (async_read_some fills it).
  boost::asio::mutable_buffer read_space();
  // One non-blocking recv into the read buffer, outside the reactor. True: bytes were read, or the peer's EOF
  // (noted); false: nothing there yet, or `ec` set.
  bool read_now(boost::system::error_code& ec);
  static BIO_METHOD* bio_method();
  static int bio_read(BIO* bio, char* out, int size);
  static int bio_write(BIO* bio, const char* in, int size);
  static long bio_ctrl(BIO* bio, int cmd, long num, void* ptr);

  // The composed operation: attempt; on WANT_READ/WANT_WRITE wait for the socket, then attempt again.
  struct Op {
    TlsStream* stream;
    Kind kind;
    void* data;
    size_t size;
    enum { start, waiting, reading, posted } state = start;
    Step result{};

    template <typename Self>
    void operator()(Self& self, boost::system::error_code io_error = {}, size_t got = 0) {
      switch (state) {
        case start:
          break;
        case waiting:
          if (io_error) {
            self.complete(io_error, 0);  // cancelled, or the socket closed
            return;
          }
          break;
        case reading:
          stream->refilling_ = false;
          stream->in_end_ += got;
          if (io_error == boost::asio::error::eof) {
            stream->peer_eof_ = true;  // OpenSSL tells a close_notify from a truncation
          } else if (io_error) {
            self.complete(io_error, 0);  // a reset, a cancel, the socket closed
            return;
          }
          break;
        case posted:
          self.complete(result.ec, result.bytes);
          return;
      }
      result = stream->perform(kind, data, size);
      if (result.want == Want::read && state == start && kind == Kind::handshake && !stream->refilling_) {
        // The ClientHello is usually queued already (the worker accepts after readiness): read it here and
        // go on, where Asio's speculative read would complete through the scheduler (a loop turn, and a
        // non-blocking epoll_wait, per connection).
        boost::system::error_code ec;
        if (stream->read_now(ec)) {
          result = stream->perform(kind, data, size);
        } else if (ec) {
          result = Step{Want::nothing, ec, 0};
        }
      }
      if (result.want == Want::read && !stream->refilling_) {
        state = reading;
        stream->refilling_ = true;
        stream->socket_.async_read_some(stream->read_space(), std::move(self));
        return;
      }
      if (result.want != Want::nothing) {
        // A write that needs the peer's bytes while the read refills the buffer (not seen with renegotiation
        // off) waits for readability and tries again after the refill.
        state = waiting;
        stream->socket_.async_wait(result.want == Want::read ? boost::asio::socket_base::wait_read
                                                             : boost::asio::socket_base::wait_write,
                                   std::move(self));
        return;
      }
      if (state == start) {
        // Completing inside the initiation would resume the caller on this stack: post, as Asio's own
        // speculative reads do.
        state = posted;
        boost::asio::post(stream->socket_.get_executor(), std::move(self));
        return;
      }
      self.complete(result.ec, result.bytes);
    }
  };

  template <typename Token>
  auto run(Kind kind, void* data, size_t size, Token&& token) {
    return boost::asio::async_compose<Token, void(boost::system::error_code, size_t)>(
        Op{this, kind, data, size}, token, socket_);
  }

  static constexpr size_t kReadBuffer = 17 * 1024;  // a full record and the next one's header, as Asio's

  boost::asio::ip::tcp::socket& socket_;
  SSL* ssl_;
  std::unique_ptr<unsigned char[]> in_;  // bytes read from the socket, not yet taken by OpenSSL
  size_t in_begin_ = 0;
  size_t in_end_ = 0;
  bool peer_eof_ = false;
  bool refilling_ = false;  // an async_read_some into in_ is outstanding
  // During a handshake step OpenSSL's writes are queued here and sent at once: a TLS 1.3 server writes its
  // session tickets one message at a time (a send each, on loopback each one the peer's receive path too).
  bool corked_ = false;
  std::string out_;
};

}  // namespace portico::proxy
