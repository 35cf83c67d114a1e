// Internals of the Redis client shared by client.cc, connection.cc and registry.cc: the circuit breaker, the
// per-worker client state (ClientCore) and one pipelined connection to one node (Connection). Not for
// callers. Everything but Breaker and RegistryCore is confined to one worker thread.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "redis/client.h"
#include "redis/registry.h"

namespace portico::redis {

using Clock = std::chrono::steady_clock;

int64_t now_ns();

// Per (target, node), shared by the workers. Closed (open_until == 0): connect and send freely. Open
// (now < open_until): calls complete `unavailable`. Half-open (the period is over): the first worker to
// win `probing` connects; others stay unavailable until its handshake succeeds or fails.
struct Breaker {
  std::string name;  // for logs: "<target> node host:port"
  std::atomic<int64_t> open_until{0};
  std::atomic<int32_t> backoff_ms{0};
  std::atomic<bool> probing{false};
  std::atomic<uint64_t> opens{0};  // closed -> open transitions (one per outage), for metrics

  bool is_open(int64_t now) const {
    int64_t until = open_until.load(std::memory_order_relaxed);
    return until != 0 && now < until;
  }
  bool closed() const { return open_until.load(std::memory_order_relaxed) == 0; }
  // May this worker start a connection now?
  bool try_connect(int64_t now);
  void success();
  void failure(int64_t now, const std::string& why);
};

struct RegistryCore {
  std::mutex mutex;
  std::vector<boost::asio::io_context*> contexts;
  std::unordered_map<std::string, std::weak_ptr<Target>> targets;
  // Set by Registry::shutdown(); read without the mutex by Target::client() (any thread, also from
  // destructors running inside a dying io_context).
  std::atomic<bool> shut_down{false};
};

struct TlsContext {
  boost::asio::ssl::context context{boost::asio::ssl::context::tls_client};
};

// What a Target shares with its clients (see Target::shared_).
struct TargetShared {
  // Calls completed by one worker's client, by Result (single writer: that worker; read by the status
  // thread for metrics).
  struct alignas(64) Outcomes {
    std::atomic<uint64_t> by_result[5] = {};
  };

  Options options;
  std::shared_ptr<TlsContext> tls;       // null without TLS
  std::unique_ptr<Outcomes[]> outcomes;  // one per worker
  size_t workers = 0;
  std::mutex mutex;
  std::unordered_map<std::string, std::unique_ptr<Breaker>> breakers;
  // The breaker of node "host:port", created on first use (stable address). Any thread.
  Breaker& breaker(const std::string& node);
};

enum CallState : uint8_t { kIdle = 0, kWaiting, kInFlight, kReady };

class Connection;

// An intrusive FIFO of calls (Call::prev_/next_): the waiting and the ready lists.
struct CallList {
  Call* head = nullptr;
  Call* tail = nullptr;
  void push(Call* c);
  void unlink(Call* c);
  Call* pop();
  bool empty() const { return head == nullptr; }
};

struct ClientCore {
  ClientCore(Client& self, Target& target, boost::asio::io_context& context);
  ~ClientCore();

  // Routing and sending.
  void issue(Call* call);
  void dispatch(Call* call);
  void route_to(Connection& conn, Call* call);
  Connection& connection(const std::string& host, uint16_t port);
  Connection* connection_by_name(std::string_view name);

  // Outcomes.
  void on_reply(Connection& conn, Call* call, const Reply& reply);
  // A call in flight on a connection that failed; `written`: its bytes went to the socket (it may have run).
  void on_lost(Call* call, Result result, bool written);
  // Cluster: may a call routed to a node whose breaker is open wait for a newer map? False when the latest
  // map already sent it there (the map came after the call was parked, or is as fresh as a refresh could be).
  bool may_wait_for_map(const Call* call) const;
  void finish(Call* call, Result result, const Reply* reply);
  void make_ready(Call* call, Result result);  // completed later by drain() (posted)
  void post_drain();
  void drain();
  void wait(Call* call);  // cluster: park until the next map or retry

  // Deadlines: one timer, armed at the earliest deadline; each firing sweeps everything.
  void arm(Clock::time_point deadline);
  void sweep();

  // Cluster slot map.
  void request_refresh();
  void refresh_now();
  void on_map(Connection* from, Result result, const Reply* reply);
  void redispatch_waiting();
  void arm_retry(std::chrono::milliseconds delay);

  Client& self;
  std::shared_ptr<TargetShared> shared;
  boost::asio::io_context& context;
  const Options& options;
  Clock::duration timeout;
  std::shared_ptr<bool> alive;
  std::shared_ptr<TlsContext> tls;

