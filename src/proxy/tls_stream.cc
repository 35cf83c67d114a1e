#include "proxy/tls_stream.h"

#include <openssl/err.h>

#include <sys/socket.h>
#include <boost/asio/error.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/throw_exception.hpp>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <new>
#include <vector>

#include "base/thread_cache.h"

namespace portico::proxy {

BIO_METHOD* TlsStream::bio_method() {
  static BIO_METHOD* method = [] {
    BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "portico client socket");
    BIO_meth_set_read(m, &TlsStream::bio_read);
    BIO_meth_set_write(m, &TlsStream::bio_write);
    BIO_meth_set_ctrl(m, &TlsStream::bio_ctrl);
    BIO_meth_set_create(m, [](BIO* bio) {
      BIO_set_init(bio, 1);
      return 1;
    });
    return m;
  }();
  return method;
}

int TlsStream::bio_read(BIO* bio, char* out, int size) {
  auto* self = static_cast<TlsStream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  const size_t have = self->in_end_ - self->in_begin_;
  if (have == 0) {
    if (self->peer_eof_) return 0;
    BIO_set_retry_read(bio);  // the operation refills the buffer and tries again
    return -1;
  }
  const size_t n = std::min(have, static_cast<size_t>(size));
  std::memcpy(out, self->in_.get() + self->in_begin_, n);
  self->in_begin_ += n;
  if (self->in_begin_ == self->in_end_) self->in_begin_ = self->in_end_ = 0;
  return static_cast<int>(n);
}

int TlsStream::bio_write(BIO* bio, const char* in, int size) {
  auto* self = static_cast<TlsStream*>(BIO_get_data(bio));
  BIO_clear_retry_flags(bio);
  if (self->corked_) {
    self->out_.append(in, static_cast<size_t>(size));
    return size;
  }
  const ssize_t n = ::send(self->socket_.native_handle(), in, static_cast<size_t>(size), MSG_NOSIGNAL);
  if (n >= 0) return static_cast<int>(n);
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) BIO_set_retry_write(bio);
  return -1;  // errno tells SSL_ERROR_SYSCALL's cause
}

long TlsStream::bio_ctrl(BIO* bio, int cmd, long, void*) {
  auto* self = static_cast<TlsStream*>(BIO_get_data(bio));
  switch (cmd) {
    case BIO_CTRL_FLUSH:
      return 1;  // nothing is buffered on the way out
    case BIO_CTRL_PENDING:
      return static_cast<long>(self->in_end_ - self->in_begin_);
    case BIO_CTRL_EOF:
      return self->peer_eof_ && self->in_end_ == self->in_begin_ ? 1 : 0;
    default:
      return 0;
  }
}

bool TlsStream::flush(boost::system::error_code& ec) {
  size_t sent = 0;
  while (sent < out_.size()) {
    const ssize_t n = ::send(socket_.native_handle(), out_.data() + sent, out_.size() - sent, MSG_NOSIGNAL);
    if (n >= 0) {
      sent += static_cast<size_t>(n);
    } else if (errno != EINTR) {
      if (errno != EAGAIN && errno != EWOULDBLOCK) ec.assign(errno, boost::system::system_category());
      break;
    }
  }
  out_.erase(0, sent);
  return out_.empty();
}

namespace {
// Read buffers of closed streams, kept for the next connection on this thread: a new connection then reuses
// memory that is already mapped and in cache, instead of a 17 KB malloc (above glibc's per-thread cache, so
// an arena lock) zero-filled each time.
constexpr size_t kSpareBuffers = 64;

// The thread's spare read buffers, or null once its thread-locals are being destroyed (a stream destroyed
// after them, e.g. at exit, must not push into a destroyed vector), as proxy/recycling.h does.
std::vector<std::unique_ptr<unsigned char[]>>* spare_buffers() {
  return base::this_thread_instance<std::vector<std::unique_ptr<unsigned char[]>>>();
}
}  // namespace

boost::asio::mutable_buffer TlsStream::read_space() {
  if (!in_) {
    auto* spare = spare_buffers();
    if (spare != nullptr && !spare->empty()) {
      in_ = std::move(spare->back());
      spare->pop_back();
    } else {
      in_.reset(new unsigned char[kReadBuffer]);  // not zero-filled: only bytes read are ever read back
    }
  }
  if (in_begin_ > 0) {
    std::memmove(in_.get(), in_.get() + in_begin_, in_end_ - in_begin_);
    in_end_ -= in_begin_;
    in_begin_ = 0;
  }
  return boost::asio::buffer(in_.get() + in_end_, kReadBuffer - in_end_);
}

bool TlsStream::read_now(boost::system::error_code& ec) {
  if (!socket_.is_open()) {
    ec = boost::asio::error::bad_descriptor;
    return false;
  }
  const boost::asio::mutable_buffer space = read_space();
  ssize_t n;
  do {
    n = ::recv(socket_.native_handle(), space.data(), space.size(), 0);
  } while (n < 0 && errno == EINTR);
  if (n > 0) {
    in_end_ += static_cast<size_t>(n);
    return true;
  }
  if (n == 0) {
    peer_eof_ = true;
    return true;
  }
  if (errno != EAGAIN && errno != EWOULDBLOCK) ec.assign(errno, boost::system::system_category());
  return false;
}

