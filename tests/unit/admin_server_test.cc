// AdminServer: deferred responses (long polls) wait without a handler thread and are woken by their signal.
#include "admin/admin_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "gtest/gtest.h"

namespace portico::admin {
namespace {

int free_port() {
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

int connect_to(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Reads from every socket until each has a whole response (headers and the Content-Length body) or `seconds`
// pass. Returns the bodies ("" for a socket without a complete answer).
std::vector<std::string> read_all(const std::vector<int>& fds, double seconds) {
  std::vector<std::string> raw(fds.size());
  std::vector<std::string> bodies(fds.size());
  std::vector<bool> done(fds.size(), false);
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  size_t left = fds.size();
  while (left > 0 && std::chrono::steady_clock::now() < deadline) {
    std::vector<pollfd> p;
    std::vector<size_t> which;
    for (size_t i = 0; i < fds.size(); ++i) {
      if (!done[i]) {
        p.push_back({fds[i], POLLIN, 0});
        which.push_back(i);
      }
    }
    if (::poll(p.data(), p.size(), 100) <= 0) continue;
    for (size_t k = 0; k < p.size(); ++k) {
      if ((p[k].revents & (POLLIN | POLLHUP)) == 0) continue;
      const size_t i = which[k];
      char buf[4096];
      ssize_t n = ::read(fds[i], buf, sizeof buf);
      if (n > 0) raw[i].append(buf, static_cast<size_t>(n));
      size_t head_end = raw[i].find("\r\n\r\n");
      size_t cl = raw[i].find("Content-Length: ");
      if (head_end != std::string::npos && cl != std::string::npos) {
        size_t length = std::stoul(raw[i].substr(cl + 16));
        if (raw[i].size() >= head_end + 4 + length) {
          bodies[i] = raw[i].substr(head_end + 4, length);
          done[i] = true;
          --left;
        }
      }
      if (n <= 0 && !done[i]) {
        done[i] = true;
        --left;
      }
    }
  }
  return bodies;
}

// A sync-listener-like server on a free loopback port: bearer token "token-0123456789", prefix /v1.
AdminServerOptions options_on(int port) {
  AdminServerOptions o;
  o.listen = "127.0.0.1:" + std::to_string(port);
  o.path_prefix = "/v1";
  o.key_scheme = KeyScheme::bearer;
  o.keys = {AdminKey{"token-0123456789", Role::data_plane, "dp"}};
  return o;
}

// A deferred answer on `signal`, resuming with "woken" if the signal moved, else "deadline".
AdminResponse deferred_on(const std::shared_ptr<Signal>& signal, std::chrono::milliseconds wait) {
  auto d = std::make_shared<Deferred>();
  d->signal = signal;
  d->generation = signal->generation();
  d->deadline = std::chrono::steady_clock::now() + wait;
  d->resume = [signal, seen = d->generation] {
    AdminResponse r;
    r.body = signal->generation() != seen ? "\"woken\"" : "\"deadline\"";
    return r;
  };
  AdminResponse out;
  out.deferred = std::move(d);
  return out;
}

const char kWait[] = "GET /v1/wait HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-0123456789\r\n\r\n";

TEST(AdminServer, DeferredLongPollsHoldNoThreadAndWakeOnTheSignal) {
  constexpr int kClients = 200;  // far more than the 2 handler threads
  auto signal = std::make_shared<Signal>();
  std::atomic<int> deferred{0};
  const int port = free_port();
  AdminServerOptions o = options_on(port);
  o.handler_threads = 2;
  AdminServer server(o, [&](const AdminRequest& r) {
    if (r.path != "/wait") {
      AdminResponse now;
      now.body = "\"now\"";
      return now;
    }
    ++deferred;
    return deferred_on(signal, std::chrono::seconds(20));
  });
  server.listen();
  server.start();

  std::vector<int> fds;
  const std::string request =
      "GET /v1/wait HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-0123456789\r\n\r\n";
  for (int i = 0; i < kClients; ++i) {
    int fd = connect_to(port);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
    fds.push_back(fd);
  }
  for (int i = 0; i < 500 && deferred.load() < kClients; ++i)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  ASSERT_EQ(deferred.load(), kClients);  // every poll reached the handler: none is stuck behind a thread

  // With all of them waiting, a request that answers at once still gets a handler thread.
  int quick = connect_to(port);
  const std::string now = "GET /v1/now HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-0123456789\r\n\r\n";
  ASSERT_EQ(::write(quick, now.data(), now.size()), static_cast<ssize_t>(now.size()));
  EXPECT_EQ(read_all({quick}, 5)[0], "\"now\"");
  ::close(quick);

  signal->notify();
  std::vector<std::string> bodies = read_all(fds, 10);  // well before the 20 s deadline
  for (int i = 0; i < kClients; ++i) EXPECT_EQ(bodies[static_cast<size_t>(i)], "\"woken\"") << "client " << i;
  for (int fd : fds) ::close(fd);
  server.stop();
}

TEST(AdminServer, DeferredResponseResumesAtItsDeadline) {
  auto signal = std::make_shared<Signal>();
  const int port = free_port();
  AdminServer server(options_on(port), [&](const AdminRequest&) {
    return deferred_on(signal, std::chrono::milliseconds(200));
  });
  server.listen();
  server.start();
  int fd = connect_to(port);
  const std::string request =
      "GET /v1/wait HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-0123456789\r\n\r\n";
  ASSERT_EQ(::write(fd, request.data(), request.size()), static_cast<ssize_t>(request.size()));
  EXPECT_EQ(read_all({fd}, 10)[0], "\"deadline\"");
  ::close(fd);
  server.stop();
}

}  // namespace
}  // namespace portico::admin
