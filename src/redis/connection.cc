#include <openssl/ssl.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/write.hpp>

#include "base/log.h"
#include "redis/internal.h"
#include "redis/resp.h"

namespace portico::redis {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
constexpr size_t kRingInitial = 64;
constexpr size_t kRingKeep = 1024;         // an idle connection's ring larger than this shrinks back
constexpr size_t kBufferKeep = 64 * 1024;  // same for the output buffers' capacity
}  // namespace

Connection::Connection(ClientCore& core, std::string host, uint16_t port, Breaker& breaker)
    : core_(core), host_(std::move(host)), port_(port), breaker_(breaker) {
  name_ = (host_.find(':') != std::string::npos ? "[" + host_ + "]" : host_) + ":" + std::to_string(port_);
  ring_.resize(kRingInitial);
}

Connection::~Connection() {
  close_io();
}

void Connection::close_io() {
  if (!io_) return;
  io_->owner = nullptr;
  boost::system::error_code ec;
  io_->resolver.cancel();
  io_->socket.close(ec);
  io_.reset();  // handlers still pending hold it until they run
}

void Connection::push(Call* call, Kind kind) {
  if (count_ == ring_.size()) {
    std::vector<Slot> bigger(ring_.size() * 2);
    for (size_t i = 0; i < count_; ++i) bigger[i] = ring_[(head_ + i) & (ring_.size() - 1)];
    ring_.swap(bigger);
    head_ = 0;
  }
  ring_[(head_ + count_) & (ring_.size() - 1)] = {call, kind};
  if (call != nullptr) {
    call->conn_ = this;
    call->seq_ = head_seq_ + count_;
    call->state_ = kInFlight;
  }
  ++count_;
}

void Connection::connect() {
  state_ = connecting;
  parser_.reset();
  out_.clear();
  connect_deadline_ = Clock::now() + core_.timeout;
  core_.arm(connect_deadline_);
  // The handshake goes first; user commands queued meanwhile follow it in the same write.
  const Options& o = core_.options;
  handshake_left_ = 0;
  if (!o.password.empty()) {
    if (o.username.empty()) {
      std::string_view argv[] = {"AUTH", o.password};
      append_command(out_, argv);
    } else {
      std::string_view argv[] = {"AUTH", o.username, o.password};
      append_command(out_, argv);
    }
    push(nullptr, kHandshake);
    ++handshake_left_;
  }
  if (!o.cluster && o.database != 0) {
    std::string db = std::to_string(o.database);
    std::string_view argv[] = {"SELECT", db};
    append_command(out_, argv);
    push(nullptr, kHandshake);
    ++handshake_left_;
  }
  // PING: the connection counts as working (and the breaker closes) only once the server answered.
  std::string_view ping[] = {"PING"};
  append_command(out_, ping);
  push(nullptr, kHandshake);
  ++handshake_left_;

  io_ = std::make_shared<Io>(this, core_.context);
  auto io = io_;
  auto on_connect = [this, io](const boost::system::error_code& ec) {
    if (io->owner == nullptr) return;
    if (ec) return fail(Result::unavailable, "connect: " + ec.message(), true);
    boost::system::error_code ignored;
    io->socket.set_option(tcp::no_delay(true), ignored);
    if (!core_.tls) return on_connected();
    const Options& opt = core_.options;
    io->tls.emplace(io->socket, core_.tls->context);
    const std::string& sni = opt.server_name.empty() ? host_ : opt.server_name;
    SSL_set_tlsext_host_name(io->tls->native_handle(), sni.c_str());
    if (opt.tls_verify) {
      io->tls->set_verify_mode(asio::ssl::verify_peer);
      io->tls->set_verify_callback(asio::ssl::host_name_verification(sni));
    } else {
      io->tls->set_verify_mode(asio::ssl::verify_none);
    }
    io->tls->async_handshake(asio::ssl::stream_base::client,
                             [this, io](const boost::system::error_code& ec2) {
                               if (io->owner == nullptr) return;
                               if (ec2)
                                 return fail(Result::unavailable, "TLS handshake: " + ec2.message(), true);
                               on_connected();
                             });
  };
  boost::system::error_code ec;
  auto address = asio::ip::make_address(host_, ec);
  if (!ec) {
    io->socket.async_connect(tcp::endpoint(address, port_), on_connect);
    return;
  }
  io->resolver.async_resolve(
      host_, std::to_string(port_),
      [this, io, on_connect](const boost::system::error_code& ec2, tcp::resolver::results_type results) {
        if (io->owner == nullptr) return;
        if (ec2) return fail(Result::unavailable, "resolve " + host_ + ": " + ec2.message(), true);
        asio::async_connect(
            io->socket, results,
            [on_connect](const boost::system::error_code& ec3, const tcp::endpoint&) { on_connect(ec3); });
      });
}

void Connection::on_connected() {
  state_ = handshaking;
  read();
  schedule_flush();
}

void Connection::send(Call* call) {
  if (state_ == down) connect();  // queues the handshake first
  if (call->asking_) {
    call->asking_ = false;
    std::string_view asking[] = {"ASKING"};
    append_command(out_, asking);
    push(nullptr, kIgnore);
  }
  out_.append(call->wire_);
  push(call, kUser);
  schedule_flush();
}

void Connection::forget(Call* call) {
  size_t i = call->seq_ - head_seq_;
  if (i < count_) {
    Slot& s = ring_[(head_ + i) & (ring_.size() - 1)];
    if (s.call == call) s.call = nullptr;
  }
  call->conn_ = nullptr;
}

