// Test-only (compiled into unit_store by tests/unit/store_harness_test.cc, never into portico_store): real
// etcd processes on loopback, and a TCP proxy that can cut or freeze the path to one of them.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "store/etcd_client.h"

namespace portico::store::testing {

// The etcd binary: $PORTICO_ETCD, else `etcd` on $PATH; empty if neither exists.
std::string find_etcd();

// A cluster of `etcd` processes on free loopback ports, with data under a fresh temporary directory. Members
// get SIGKILL if the test process dies (PR_SET_DEATHSIG), so no run leaves etcd behind. Not thread-safe:
// start, kill and restart from the test's main thread.
class EtcdCluster {
 public:
  EtcdCluster() = default;
  ~EtcdCluster();  // kills every member and removes the data
  EtcdCluster(const EtcdCluster&) = delete;
  EtcdCluster& operator=(const EtcdCluster&) = delete;

  // Starts `members` members and waits (polling a linearizable read, 20 s at most) until the cluster has a
  // leader. False with `error` set on failure.
  bool start(int members, std::string& error);
  std::vector<std::string> endpoints() const;
  std::string endpoint(int i) const;
  int size() const { return static_cast<int>(members_.size()); }
  void kill(int i);  // SIGKILL, then reap
  // Starts member `i` again on its data directory and waits until it answers a linearizable read.
  bool restart(int i, std::string& error);
  bool running(int i) const { return members_[i].pid > 0; }
  // Index of the current leader as the running members see it; -1 if unknown.
  int leader() const;
  std::string log_tail(int i) const;  // last lines of a member's log, for failure messages

 private:
  struct Member {
    std::string name;
    uint16_t client_port = 0;
    uint16_t peer_port = 0;
    pid_t pid = -1;
  };
  bool spawn(int i, std::string& error);
  bool wait_ready(const std::vector<int>& members, double timeout, std::string& error);

  std::string etcd_;
  std::string dir_;
  std::string initial_cluster_;
  std::vector<Member> members_;
};

// Forwards 127.0.0.1:port() to 127.0.0.1:target. cut() makes the path look like a dead member (connections
// reset, new ones refused); freeze() like a hung one (connections stay open, nothing moves, new connections
// are accepted and never served). restore() forwards again.
class TcpProxy {
 public:
  explicit TcpProxy(uint16_t target);
  ~TcpProxy();
  TcpProxy(const TcpProxy&) = delete;
  TcpProxy& operator=(const TcpProxy&) = delete;

  uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  void cut();
  void freeze();
  void restore();

 private:
  enum class Mode { forward, frozen, cut };
  void loop(int listener);
  void command(Mode mode);

  uint16_t target_;
  uint16_t port_ = 0;
  int wake_[2] = {-1, -1};
  std::mutex mu_;
  Mode mode_ = Mode::forward;  // guarded by mu_
  bool quit_ = false;          // guarded by mu_
  std::thread thread_;
};

// A listening socket whose accept queue is full: connecting to it hangs until the connect timeout, like a
// member whose machine is gone (SYNs dropped) rather than one whose process died (refused at once).
class Blackhole {
 public:
  Blackhole();
  ~Blackhole();
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  int listener_ = -1;
  std::vector<int> fillers_;
  uint16_t port_ = 0;
};

// A loopback port nobody listens on (connections are refused).
uint16_t unused_port();

// Client options with these endpoints and every other option at its default.
inline EtcdOptions options_for(std::vector<std::string> endpoints) {
  EtcdOptions o;
  o.endpoints = std::move(endpoints);
  return o;
}

// Seconds elapsed since `t`.
inline double since(std::chrono::steady_clock::time_point t) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
}

}  // namespace portico::store::testing