TlsStream::TlsStream(boost::asio::ip::tcp::socket& socket, SSL_CTX* context)
    : socket_(socket), ssl_(SSL_new(context)) {
  BIO* bio = ssl_ != nullptr ? BIO_new(bio_method()) : nullptr;
  if (bio == nullptr) {
    SSL_free(ssl_);
    ERR_clear_error();
    boost::throw_exception(std::bad_alloc());
  }
  BIO_set_data(bio, this);
  SSL_set_bio(ssl_, bio, bio);  // the SSL owns it
  // As Asio's engine: a write completes per record, and a retried write may come from a moved buffer.
  SSL_set_mode(ssl_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  SSL_set_accept_state(ssl_);
  SSL_clear_mode(ssl_, SSL_MODE_RELEASE_BUFFERS);
  // OpenSSL's sends go straight to the socket: they must not block. A worker's accepted socket already is
  // (accept_socket.h), which saves the ioctl.
  if (!socket_.non_blocking()) {
    boost::system::error_code ec;
    socket_.non_blocking(true, ec);
    if (ec) socket_.close(ec);  // every operation then fails (perform checks)
  }
}

TlsStream::~TlsStream() {
  SSL_free(ssl_);
  auto* spare = in_ ? spare_buffers() : nullptr;
  if (spare != nullptr && spare->size() < kSpareBuffers) spare->push_back(std::move(in_));
}

TlsStream::Step TlsStream::perform(Kind kind, void* data, size_t size) {
  Step step;
  // The BIO sends on the descriptor's number: once the socket is closed that number may be another
  // connection's.
  if (!socket_.is_open()) {
    step.ec = boost::asio::error::bad_descriptor;
    return step;
  }
  if (!out_.empty() && !flush(step.ec)) {
    if (!step.ec) step.want = Want::write;
    return step;
  }
  // SSL_get_error reads the queue first: an error some other code left on this thread would pass for ours.
  if (ERR_peek_error() != 0) ERR_clear_error();
  errno = 0;
  int ret = 0;
  switch (kind) {
    case Kind::handshake: {
      corked_ = true;
      ret = SSL_do_handshake(ssl_);
      corked_ = false;
      const int handshake_errno = errno;
      boost::system::error_code ec;
      const bool sent = flush(ec);
      errno = handshake_errno;  // the handshake's, for SSL_ERROR_SYSCALL below
      if (!sent && ret > 0) {
        // Done, but the last flight is not all sent: the next attempt sends it, then finds the handshake
        // done.
        if (ec) ERR_clear_error();
        step.ec = ec;
        step.want = ec ? Want::nothing : Want::write;
        return step;
      }
      if (ret <= 0 && !out_.empty() && SSL_get_error(ssl_, ret) == SSL_ERROR_WANT_READ) {
        step.want = Want::write;  // the flight first; the next attempt then wants the peer's answer
        return step;
      }
      break;
    }
    case Kind::read:
      if (size == 0) return step;
      ret = SSL_read_ex(ssl_, data, size, &step.bytes);
      break;
    case Kind::write:
      if (size == 0) return step;
      ret = SSL_write_ex(ssl_, data, size, &step.bytes);
      break;
    case Kind::shutdown:
      ret = SSL_shutdown(ssl_);
      if (ret == 0) ret = 1;  // close_notify sent; the peer's is not awaited
      break;
  }
  if (ret > 0) return step;
  step.bytes = 0;
  const int sys_errno = errno;
  switch (SSL_get_error(ssl_, ret)) {
    case SSL_ERROR_WANT_READ:
      step.want = Want::read;
      return step;
    case SSL_ERROR_WANT_WRITE:
      step.want = Want::write;
      return step;
    case SSL_ERROR_ZERO_RETURN:
      step.ec = boost::asio::error::eof;
      return step;
    case SSL_ERROR_SYSCALL: {
      const unsigned long e = ERR_get_error();
      if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SYS) {
        step.ec = boost::system::error_code(ERR_GET_REASON(e), boost::system::system_category());
      } else if (sys_errno != 0) {
        step.ec = boost::system::error_code(sys_errno, boost::system::system_category());
      } else {
        step.ec = boost::asio::ssl::error::stream_truncated;
      }
      break;
    }
    case SSL_ERROR_SSL: {
      const unsigned long e = ERR_get_error();
      if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) == SSL_R_UNEXPECTED_EOF_WHILE_READING) {
        step.ec = boost::asio::ssl::error::stream_truncated;
      } else if (e != 0 && ERR_GET_LIB(e) == ERR_LIB_SYS) {
        step.ec = boost::system::error_code(ERR_GET_REASON(e), boost::system::system_category());
      } else {
        step.ec = boost::system::error_code(static_cast<int>(e), boost::asio::error::get_ssl_category());
      }
      break;
    }
    default:
      step.ec = boost::asio::error::operation_not_supported;
      break;
  }
  if (!step.ec) step.ec = boost::asio::error::fault;  // an SSL error without a code: still an error
  ERR_clear_error();
  return step;
}

}  // namespace portico::proxy
