// A Worker is one thread running one event loop (io_context with a concurrency hint of 1, so Asio skips its
// locks). It owns its listening socket (SO_REUSEPORT: the kernel spreads connections across workers), its
// client sessions, its upstream keep-alive pool, its access-log buffer and its metrics block. Nothing on the
// request path is shared with another worker except the immutable config snapshot and relaxed health flags.
//
// When accept() fails for lack of descriptors (or kernel memory), or with an error that retrying at once
// would only repeat, the worker pauses its listener and tries again after a growing delay, for descriptors
// once one can be had (base/accept_backoff.h); connections wait in the kernel's backlog meanwhile, and the
// pause is counted for /readyz.
//
// Config changes arrive as a posted task that swaps the worker's snapshot pointer; requests already running
// keep the snapshot they started with (they hold a reference), so a change never stalls or fails a request.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <thread>
#include <unordered_set>

#include "base/accept_backoff.h"
#include "proxy/access_log.h"
#include "proxy/buffer_cache.h"
#include "proxy/h2_upstream.h"
#include "proxy/options.h"
#include "proxy/upstream_pool.h"
#include "snapshot/snapshot.h"
#include "status/metrics.h"

namespace portico::tls {
class ServerContext;
}

namespace portico::proxy {

class Session;

// The snapshot as one worker holds it. Requests keep a shared_ptr to this per-worker wrapper, so the
// reference count they touch lives on a cache line that only this worker writes.
struct PinnedSnapshot {
  std::shared_ptr<const snapshot::Snapshot> snapshot;
};

class Worker {
 public:
  Worker(size_t index, const Options& options, status::Metrics& metrics, int access_log_fd);
  ~Worker();

  // Binds the listening socket (throws std::system_error on failure). Called before start().
  void listen(const boost::asio::ip::tcp::endpoint& endpoint);
  // Binds the TLS listening socket (--listen-tls); its connections handshake with `tls` (shared by all
  // workers, outlives them). Called before start().
  void listen_tls(const boost::asio::ip::tcp::endpoint& endpoint, tls::ServerContext& tls);
  void start();  // spawns the thread
  void join();
  bool finished() const { return finished_.load(); }  // the thread's loop has ended

  // Thread-safe: hands the worker a new snapshot.
  void publish(std::shared_ptr<const snapshot::Snapshot> snapshot);
  // Thread-safe: stop accepting (close the listener); then close idle connections and ask busy ones to close
  // after their current response. The worker's thread ends when its last connection is gone.
  void drain();
  // Thread-safe: close everything now (drain timeout reached).
  void abort();

  // --- worker thread only ---
  size_t index() const { return index_; }
  const Options& options() const { return options_; }
  status::WorkerMetrics& metrics() { return metrics_; }
  UpstreamPool& pool() { return pool_; }
  H2UpstreamPool& h2_pool() { return h2_pool_; }  // scheme grpc / grpcs
  // Spare session buffers: request heads (in_) and upstream I/O (up_), kept apart so neither takes the
  // other's.
  BufferCache& head_buffers() { return head_buffers_; }
  BufferCache& upstream_buffers() { return upstream_buffers_; }
  AccessLog& access_log() { return access_log_; }
  const std::shared_ptr<PinnedSnapshot>& snapshot() const { return snapshot_; }
  bool draining() const { return draining_; }
  boost::asio::io_context& context() { return context_; }
  void add_session(Session* s) { sessions_.insert(s); }
  void remove_session(Session* s);

 private:
  // One listening socket: plain, or TLS (`tls` set). Each pauses and resumes on its own (AcceptBackoff).
  struct Listener {
    Listener(boost::asio::io_context& context, std::string name)
        : acceptor(context), retry(context), backoff(std::move(name)) {}
    boost::asio::ip::tcp::acceptor acceptor;
    boost::asio::steady_timer retry;
    base::AcceptBackoff backoff;
    tls::ServerContext* tls = nullptr;
    boost::asio::ip::tcp::endpoint peer;  // filled by accept(2) itself: no getpeername per connection
  };
  static void bind(boost::asio::ip::tcp::acceptor& acceptor, const boost::asio::ip::tcp::endpoint& endpoint);
  void accept_next(Listener& l);
  void retry_accept(Listener& l, std::chrono::milliseconds delay);
  bool listening() const;
  void tick();
  void maybe_finish();

  size_t index_;
  const Options& options_;
  status::WorkerMetrics& metrics_;
  // Declared before the io_context: destroying the context destroys sessions still parked in it (after an
  // aborted drain), and their destructors unregister here and give their buffers back.
  std::unordered_set<Session*> sessions_;
  BufferCache head_buffers_;
  BufferCache upstream_buffers_;
  bool draining_ = false;
  boost::asio::io_context context_;
  Listener plain_;
  std::unique_ptr<Listener> tls_;  // --listen-tls
  boost::asio::steady_timer tick_timer_;
  UpstreamPool pool_;
  H2UpstreamPool h2_pool_;
  AccessLog access_log_;
  std::shared_ptr<PinnedSnapshot> snapshot_;
  std::atomic<bool> finished_{false};
  std::thread thread_;
};

}  // namespace portico::proxy
