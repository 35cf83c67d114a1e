// The Redis client of the worker event loops (README.md has the design).
//
// One Client per (worker, Redis target), reached through redis::Registry / redis::Target (registry.h). It
// runs on its worker's io_context: every method must be called on that worker's thread, and nothing on the
// request path blocks, locks or hops threads. Commands are pipelined on one connection per node (a
// standalone server, or each master of a cluster); replies are matched in order.
//
// A call is a caller-owned, intrusive object (redis::Call): issuing a command allocates nothing once the
// call's buffer has grown. The client completes every call exactly once, with a reply or with an outcome
// that says why there is none (Result), unless the caller cancelled it first. A completion never runs inside
// the method that issued the call: when the outcome is known at once (circuit breaker open), it is posted.
//
// Failure behaviour: each call has a deadline (Options::timeout_seconds); a call not answered by then
// completes `timeout` and its connection is closed (a late reply would shift every later one). A failed
// connect or a timeout opens the target's circuit breaker (shared by the workers) for a back-off period that
// doubles from 50 ms to 2 s: calls issued meanwhile complete `unavailable` at once; after it, one connection
// attempt (the probe) decides whether it closes again.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "redis/reply.h"

namespace boost::asio {
class io_context;
}

namespace portico::redis {

// What identifies a Redis target. Plain data; filled by the plugins from APISIX's redis_* fields.
struct Options {
  // host, port: the server (standalone) or the seed nodes (cluster).
  std::vector<std::pair<std::string, uint16_t>> nodes;
  bool cluster = false;
  std::string username;          // empty: AUTH <password> (the requirepass form)
  std::string password;          // empty: no AUTH
  int database = 0;              // standalone only (SELECT when not 0)
  double timeout_seconds = 1.0;  // per call: connect + send + reply
  bool tls = false;
  bool tls_verify = false;  // verify the server certificate against the system CAs (and its name)
  std::string server_name;  // SNI (and the name verified); empty: the node's host

  // Canonical identity: equal Options give equal keys. The password appears only as a salted hash, so the
  // key may be logged; Options themselves never are.
  std::string key() const;
  // "host:port[,host:port...]" for log lines (no secrets).
  std::string describe() const;
};

enum class Result : uint8_t {
  ok,           // a reply (possibly nil); never an error reply
  error,        // an error reply (-ERR ..., other than the MOVED/ASK/NOSCRIPT/TRYAGAIN the client handles)
  timeout,      // no reply within the deadline
  unavailable,  // not sent (circuit open, connect failed), or its connection was lost after it was written:
                // it may have run, and it is never sent again
  shutdown,     // the client was destroyed with the call pending
};
const char* result_name(Result result);

class Client;
class Script;

// A call in progress. Derive from it and implement complete(); the object must stay alive until complete()
// ran or cancel() returned. It may be reused for another call once completed (or cancelled).
class Call {
 public:
  // Exactly once per issued call, on the worker thread, never from inside the method that issued it.
  // `reply` is non-null for ok and error and valid only during this call; null otherwise. complete() may
  // issue new calls (this one included) and cancel others.
  virtual void complete(Result result, const Reply* reply) = 0;

  bool pending() const { return client_ != nullptr; }

 protected:
  Call() = default;
  ~Call() = default;  // the caller cancels a pending call before destroying it
  Call(const Call&) = delete;
  Call& operator=(const Call&) = delete;

 private:
  friend class Client;
  friend class Connection;
  friend struct ClientCore;
  friend struct CallList;

  Client* client_ = nullptr;  // non-null while pending
  Call* prev_ = nullptr;      // intrusive list: waiting for a connection, a retry or a posted completion
  Call* next_ = nullptr;
  void* conn_ = nullptr;  // the Connection it is in flight on (null when not written)
  uint64_t seq_ = 0;      // its slot in that connection's FIFO
  std::chrono::steady_clock::time_point deadline_{};
  std::string wire_;                // the encoded command (kept for retries), buffer reused across calls
  size_t rest_ = 0;                 // eval: offset in wire_ of the first key (after EVALSHA sha numkeys)
  const Script* script_ = nullptr;  // eval: must outlive the call
  int slot_ = -1;                   // cluster hash slot (-1: any node)
  uint8_t state_ = 0;
  uint8_t attempts_ = 0;        // redirects and retries so far
  uint32_t park_epoch_ = 0;     // cluster: parked for an open breaker until map ClientCore::map_epoch >= it
  bool asking_ = false;         // next send goes to ask_node_ preceded by ASKING
  bool owned_ = false;          // allocated by the client for a fire-and-forget command
  Result result_ = Result::ok;  // for posted completions
  std::string ask_node_;        // "host:port" of an ASK redirect
};

// A Lua script, its SHA1 computed once (OpenSSL). Immutable; share it between calls and workers.
class Script {
 public:
  explicit Script(std::string source);
  const std::string& source() const { return source_; }
  const std::string& sha() const { return sha_; }  // 40 lowercase hex digits

 private:
  std::string source_;
  std::string sha_;
};

class Target;
struct ClientCore;

class Client {
 public:
  // Pending calls complete `shutdown` (synchronously, from the destructor); calls issued from those
  // completions are dropped (never completed).
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `argv` (argv[0] the command name). In cluster mode it goes to the node serving argv[1]'s slot
  // (commands without a key, e.g. PING, go to any node). `call` may be null: fire and forget.
  void command(std::span<const std::string_view> argv, Call* call);
  // EVALSHA script.sha() with `keys` and `args`; on NOSCRIPT, EVAL with the source (which loads it) on the
  // same node, transparently. In cluster mode routed by keys[0] (all keys must share a slot: use hash tags).
  void eval(const Script& script, std::span<const std::string_view> keys,
            std::span<const std::string_view> args, Call* call);
  // Forgets a pending call: complete() will not run for it. No-op when not pending.
  void cancel(Call* call);

  // False while the target's circuit breaker is open (calls would complete `unavailable`).
  bool available() const;
  const Options& options() const;

  // Counters for tests and metrics (worker thread).
  struct Stats {
    uint64_t connects = 0;        // connections established
    uint64_t redirects = 0;       // MOVED and ASK followed
    uint64_t script_loads = 0;    // NOSCRIPT answered by EVAL
    uint64_t map_refreshes = 0;   // cluster slot maps fetched
    uint64_t owned_overflow = 0;  // fire-and-forget calls allocated past the pool's cap (freed when done)
    // Gauges, read when stats() is called.
    size_t owned_pooled = 0;  // fire-and-forget calls kept for reuse (at most 4096)
    size_t ring_slots = 0;    // reply slots allocated by the connections (shrunk when a connection idles)
  };
  const Stats& stats() const;

 private:
  friend class Target;
  friend class Connection;
  friend struct ClientCore;
  Client(Target& target, boost::asio::io_context& context);

  std::unique_ptr<ClientCore> core_;
};

}  // namespace portico::redis
