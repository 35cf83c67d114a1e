// H2Connection: one client connection speaking HTTP/2 (TLS with ALPN h2, or h2c with prior knowledge). It
// drives a http2::ServerCodec on the worker loop: a read loop feeds it, a write pump sends what it produces
// (one async write at a time, woken by submissions), and deadlines bound the preface, an incomplete header
// block, idleness and a stalled send. Each request stream runs in its own Session in stream mode (the same
// handle_request -> forward -> relay path as HTTP/1.1), which talks to its H2Stream instead of a socket.
//
// Ownership: created by the connection's Session (the one the worker accepted and tracks) once it knows the
// protocol; that Session awaits run() and forwards on_drain/force_close. H2Streams hold a shared_ptr to the
// connection, so the codec outlives every stream Session; run() returns only once they are all gone, and
// after it returns the client stream is never touched again. Worker thread only.
#pragma once

#include <algorithm>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstring>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "http2/server_codec.h"
#include "proxy/client_stream.h"
#include "proxy/h2_stream.h"
#include "proxy/head_writer.h"
#include "proxy/upstream_pool.h"
#include "router/ip_address.h"
#include "status/metrics.h"

namespace portico::proxy {

class Worker;
class H2Stream;

// What a stream Session learns of the connection it runs on.
struct ConnectionInfo {
  router::IpAddress client_ip;
  std::string client_ip_text;
  bool tls = false;
  std::string sni;
  std::string ssl_client_s_dn;
  const char* ssl_client_verify = "NONE";
};

// What an HTTP/2 stream's Session starts from, moved in: the ClientStream's unopened placeholder socket.
// Constructing an Asio socket looks its service up in the io_context's registry under a mutex (a linear
// search); moving one does not, and a moved-from socket is as freshly constructed (Asio's move guarantee), so
// one serves every stream of a connection. (A timer's move takes the reactor's mutex and cancels, costlier
// than its construction: the Session's timers are made as usual.) Owned by the H2Connection; worker thread
// only.
struct StreamIo {
  explicit StreamIo(boost::asio::io_context& context) : socket(context) {}
  boost::asio::ip::tcp::socket socket;
};

class H2Connection : public std::enable_shared_from_this<H2Connection>, private http2::ServerCodec::Handler {
 public:
  H2Connection(Worker& worker, ClientStream& client, ConnectionInfo info);
  ~H2Connection() override;

  // Serves the connection until it closes; `initial`: bytes already read (the h2c preface).
  boost::asio::awaitable<void> run(std::string_view initial);
  // Graceful: GOAWAY shutdown notice now, the final GOAWAY a round trip (or a second) later; open streams
  // finish.
  void on_drain();
  void force_close();
  // After run(): Portico ended the connection with a GOAWAY while the client may still be sending; closing
  // with its bytes unread would reset the connection and could destroy the GOAWAY (the Session lingers).
  bool linger_wanted() const { return codec_.goaway_sent() && !client_done_ && !forced_; }

  // --- for H2Stream ---
  http2::ServerCodec& codec() { return codec_; }
  boost::asio::any_io_executor executor();
  void wake_writer();
  void release(int32_t id);  // the stream's Session is gone
  // Where a stream builds its response head (H2Stream::start_response): one per connection, reused, since
  // a head is submitted (and copied by nghttp2) as soon as it is built.
  H2ResponseHead& head_scratch() { return head_scratch_; }

 private:
  void on_request(int32_t id, http2::Request& request) override;
  void on_data(int32_t id, std::string_view data) override;
  void on_end_stream(int32_t id) override;
  void on_stream_close(int32_t id, uint32_t error_code) override;

  // A request head as HTTP/1.1 text in a buffer of the worker's head cache: bytes [0, size).
  struct HeadText {
    std::vector<char> buffer;
    size_t size = 0;
    void put(std::string_view s) {
      if (size + s.size() > buffer.size()) buffer.resize(std::max(buffer.size() * 2, size + s.size()));
      std::memcpy(buffer.data() + size, s.data(), s.size());
      size += s.size();
    }
  };
  void start_stream(int32_t id, HeadText head, H2Stream::Body body, bool head_request);
  // Resets (408) unstarted streams whose END_STREAM is overdue; true if any was.
  bool expire_unstarted(Clock::time_point now);
  boost::asio::awaitable<void> reader(std::string_view initial);
  // The connection's deadlines (preface, header block, idle, the drain's final GOAWAY). Separate from the
  // read loop so that re-evaluating a deadline never cancels a read (a TLS read is best left whole).
  boost::asio::awaitable<void> watch();
  boost::asio::awaitable<void> writer();
  Clock::time_point read_deadline();
  void stop();          // ends the read loop; the writer flushes what is pending, then ends
  void maybe_finish();  // after the final GOAWAY: stop once no stream is left

  Worker& worker_;
  ClientStream& client_;
  ConnectionInfo info_;
  http2::ServerCodec codec_;
  std::unordered_map<int32_t, H2Stream*> streams_;
  // Requests declaring content-length 0 on a stream still open: only the head is kept until END_STREAM
  // (then the stream starts) or --header-timeout (then 408). They count as live streams in the codec.
  struct Unstarted {
    HeadText head;
    H2Stream::Body body;
    bool head_request = false;
    Clock::time_point since;
  };
  std::unordered_map<int32_t, Unstarted> unstarted_;
  // Streams whose HEADERS the codec delivered since the last start_pending: started together by one posted
  // task after the read that brought them (a read brings up to a hundred, and a task per stream cost a
  // post per stream).
  std::vector<std::pair<std::shared_ptr<Session>, std::shared_ptr<H2Stream>>> starting_;
  std::vector<std::pair<std::shared_ptr<Session>, std::shared_ptr<H2Stream>>> starting_spare_;
  void start_pending();
  // The posted task that runs start_pending; a moved-from task holds nothing.
  struct StartTask {
    std::shared_ptr<H2Connection> connection;
    explicit StartTask(std::shared_ptr<H2Connection> c) : connection(std::move(c)) {}
    StartTask(StartTask&&) = default;
    StartTask& operator=(StartTask&&) = default;
    ~StartTask();
    void operator()();
  };
  boost::asio::steady_timer read_timer_;          // watch()'s
  boost::asio::cancellation_signal read_cancel_;  // ends the pending read (stop), and only it
  boost::asio::steady_timer wake_;
  boost::asio::steady_timer send_timer_;
  StreamIo stream_io_;  // each stream's Session starts from it
  std::string out_;
  std::string in_;
  H2ResponseHead head_scratch_;
  Clock::time_point started_;
  Clock::time_point idle_since_;
  Clock::time_point header_block_since_ = Clock::time_point::max();
  Clock::time_point final_goaway_at_ = Clock::time_point::max();  // drain: the final GOAWAY is due
  bool closing_ = false;
  bool stopped_ = false;      // the client stream is no longer used
  bool client_done_ = false;  // the client closed, or a read or write failed
  bool forced_ = false;       // force_close
};

}  // namespace portico::proxy
