#include "proxy/h2_connection.h"

#include <nghttp2/nghttp2.h>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <vector>

#include "base/log.h"
#include "base/time.h"
#include "proxy/h2_stream.h"
#include "proxy/recycling.h"
#include "proxy/session.h"
#include "proxy/worker.h"

namespace portico::proxy {

namespace asio = boost::asio;
using asio::awaitable;
using namespace asio::experimental::awaitable_operators;
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

namespace {
constexpr size_t kReadBuffer = 16 * 1024;
constexpr size_t kWriteBatch = 64 * 1024;  // bytes gathered from the codec per write
constexpr size_t kHeadBuffer = 4 * 1024;   // a request head usually fits (it grows when not)
// Drain: the final GOAWAY follows the shutdown notice once the PING sent with it is acknowledged (one round
// trip, RFC 9113 6.8: streams the client opened meanwhile are still served), or after this long at most.
constexpr auto kFinalGoawayDelay = std::chrono::seconds(1);

using base::seconds;

http2::ServerLimits limits_for(const Options& opt) {
  http2::ServerLimits l;
  l.max_header_list_size = static_cast<uint32_t>(opt.max_header_size);
  l.max_requests = opt.http2_max_requests;
  return l;
}
}  // namespace

H2Connection::H2Connection(Worker& worker, ClientStream& client, ConnectionInfo info)
    : worker_(worker),
      client_(client),
      info_(std::move(info)),
      codec_(limits_for(worker.options()), *this),
      read_timer_(worker.context()),
      wake_(worker.context()),
      send_timer_(worker.context()),
      stream_io_(worker.context()),
      started_(Clock::now()),
      idle_since_(started_) {}

H2Connection::~H2Connection() = default;

asio::any_io_executor H2Connection::executor() {
  return worker_.context().get_executor();
}

void H2Connection::wake_writer() {
  wake_.cancel();
}

void H2Connection::stop() {
  if (!closing_) read_cancel_.emit(asio::cancellation_type::terminal);
  closing_ = true;
  read_timer_.cancel();
  wake_writer();
}

void H2Connection::maybe_finish() {
  // After the final GOAWAY the connection ends once nghttp2 has nothing left to send and no open stream
  // (want_read and want_write both false): the writer decides, since reading must go on meanwhile (the
  // client's WINDOW_UPDATEs are what lets the last responses out).
  if (codec_.goaway_sent()) wake_writer();
}

void H2Connection::release(int32_t id) {
  streams_.erase(id);
  codec_.stream_finished(id);
  if (streams_.empty()) idle_since_ = Clock::now();
  wake_writer();
  if (!stopped_) {
    read_timer_.cancel();  // the idle deadline may apply now
    maybe_finish();
  }
}

void H2Connection::on_drain() {
  if (closing_ || codec_.goaway_sent()) return;
  codec_.shutdown_notice();
  final_goaway_at_ = Clock::now() + kFinalGoawayDelay;
  read_timer_.cancel();
  wake_writer();
}

void H2Connection::force_close() {
  forced_ = true;
  stop();
  boost::system::error_code ec;
  if (!stopped_) client_.close(ec);
  read_timer_.cancel();
  wake_writer();
  std::vector<H2Stream*> current;
  for (auto& [id, s] : streams_) current.push_back(s);
  for (H2Stream* s : current) s->on_closed(NGHTTP2_CANCEL);
}

void H2Connection::on_request(int32_t id, http2::Request& r) {
  if (closing_) {
    codec_.reset(id, NGHTTP2_REFUSED_STREAM);
    codec_.stream_finished(id);
    return;
  }
  // The request as an HTTP/1.1 head, parsed again by Portico's strict parser in the stream's Session: one
  // set of invariants for http::RequestHead whatever the codec (src/http2/README.md). Written straight into
  // a head buffer of the worker's cache, which becomes the Session's input buffer.
  const bool connect = r.method == "CONNECT";
  HeadText head{worker_.head_buffers().take(kHeadBuffer)};
  head.put(r.method);
  head.put(" ");
  head.put(connect ? r.authority : r.path);
  head.put(" HTTP/1.1\r\n");
  if (!r.authority.empty()) {
    head.put("Host: ");
    head.put(r.authority);
    head.put("\r\n");
  }
  for (const http2::Field& f : r.fields) {
    head.put(f.name);
    head.put(": ");
    head.put(f.value);
    head.put("\r\n");
  }
  H2Stream::Body body;
  body.ended = r.end_stream;
  body.has_content_length = r.has_content_length;
  body.content_length = r.content_length;
  body.chunked = !r.end_stream && !r.has_content_length;
  if (body.chunked) head.put("Transfer-Encoding: chunked\r\n");
  head.put("\r\n");
  const bool head_request = r.method == "HEAD";
  if (body.has_content_length && body.content_length == 0 && !body.ended) {
    // Nothing to read, yet the request is not over: forwarded only once END_STREAM shows that no DATA
    // contradicts its content-length. Until then only the head is kept, for --header-timeout at most.
    unstarted_[id] = Unstarted{std::move(head), body, head_request, Clock::now()};
    read_timer_.cancel();  // its deadline
    return;
  }
  start_stream(id, std::move(head), body, head_request);
}

void H2Connection::start_stream(int32_t id, HeadText head, H2Stream::Body body, bool head_request) {
  worker_.metrics().http2_streams.add();
  // Their memory is recycled per worker thread (recycling.h): a hundred streams start and end per loop turn.
  auto stream = std::allocate_shared<H2Stream>(RecyclingAllocator<H2Stream>(), shared_from_this(), id,
                                               head_request, body);
  streams_[id] = stream.get();
  auto session = std::allocate_shared<Session>(RecyclingAllocator<Session>(), worker_, stream, info_,
                                               std::move(head.buffer), head.size, stream_io_);
  stream->attach(session);
  // Not inside the codec's callback: the session may answer at once. A stream the client reset meanwhile
  // (RST_STREAM in the same read as its HEADERS) is dropped unstarted: it never reaches the origin.
  starting_.emplace_back(std::move(session), std::move(stream));
  if (starting_.size() == 1) asio::post(worker_.context(), StartTask{shared_from_this()});
}

H2Connection::StartTask::~StartTask() {
  // Destroyed unrun (the io_context went first, at shutdown): the sessions waiting in starting_ hold their
  // streams, which hold this connection; let them go, or the cycle outlives the worker.
  if (connection) connection->starting_.clear();
}

void H2Connection::StartTask::operator()() {
  std::shared_ptr<H2Connection> c = std::move(connection);
  c->start_pending();
}

void H2Connection::start_pending() {
  // Starting a session never delivers HEADERS (only a read does), so starting_ stays empty meanwhile; the
  // swap keeps both vectors' capacity.
  std::vector<std::pair<std::shared_ptr<Session>, std::shared_ptr<H2Stream>>> batch;
  batch.swap(starting_spare_);
  batch.swap(starting_);
  for (auto& [session, stream] : batch) {
    if (stream->is_open()) session->start();
  }
  batch.clear();
  starting_spare_.swap(batch);
}

void H2Connection::on_data(int32_t id, std::string_view data) {
  auto it = streams_.find(id);
  if (it == streams_.end()) {
    codec_.consume(id, data.size());
    return;
  }
  it->second->on_data(data);
}

void H2Connection::on_end_stream(int32_t id) {
  if (auto u = unstarted_.find(id); u != unstarted_.end()) {
    Unstarted pending = std::move(u->second);
    unstarted_.erase(u);
    pending.body.ended = true;
    start_stream(id, std::move(pending.head), pending.body, pending.head_request);
    return;
  }
  auto it = streams_.find(id);
  if (it != streams_.end()) it->second->on_end();
}

void H2Connection::on_stream_close(int32_t id, uint32_t error_code) {
  if (unstarted_.erase(id) != 0) {
    codec_.stream_finished(id);
    return;
  }
  auto it = streams_.find(id);
  if (it != streams_.end()) it->second->on_closed(error_code);
}

Clock::time_point H2Connection::read_deadline() {
  const Options& opt = worker_.options();
  Clock::time_point d = Clock::time_point::max();
  if (!codec_.preface_received()) {
    d = started_ + seconds(opt.header_timeout);  // the preface and first SETTINGS
  } else if (codec_.in_header_block()) {
    if (header_block_since_ == Clock::time_point::max()) header_block_since_ = Clock::now();
    d = header_block_since_ + seconds(opt.header_timeout);
  } else {
    header_block_since_ = Clock::time_point::max();
  }
  for (const auto& [id, u] : unstarted_) d = std::min(d, u.since + seconds(opt.header_timeout));
  if (streams_.empty() && codec_.live_streams() == 0 && codec_.open_streams() == 0) {
    // Idle: no stream at all, not even a finished one whose response still waits for the client's window
    // (the writer's stall deadline bounds that one).
    d = std::min(d, idle_since_ + seconds(opt.keepalive_timeout));
  }
  return std::min(d, final_goaway_at_);
}

awaitable<void> H2Connection::reader(std::string_view initial) {
  if (!initial.empty() && !codec_.receive(initial)) {
    stop();
    co_return;
  }
  wake_writer();
  in_.resize(kReadBuffer);
  while (!closing_ && codec_.want_read()) {
    auto [ec, n] = co_await client_.async_read_some(
        asio::buffer(in_.data(), in_.size()), asio::bind_cancellation_slot(read_cancel_.slot(), nothrow));
    if (ec || n == 0) {
      client_done_ = client_done_ || !closing_;
      break;
    }
    if (closing_) break;
    const bool ok = codec_.receive(std::string_view(in_.data(), n));
    wake_writer();
    if (!ok) {
      PORTICO_LOG(debug, "HTTP/2: connection error %u with %s", codec_.goaway_code(),
                  info_.client_ip_text.c_str());
      break;
    }
    if (final_goaway_at_ != Clock::time_point::max() && codec_.notice_acknowledged()) {
      // Drain: one round trip since the notice (its PING came back), so the final GOAWAY can go now.
      final_goaway_at_ = Clock::time_point::max();
      codec_.goaway(NGHTTP2_NO_ERROR);
      wake_writer();
    }
    read_timer_.cancel();  // the deadline that applies may have changed (preface seen, header block, ...)
    maybe_finish();
  }
  stop();
}

bool H2Connection::expire_unstarted(Clock::time_point now) {
  const Clock::duration limit = seconds(worker_.options().header_timeout);
  std::vector<int32_t> expired;
  for (const auto& [id, u] : unstarted_) {
    if (u.since + limit <= now) expired.push_back(id);
  }
  for (int32_t id : expired) {
    // The request never ended: 408 as over HTTP/1.1 (then RST_STREAM NO_ERROR, as the request is not over).
    unstarted_.erase(id);
    codec_.submit_response(id, 408, {}, true);
    codec_.stream_finished(id);
  }
  if (!expired.empty()) wake_writer();
  return !expired.empty();
}

awaitable<void> H2Connection::watch() {
  while (!closing_) {
    const Clock::time_point deadline = read_deadline();
    read_timer_.expires_at(deadline);
    co_await read_timer_.async_wait(nothrow);
    if (closing_) break;
    const Clock::time_point now = Clock::now();
    if (now >= final_goaway_at_) {
      final_goaway_at_ = Clock::time_point::max();
      codec_.goaway(NGHTTP2_NO_ERROR);
      wake_writer();
      maybe_finish();
      continue;
    }
    if (now < deadline) continue;  // woken to re-evaluate
    if (expire_unstarted(now)) continue;
    if (!codec_.preface_received()) {
      PORTICO_LOG(debug, "HTTP/2: no preface from %s in time", info_.client_ip_text.c_str());
    } else {
      // An incomplete header block (slowloris), or an idle connection.
      codec_.goaway(codec_.in_header_block() ? NGHTTP2_ENHANCE_YOUR_CALM : NGHTTP2_NO_ERROR);
    }
    stop();
  }
}

awaitable<void> H2Connection::writer() {
  const Options& opt = worker_.options();
  const Clock::duration send_timeout = seconds(opt.client_send_timeout);
  std::vector<H2Stream*> parked;
  // The connection's stall clock: since when response bytes have waited (queued in the codec, or parked in
  // a Session while the connection is over its bound) with no DATA byte framed; max while not stalled.
  // Only DATA counts as progress: a client that answers PINGs or opens streams but never a window must not
  // keep the clock from running. It covers the parked Sessions too, or their own send deadlines (which
  // reset their streams) could leave a connection that opens no window without any deadline at all.
  Clock::time_point stalled_since = Clock::time_point::max();
  uint64_t framed_seen = 0;
  while (true) {
    out_.clear();
    codec_.produce(out_, kWriteBatch);
    parked.clear();
    for (auto& [id, s] : streams_) {
      if (s->write_parked()) parked.push_back(s);
    }
    size_t still_parked = 0;
    const size_t queued_before = codec_.queued_total();
    for (H2Stream* s : parked) {
      s->on_drained();
      still_parked += s->write_parked() ? 1 : 0;
    }
    // A parked write whose bytes went into the codec just now woke nobody (this coroutine is awake): frame
    // them before sleeping. Each such round empties a parked write, so this cannot spin.
    if (out_.empty() && codec_.queued_total() > queued_before) continue;
    const bool waiting = !codec_.failed() && (codec_.queued_total() > 0 || still_parked > 0);
    if (!waiting || codec_.data_framed() != framed_seen) {
      framed_seen = codec_.data_framed();
      stalled_since = Clock::time_point::max();
    } else if (stalled_since == Clock::time_point::max()) {
      stalled_since = Clock::now();
    } else if (Clock::now() >= stalled_since + send_timeout) {
      PORTICO_LOG(debug, "HTTP/2: %s opened no window for %zu queued bytes and %zu waiting streams in time",
                  info_.client_ip_text.c_str(), codec_.queued_total(), still_parked);
      codec_.terminate(NGHTTP2_ENHANCE_YOUR_CALM);  // its GOAWAY goes next round, then want_write is false
      stalled_since = Clock::time_point::max();
      if (out_.empty()) continue;
    }
    if (out_.empty()) {
      if (closing_) break;
      if (!codec_.want_read() && !codec_.want_write()) {
        stop();
        break;
      }
      wake_.expires_at(stalled_since == Clock::time_point::max() ? stalled_since
                                                                 : stalled_since + send_timeout);
      co_await wake_.async_wait(nothrow);
      continue;
    }
    // --send-timeout bounds the time without progress (nginx send_timeout), not a whole batch: each
    // write_some must move at least one byte in time.
    size_t done = 0;
    bool failed = false;
    while (done < out_.size()) {
      send_timer_.expires_after(send_timeout);
      auto result =
          co_await (client_.async_write_some(asio::buffer(out_.data() + done, out_.size() - done), nothrow) ||
                    send_timer_.async_wait(nothrow));
      if (result.index() == 1 || std::get<0>(std::get<0>(result))) {
        failed = true;
        break;
      }
      done += std::get<1>(std::get<0>(result));
    }
    if (failed) {
      client_done_ = true;
      stop();
      break;
    }
    // The last bytes of finished streams went out: the idle deadline may apply now.
    if (streams_.empty()) read_timer_.cancel();
  }
}

awaitable<void> H2Connection::run(std::string_view initial) {
  auto self = shared_from_this();
  worker_.metrics().http2_connections.add();
  co_await (reader(initial) && writer() && watch());
  if (codec_.goaway_code() != NGHTTP2_NO_ERROR) worker_.metrics().http2_errors.add();
  stopped_ = true;
  // Every stream still running ends now; their sessions go, then the connection does.
  std::vector<H2Stream*> current;
  for (auto& [id, s] : streams_) current.push_back(s);
  for (H2Stream* s : current) s->on_closed(NGHTTP2_CANCEL);
  while (!streams_.empty()) {
    wake_.expires_at(Clock::time_point::max());
    co_await wake_.async_wait(nothrow);
  }
}

}  // namespace portico::proxy
