#include "upstream/health_checker.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace portico::upstream {
namespace {

using namespace std::chrono_literals;

// A tiny HTTP server on 127.0.0.1 for the probes: answers 200 or 500, or reads the request and never answers.
class TestServer {
 public:
  enum class Mode { ok, error, silent };

  TestServer() {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    int one = 1;
    ::setsockopt(fd_, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    EXPECT_EQ(::bind(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(fd_, 64), 0);
    socklen_t len = sizeof addr;
    ::getsockname(fd_, reinterpret_cast<sockaddr*>(&addr), &len);
    port_ = ntohs(addr.sin_port);
    thread_ = std::thread([this] { run(); });
  }

  ~TestServer() {
    stop_ = true;
    thread_.join();
    ::close(fd_);
    for (int c : held_) ::close(c);
  }

  uint16_t port() const { return port_; }
  void set_mode(Mode m) { mode_ = m; }
  int requests() const { return requests_; }
  std::string last_request() const {
    std::lock_guard lock(mu_);
    return last_request_;
  }

 private:
  void run() {
    while (!stop_) {
      pollfd p{fd_, POLLIN, 0};
      if (::poll(&p, 1, 10) <= 0) continue;
      int c = ::accept4(fd_, nullptr, nullptr, SOCK_CLOEXEC);
      if (c < 0) continue;
      std::string req;
      char buf[1024];
      while (req.find("\r\n\r\n") == std::string::npos) {
        pollfd q{c, POLLIN, 0};
        if (::poll(&q, 1, 1000) <= 0) break;
        ssize_t n = ::recv(c, buf, sizeof buf, 0);
        if (n <= 0) break;
        req.append(buf, static_cast<size_t>(n));
      }
      {
        std::lock_guard lock(mu_);
        last_request_ = req;
      }
      ++requests_;
      Mode m = mode_;
      if (m == Mode::silent) {
        held_.push_back(c);
        continue;
      }
      std::string resp =
          m == Mode::ok
              ? "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"
              : "HTTP/1.1 500 Internal Server Error\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
      ::send(c, resp.data(), resp.size(), MSG_NOSIGNAL);
      ::close(c);
    }
  }

  int fd_ = -1;
  uint16_t port_ = 0;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<Mode> mode_{Mode::ok};
  std::atomic<int> requests_{0};
  mutable std::mutex mu_;
  std::string last_request_;
  std::vector<int> held_;
};

// A loopback port with nothing listening (connections are refused).
uint16_t closed_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr);
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  ::close(fd);
  return ntohs(addr.sin_port);
}

// Polls `pred` until it holds or the deadline passes.
bool wait_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
  auto deadline = std::chrono::steady_clock::now() + limit;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(5ms);
  }
  return true;
}

ProbeTarget target(uint16_t port, const std::string& upstream = "u1") {
  ProbeTarget t;
  t.upstream_key = upstream;
  t.address = "127.0.0.1";
  t.port = port;
  t.host_header = "backend.local";
  t.spec.timeout = 1;
  t.spec.http_path = "/status";
  t.spec.req_headers = {"X-Probe: 1"};
  t.spec.healthy.interval = 0.05;
  t.spec.healthy.successes = 2;
  t.spec.unhealthy.interval = 0.05;
  t.spec.unhealthy.http_failures = 2;
  t.spec.unhealthy.tcp_failures = 2;
  t.spec.unhealthy.timeouts = 2;
  t.health = std::make_shared<NodeHealth>();
  return t;
}

TEST(ActiveHealthChecker, HttpNodeGoesDownAndComesBack) {
  TestServer server;
  ActiveHealthChecker checker;
  ProbeTarget t = target(server.port());
  auto health = t.health;
  checker.set_targets({t});
  checker.start();

  ASSERT_TRUE(wait_until([&] { return server.requests() >= 2; }));
  EXPECT_TRUE(health->healthy());
  EXPECT_EQ(server.last_request(),
            "GET /status HTTP/1.1\r\nHost: backend.local\r\nUser-Agent: portico-healthcheck\r\n"
            "Connection: close\r\nX-Probe: 1\r\n\r\n");

  server.set_mode(TestServer::Mode::error);
  ASSERT_TRUE(wait_until([&] { return !health->healthy(); }));
  EXPECT_EQ(health->transitions(), 1u);

  server.set_mode(TestServer::Mode::ok);
  ASSERT_TRUE(wait_until([&] { return health->healthy(); }));
  EXPECT_EQ(health->transitions(), 2u);
  checker.stop();
}

