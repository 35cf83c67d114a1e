// Test helpers for the Redis client: real redis-server processes on free loopback ports (killed when the
// fixture goes, also on failure), a recording Call, and running an io_context until a condition holds.
#pragma once

#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "redis/client.h"
#include "redis/registry.h"

namespace portico::redis::testing {

inline uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  socklen_t len = sizeof a;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

inline bool port_is_free(uint16_t port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(port);
  bool ok = ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  ::close(fd);
  return ok;
}

// A port for a cluster node or its bus (given with Redis 7's --cluster-port, so the bus is not port + 10000):
// below the kernel's ephemeral range (32768+), where an outgoing connection could take it between this check
// and the server's bind.
inline uint16_t free_cluster_port() {
  static uint16_t next = static_cast<uint16_t>(20000 + (::getpid() * 37) % 12000);
  while (true) {
    uint16_t p = next++;
    if (next >= 32000) next = 20000;
    if (port_is_free(p)) return p;
  }
}

// redis-cli's output for `args` against port (admin side of the tests, blocking).
inline std::string cli(uint16_t port, const std::string& args) {
  std::string cmd = "redis-cli -p " + std::to_string(port) + " " + args + " 2>&1";
  std::string out;
  if (FILE* f = ::popen(cmd.c_str(), "r")) {
    char buf[4096];
    size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f)) > 0) out.append(buf, n);
    ::pclose(f);
  }
  while (!out.empty() && (out.back() == '\n' || out.back() == '\r')) out.pop_back();
  return out;
}

// Polls `done` up to `seconds` (for external processes only: their readiness has no event to wait on).
inline bool eventually(const std::function<bool()>& done, double seconds = 10) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < end) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

class RedisServer {
 public:
  explicit RedisServer(std::vector<std::string> extra = {}, uint16_t port = 0)
      : port_(port ? port : free_port()), extra_(std::move(extra)) {
    start();
  }
  ~RedisServer() { stop(); }

  void start() {
    std::vector<std::string> args = {
        "redis-server", "--port", std::to_string(port_), "--bind",  "127.0.0.1",   "--save", "",
        "--appendonly", "no",     "--loglevel",          "warning", "--daemonize", "no"};
    args.insert(args.end(), extra_.begin(), extra_.end());
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlives the test, even when it is killed
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      int null = ::open("/dev/null", O_WRONLY);
      ::dup2(null, 1);
      ::execvp("redis-server", argv.data());
      ::_exit(127);
    }
    // PONG, or NOAUTH with requirepass: either way it answers.
    eventually([&] {
      std::string out = cli(port_, "PING");
      return out.find("PONG") != std::string::npos || out.find("NOAUTH") != std::string::npos;
    });
  }
  void stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGCONT);
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
  }
  void signal(int sig) { ::kill(pid_, sig); }
  uint16_t port() const { return port_; }
  bool running() const { return pid_ > 0; }

 private:
  uint16_t port_;
  std::vector<std::string> extra_;
  pid_t pid_ = -1;
};

// Records its outcome (a copy of the reply's main fields).
struct RecordingCall : Call {
  int completions = 0;
  Result result = Result::ok;
  ReplyType type = ReplyType::nil;
  std::string str;
  int64_t integer = 0;
  std::function<void(RecordingCall&)> on_complete;
  RecordingCall() = default;
  // Copies the outcome of a completed call (a pending call is never copied).
  RecordingCall(const RecordingCall& o)
      : Call(), completions(o.completions), result(o.result), type(o.type), str(o.str), integer(o.integer) {}
  void complete(Result r, const Reply* reply) override {
    ++completions;
    result = r;
    if (reply != nullptr) {
      type = reply->type;
      str.assign(reply->str);
      integer = reply->integer;
    }
    if (on_complete) on_complete(*this);
  }
};

// Runs `context` until `done` holds or `seconds` pass.
inline bool run_until(boost::asio::io_context& context, const std::function<bool()>& done,
                      double seconds = 5) {
  auto end = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (!done() && std::chrono::steady_clock::now() < end) {
    context.restart();
    context.run_one_for(std::chrono::milliseconds(10));
  }
  return done();
}

inline Options local(uint16_t port, double timeout = 1.0) {
  Options o;
  o.nodes = {{"127.0.0.1", port}};
  o.timeout_seconds = timeout;
  return o;
}

}  // namespace portico::redis::testing
