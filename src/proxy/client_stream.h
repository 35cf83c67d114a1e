// ClientStream: a session's client connection, plain TCP or TLS, or one HTTP/2 stream (H2Stream), behind one
// stream interface (Asio's AsyncReadStream/AsyncWriteStream), so that the request path is one code path for
// all. The choice is made once, at accept (or when a stream opens); each operation dispatches with a branch,
// and a plain connection pays nothing else. This is the Session's seam: the bytes a Session reads and writes
// are HTTP/1.1 whatever the client speaks (h2_stream.h translates for HTTP/2).
//
// TLS (tls_stream.h: OpenSSL on the socket itself, not Asio's SSL engine) writes one buffer per call, so a
// gather write (head + body + framing) would become several records and syscalls; the TLS path copies small
// gathers (up to kCoalesce, one record) into one buffer first. Owned by its Session; worker thread only.
#pragma once

#include <openssl/ssl.h>

#include <boost/asio/async_result.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <cstring>
#include <memory>
#include <vector>

#include "proxy/h2_stream.h"
#include "proxy/tls_stream.h"

namespace portico::proxy {

class ClientStream {
 public:
  using executor_type = boost::asio::ip::tcp::socket::executor_type;
  static constexpr size_t kCoalesce = 16 * 1024;

  explicit ClientStream(boost::asio::ip::tcp::socket socket) : socket_(std::move(socket)) {}
  // An HTTP/2 stream: `socket` is an unopened placeholder (socket-level calls on it fail harmlessly).
  ClientStream(boost::asio::ip::tcp::socket socket, std::shared_ptr<H2Stream> stream)
      : socket_(std::move(socket)), h2_(std::move(stream)) {}
  H2Stream* h2() { return h2_.get(); }

  // Makes this a TLS connection (before any I/O); the handshake is the caller's (tls()->async_handshake).
  void enable_tls(boost::asio::ssl::context& context) {
    tls_ = std::make_unique<TlsStream>(socket_, context.native_handle());
  }
  TlsStream* tls() { return tls_.get(); }
  SSL* ssl() { return tls_ ? tls_->native_handle() : nullptr; }

  boost::asio::ip::tcp::socket& socket() { return socket_; }
  // As Asio's streams name it: the TCP socket under the TLS layer (a tunnel's half-close,
  // session_exchange.cc).
  boost::asio::ip::tcp::socket& lowest_layer() { return socket_; }
  executor_type get_executor() { return socket_.get_executor(); }
  bool is_open() const { return h2_ ? h2_->is_open() : socket_.is_open(); }
  void close(boost::system::error_code& ec) {
    if (h2_) {
      h2_->close();
      return;
    }
    socket_.close(ec);
  }
  void cancel(boost::system::error_code& ec) {
    if (h2_) {
      h2_->cancel();
      return;
    }
    socket_.cancel(ec);
  }
  void shutdown(boost::asio::socket_base::shutdown_type what, boost::system::error_code& ec) {
    if (!h2_) socket_.shutdown(what, ec);
  }
  size_t available(boost::system::error_code& ec) const { return h2_ ? 0 : socket_.available(ec); }

  template <typename MutableBuffers, typename Token>
  auto async_read_some(const MutableBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
        [this](auto handler, const MutableBuffers& b) {
          if (h2_) {
            h2_->async_read_some(*boost::asio::buffer_sequence_begin(b),
                                 H2Stream::Handler(std::move(handler)));
          } else if (tls_) {
            for (auto it = boost::asio::buffer_sequence_begin(b); it != boost::asio::buffer_sequence_end(b);
                 ++it) {
              const boost::asio::mutable_buffer piece(*it);
              if (piece.size() == 0) continue;
              tls_->async_read_some(piece.data(), piece.size(), std::move(handler));
              return;
            }
            tls_->async_read_some(nullptr, 0, std::move(handler));
          } else {
            socket_.async_read_some(b, std::move(handler));
          }
        },
        token, buffers);
  }

  template <typename ConstBuffers, typename Token>
  auto async_write_some(const ConstBuffers& buffers, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
        [this](auto handler, const ConstBuffers& b) {
          if (h2_) {
            size_t total = 0;
            for (auto it = boost::asio::buffer_sequence_begin(b); it != boost::asio::buffer_sequence_end(b);
                 ++it) {
              const boost::asio::const_buffer piece(*it);
              h2_->write(std::string_view(static_cast<const char*>(piece.data()), piece.size()));
              total += piece.size();
            }
            h2_->async_wait_writable(total, H2Stream::Handler(std::move(handler)));
            return;
          }
          if (!tls_) {
            socket_.async_write_some(b, std::move(handler));
            return;
          }
          const size_t total = boost::asio::buffer_size(b);
          const size_t pieces = static_cast<size_t>(
              std::distance(boost::asio::buffer_sequence_begin(b), boost::asio::buffer_sequence_end(b)));
          if (pieces <= 1 || total > kCoalesce) {
            // As Asio's SSL stream: the first non-empty buffer.
            for (auto it = boost::asio::buffer_sequence_begin(b); it != boost::asio::buffer_sequence_end(b);
                 ++it) {
              const boost::asio::const_buffer piece(*it);
              if (piece.size() == 0) continue;
              tls_->async_write_some(piece.data(), piece.size(), std::move(handler));
              return;
            }
            tls_->async_write_some(nullptr, 0, std::move(handler));
            return;
          }
          // One record for the whole gather (kCoalesce is a record's payload, which one write takes whole).
          scratch_.resize(total);
          boost::asio::buffer_copy(boost::asio::buffer(scratch_), b);
          tls_->async_write_some(scratch_.data(), total, std::move(handler));
        },
        token, buffers);
  }

  // HTTP/2 streams: the completion of a write that H2Stream::write_now could not finish at once.
  template <typename Token>
  auto async_wait_h2_writable(size_t n, Token&& token) {
    return boost::asio::async_initiate<Token, void(boost::system::error_code, size_t)>(
        [this](auto handler, size_t size) {
          h2_->async_wait_writable(size, H2Stream::Handler(std::move(handler)));
        },
        token, n);
  }

  // Sends TLS close_notify without waiting for the client's (nginx does the same): the client sees a clean
  // end of the stream. TLS connections only.
  template <typename Token>
  auto async_close_notify(Token&& token) {
    return tls_->async_close_notify(std::forward<Token>(token));
  }

 private:
  boost::asio::ip::tcp::socket socket_;
  std::unique_ptr<TlsStream> tls_;
  std::shared_ptr<H2Stream> h2_;
  std::vector<char> scratch_;
};

}  // namespace portico::proxy