void Connection::schedule_flush() {
  if (flush_posted_ || write_active_ || state_ < handshaking || out_.empty()) return;
  flush_posted_ = true;
  // Posted: everything issued in this turn of the loop goes out in one write.
  auto io = io_;
  asio::post(core_.context, [this, io] {
    if (io->owner == nullptr) return;
    flush_posted_ = false;
    flush();
  });
}

void Connection::flush() {
  if (write_active_ || out_.empty()) return;
  writing_.swap(out_);
  out_.clear();
  write_active_ = true;
  // From here every call queued so far may reach the server: none of them is ever sent again.
  written_seq_ = head_seq_ + count_;
  auto io = io_;
  auto done = [this, io](const boost::system::error_code& ec, size_t) {
    if (io->owner == nullptr) return;
    write_active_ = false;
    writing_.clear();
    if (ec) return fail(Result::unavailable, "write: " + ec.message(), true);
    flush();
    shrink_if_idle();
  };
  if (io->tls) {
    asio::async_write(*io->tls, asio::buffer(writing_), done);
  } else {
    asio::async_write(io->socket, asio::buffer(writing_), done);
  }
}

void Connection::read() {
  auto io = io_;
  auto done = [this, io](const boost::system::error_code& ec, size_t n) {
    if (io->owner == nullptr) return;
    if (ec)
      return fail(Result::unavailable, ec == asio::error::eof ? "closed by the server" : ec.message(), true);
    on_read(n);
  };
  if (io->tls) {
    io->tls->async_read_some(asio::buffer(io->buf), done);
  } else {
    io->socket.async_read_some(asio::buffer(io->buf), done);
  }
}

void Connection::on_read(size_t n) {
  auto io = io_;
  if (!parser_.feed(io->buf, n)) return fail(Result::unavailable, "protocol error", true);
  while (const Reply* reply = parser_.next()) {
    if (count_ == 0) return fail(Result::unavailable, "reply without a request", true);
    Slot slot = ring_[head_];
    head_ = (head_ + 1) & (ring_.size() - 1);
    --count_;
    ++head_seq_;
    switch (slot.kind) {
      case kHandshake:
        if (reply->is_error()) {
          return fail(Result::unavailable, "handshake: " + std::string(reply->str), true);
        }
        if (--handshake_left_ == 0) {
          state_ = up;
          connect_deadline_ = Clock::time_point::max();
          ++core_.stats.connects;
          breaker_.success();
        }
        break;
      case kIgnore:
        break;
      case kUser:
        if (slot.call != nullptr) {
          slot.call->conn_ = nullptr;
          core_.on_reply(*this, slot.call, *reply);
          // The completion may have issued or cancelled calls, never failed this connection.
          if (io->owner == nullptr) return;
        }
        break;
    }
  }
  if (parser_.failed())
    return fail(Result::unavailable, std::string("protocol error: ") + parser_.error(), true);
  shrink_if_idle();
  read();
}

void Connection::shrink_if_idle() {
  // A stall at a high rate grows the ring and the buffers to tens of thousands of entries; once nothing is
  // in flight, give that memory back instead of keeping it for the connection's lifetime.
  if (count_ != 0) return;
  if (ring_.size() > kRingKeep) {
    std::vector<Slot>(kRingInitial).swap(ring_);
    head_ = 0;
  }
  if (!write_active_ && writing_.capacity() > kBufferKeep) std::string().swap(writing_);
  if (out_.empty() && out_.capacity() > kBufferKeep) std::string().swap(out_);
}

void Connection::fail(Result result, const std::string& why, bool breaker_failure) {
  if (state_ == down) return;
  const bool was_up = state_ == up;
  close_io();
  state_ = down;
  out_.clear();
  writing_.clear();
  write_active_ = false;
  flush_posted_ = false;
  connect_deadline_ = Clock::time_point::max();
  const Clock::time_point now = Clock::now();
  // Take the whole FIFO first: handing a call over may queue new ones on this connection.
  std::vector<std::pair<Call*, bool>> calls;  // the call, written
  calls.reserve(count_);
  for (size_t i = 0; i < count_; ++i) {
    Slot& s = ring_[(head_ + i) & (ring_.size() - 1)];
    if (s.kind == kUser && s.call != nullptr) calls.emplace_back(s.call, head_seq_ + i < written_seq_);
  }
  head_seq_ += count_;
  written_seq_ = head_seq_;
  head_ = 0;
  count_ = 0;
  shrink_if_idle();
  if (breaker_failure) {
    breaker_.failure(now.time_since_epoch().count(), why);
  } else if (was_up) {
    PORTICO_LOG(debug, "redis %s: %s", breaker_.name.c_str(), why.c_str());
  }
  for (auto [c, written] : calls) {
    c->conn_ = nullptr;
    core_.on_lost(c, c->deadline_ <= now ? Result::timeout : result, written);
  }
}

Clock::time_point Connection::earliest_deadline() const {
  Clock::time_point t = connect_deadline_;
  for (size_t i = 0; i < count_; ++i) {
    const Slot& s = ring_[(head_ + i) & (ring_.size() - 1)];
    if (s.call != nullptr && s.call->deadline_ < t) t = s.call->deadline_;
  }
  return t;
}

bool Connection::expired(Clock::time_point now) const {
  if (state_ == down) return false;
  return earliest_deadline() <= now;
}

void Connection::abandon(CallList& out) {
  for (size_t i = 0; i < count_; ++i) {
    Slot& s = ring_[(head_ + i) & (ring_.size() - 1)];
    if (s.kind == kUser && s.call != nullptr) {
      s.call->conn_ = nullptr;
      out.push(s.call);
    }
  }
  head_seq_ += count_;
  written_seq_ = head_seq_;
  head_ = 0;
  count_ = 0;
  close_io();
  state_ = down;
}

}  // namespace portico::redis