  boost::asio::steady_timer timer;
  Clock::time_point timer_at = Clock::time_point::max();
  boost::asio::steady_timer retry_timer;
  bool retry_armed = false;

  std::vector<std::unique_ptr<Connection>> conns;
  CallList waiting;
  CallList ready;
  bool drain_posted = false;

  // Cluster.
  static constexpr uint16_t kNoNode = 0xffff;
  std::vector<uint16_t> slots;  // slot -> index in conns
  bool have_map = false;
  uint32_t map_epoch = 0;      // maps received so far
  Clock::time_point map_at{};  // when the latest map arrived
  bool refresh_in_flight = false;
  bool refresh_wanted = false;
  Clock::time_point last_refresh{};
  size_t refresh_rotor = 0;
  struct RefreshCall : Call {
    ClientCore* core = nullptr;
    Connection* from = nullptr;
    void complete(Result result, const Reply* reply) override { core->on_map(from, result, reply); }
  } refresh_call;

  // Fire-and-forget commands borrow a call from this pool; a call in use is owned by the client's lists and
  // comes back through finish(). At most kOwnedPoolCap are kept: past it (a stall at a high rate) a call is
  // allocated for one command and freed when done, so a burst does not stay resident.
  struct OwnedCall final : Call {
    void complete(Result, const Reply*) override {}
  };
  static constexpr size_t kOwnedPoolCap = 4096;
  std::vector<std::unique_ptr<OwnedCall>> owned_free;
  size_t owned_live = 0;  // allocated (in use + pooled)
  OwnedCall* take_owned();
  void give_back(OwnedCall* call);

  Client::Stats stats;
  bool destroying = false;
  // This worker's counters in the target (set by Target::client; null in a client built otherwise).
  TargetShared::Outcomes* outcomes = nullptr;
};

// One pipelined connection to one node. Commands are appended to an output buffer and written in one write
// per loop turn; replies are matched to the FIFO of slots. Connects lazily (on the first send), sends
// AUTH / SELECT / PING ahead of everything else, and reports success or failure to the node's breaker.
class Connection {
 public:
  Connection(ClientCore& core, std::string host, uint16_t port, Breaker& breaker);
  ~Connection();

  enum State : uint8_t { down, connecting, handshaking, up };
  State state() const { return state_; }
  const std::string& name() const { return name_; }
  const std::string& host() const { return host_; }
  Breaker& breaker() { return breaker_; }

  // Starts connecting (the caller checked the breaker). Precondition: state() == down.
  void connect();
  // Queues the call's command (preceded by ASKING when the call asks for it).
  void send(Call* call);
  void forget(Call* call);
  // Drops the connection: calls in flight go to ClientCore::on_lost with `result` (timeout for those past
  // their deadline); `breaker_failure` counts it against the node.
  void fail(Result result, const std::string& why, bool breaker_failure);
  // The earliest deadline of what is in flight (max when idle), and whether anything is past `now`.
  Clock::time_point earliest_deadline() const;
  bool expired(Clock::time_point now) const;
  // Shutdown: hands every call in flight to `out` and closes.
  void abandon(CallList& out);
  size_t ring_capacity() const { return ring_.size(); }

 private:
  enum Kind : uint8_t { kUser, kHandshake, kIgnore };
  struct Slot {
    Call* call;
    Kind kind;
  };
  struct Io {
    Connection* owner;
    boost::asio::ip::tcp::socket socket;
    std::optional<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls;
    boost::asio::ip::tcp::resolver resolver;
    char buf[16384];
    explicit Io(Connection* o, boost::asio::io_context& ctx) : owner(o), socket(ctx), resolver(ctx) {}
  };

  void push(Call* call, Kind kind);
  void on_connected();
  void schedule_flush();
  void flush();
  void read();
  void on_read(size_t n);
  void close_io();
  void shrink_if_idle();

  ClientCore& core_;
  std::string host_;
  uint16_t port_;
  std::string name_;
  Breaker& breaker_;
  State state_ = down;
  std::shared_ptr<Io> io_;
  std::string out_;
  std::string writing_;
  bool write_active_ = false;
  bool flush_posted_ = false;
  ReplyParser parser_;
  std::vector<Slot> ring_;  // circular, capacity a power of two
  size_t head_ = 0;
  size_t count_ = 0;
  uint64_t head_seq_ = 0;
  uint64_t written_seq_ = 0;  // slots before it had their bytes handed to a write (they may have run)
  int handshake_left_ = 0;
  Clock::time_point connect_deadline_ = Clock::time_point::max();
};

}  // namespace portico::redis