TEST(ActiveHealthChecker, RefusedConnectionsAreTcpFailures) {
  ActiveHealthChecker checker;
  ProbeTarget t = target(closed_port());
  auto health = t.health;
  checker.start();
  checker.set_targets({t});
  ASSERT_TRUE(wait_until([&] { return !health->healthy(); }));
  EXPECT_EQ(health->transitions(), 1u);
}

TEST(ActiveHealthChecker, SilentServerTimesOut) {
  TestServer server;
  server.set_mode(TestServer::Mode::silent);
  ActiveHealthChecker checker;
  ProbeTarget t = target(server.port());
  t.spec.timeout = 0.1;
  auto health = t.health;
  checker.set_targets({t});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return !health->healthy(); }));
  EXPECT_GE(server.requests(), 2);
}

TEST(ActiveHealthChecker, TcpCheckOnlyConnects) {
  TestServer server;
  server.set_mode(TestServer::Mode::error);  // ignored by a tcp check
  ActiveHealthChecker checker;
  ProbeTarget t = target(server.port());
  t.spec.type = "tcp";
  auto health = t.health;
  health->set_healthy(false);
  checker.set_targets({t});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return health->healthy(); }));
  ASSERT_TRUE(wait_until([&] { return server.requests() >= 3; }));
  EXPECT_TRUE(health->healthy());
  EXPECT_EQ(server.last_request(), "");  // nothing was sent
}

TEST(ActiveHealthChecker, SetTargetsKeepsUnchangedProbesAndStopsRemovedOnes) {
  TestServer fast, slow, removed;
  ActiveHealthChecker checker;
  ProbeTarget a = target(fast.port());
  ProbeTarget b = target(slow.port());
  b.spec.healthy.interval = 60;  // probed once, then not for a minute
  ProbeTarget c = target(removed.port());
  checker.start();
  checker.set_targets({a, b, c});
  ASSERT_TRUE(
      wait_until([&] { return fast.requests() >= 2 && slow.requests() == 1 && removed.requests() >= 2; }));

  // Same (upstream, address, port, spec) for a and b: they keep running on their schedule; c stops.
  checker.set_targets({a, b});
  int base = fast.requests();
  ASSERT_TRUE(wait_until([&] { return fast.requests() >= base + 3; }));
  int c_count = removed.requests();
  base = fast.requests();
  ASSERT_TRUE(wait_until([&] { return fast.requests() >= base + 5; }));
  EXPECT_EQ(removed.requests(), c_count);
  EXPECT_EQ(slow.requests(), 1);  // not restarted

  // A changed spec is a new probe: it starts at once.
  b.spec.http_path = "/other";
  checker.set_targets({a, b});
  ASSERT_TRUE(wait_until([&] { return slow.requests() == 2; }));
  EXPECT_EQ(slow.last_request().rfind("GET /other HTTP/1.1\r\n", 0), 0u);

  checker.set_targets({});
  checker.stop();
}

TEST(ActiveHealthChecker, StopIsPromptWithAProbeInFlight) {
  TestServer server;
  server.set_mode(TestServer::Mode::silent);
  ActiveHealthChecker checker;
  ProbeTarget t = target(server.port());
  t.spec.timeout = 30;
  checker.set_targets({t});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return server.requests() >= 1; }));  // the probe now waits for an answer
  auto began = std::chrono::steady_clock::now();
  checker.stop();
  EXPECT_LT(std::chrono::steady_clock::now() - began, 1s);
  EXPECT_TRUE(t.health->healthy());  // nothing reported after stop
}

TEST(ActiveHealthChecker, RestartsAfterStop) {
  TestServer server;
  ActiveHealthChecker checker;
  checker.set_targets({target(server.port())});
  checker.start();
  ASSERT_TRUE(wait_until([&] { return server.requests() >= 1; }));
  checker.stop();
  int after_stop = server.requests();
  checker.start();
  ASSERT_TRUE(wait_until([&] { return server.requests() >= after_stop + 2; }));
  // The destructor stops it.
}

}  // namespace
}  // namespace portico::upstream
