// AdminServer: deferred responses (long polls) wait without a handler thread and are woken by their signal;
// unauthenticated connections get a short head deadline and per-source and total caps that close the oldest.
#include "admin/admin_server.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include "base/accept_backoff.h"
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

// A connection from `source` (any 127.0.0.0/8 address is local), or -1.
int connect_from(const char* source, int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in local{};
  local.sin_family = AF_INET;
  ::inet_pton(AF_INET, source, &local.sin_addr);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&local), sizeof local) != 0 ||
      ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
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

// True when the server closed `fd` within `seconds` (EOF or reset), false when it is still open then.
bool closed_by_peer(int fd, double seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (true) {
    auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    pollfd p{fd, POLLIN, 0};
    int ready = ::poll(&p, 1, static_cast<int>(std::max<int64_t>(0, left.count())));
    if (ready > 0) {
      char buf[4096];
      ssize_t n = ::read(fd, buf, sizeof buf);
      if (n <= 0) return true;
      continue;  // an answer (a 408 or the like): the close follows
    }
    if (std::chrono::steady_clock::now() >= deadline) return false;
  }
}

const char kNow[] = "GET /v1/now HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-0123456789\r\n\r\n";

bool send_all(int fd, std::string_view data) {
  return ::send(fd, data.data(), data.size(), MSG_NOSIGNAL) == static_cast<ssize_t>(data.size());
}

AdminResponse answer_now(const AdminRequest&) {
  AdminResponse r;
  r.body = "\"now\"";
  return r;
}

TEST(AdminServer, UnauthenticatedHeadHasAShortWholeHeadDeadline) {
  const int port = free_port();
  AdminServerOptions o = options_on(port);
  o.unauthenticated_timeout = 0.5;
  o.idle_timeout = 60;
  AdminServer server(o, answer_now);
  server.listen();
  server.start();

  int authed = connect_to(port);
  ASSERT_TRUE(send_all(authed, kNow));
  ASSERT_EQ(read_all({authed}, 5)[0], "\"now\"");
  const auto t0 = std::chrono::steady_clock::now();
  int idle = connect_to(port);
  int trickle = connect_to(port);
  ASSERT_TRUE(send_all(trickle, "GET /v1/now HTTP/1.1\r\n"));
  // Reads do not re-arm the deadline: a header line every 100 ms keeps nothing open.
  for (int i = 0; i < 8; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    send_all(trickle, "X-Drip: x\r\n");
  }
  EXPECT_TRUE(closed_by_peer(idle, 5));
  EXPECT_TRUE(closed_by_peer(trickle, 5));
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(3));
  // The authenticated keep-alive connection keeps its idle timeout.
  EXPECT_FALSE(closed_by_peer(authed, 0.2));
  ASSERT_TRUE(send_all(authed, kNow));
  EXPECT_EQ(read_all({authed}, 5)[0], "\"now\"");
  for (int fd : {authed, idle, trickle}) ::close(fd);
  server.stop();
}

// Half-sent requests from one address (as an attacker would hold them) do not lock out a client with a key:
// past the per-source cap the oldest of them are closed, and the real request is answered at once.
TEST(AdminServer, HalfSentRequestsFromOneSourceCloseTheOldestAndLetAKeyIn) {
  constexpr int kHalf = 2000;
  constexpr size_t kCap = 16;
  const int port = free_port();
  AdminServerOptions o = options_on(port);
  o.max_unauthenticated_per_source = kCap;
  o.max_unauthenticated = 64;
  o.max_connections = 128;  // far fewer than the attacker's connections
  AdminServer server(o, answer_now);
  server.listen();
  server.start();

  std::vector<int> half;
  for (int i = 0; i < kHalf; ++i) {
    int fd = connect_from("127.0.0.2", port);
    ASSERT_GE(fd, 0) << i;
    ASSERT_TRUE(send_all(fd, "GET /v1/now HTTP/1.1\r\nHost: x\r\n"));
    half.push_back(fd);
  }
  const auto t0 = std::chrono::steady_clock::now();
  int real = connect_to(port);
  ASSERT_TRUE(send_all(real, kNow));
  EXPECT_EQ(read_all({real}, 5)[0], "\"now\"");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  // The real request was accepted after every half-sent one: all but the newest kCap are closed by now.
  size_t open = 0;
  for (int i = 0; i < kHalf; ++i) {
    const bool older = i < kHalf - static_cast<int>(kCap);
    const bool closed = closed_by_peer(half[static_cast<size_t>(i)], older ? 2 : 0);
    if (!closed) ++open;
    EXPECT_TRUE(closed || !older) << "half-sent connection " << i;
  }
  EXPECT_EQ(open, kCap);
  for (int fd : half) ::close(fd);
  ::close(real);
  server.stop();
}

// Idle connections from many addresses hit the total cap: the oldest make room, the newest stay.
TEST(AdminServer, TotalUnauthenticatedCapClosesTheOldestAcrossSources) {
  const int port = free_port();
  AdminServerOptions o = options_on(port);
  o.max_unauthenticated_per_source = 100;
  o.max_unauthenticated = 5;
  AdminServer server(o, answer_now);
  server.listen();
  server.start();
  std::vector<int> fds;
  for (int i = 0; i < 12; ++i) {
    const std::string source = "127.0.0." + std::to_string(2 + i);
    fds.push_back(connect_from(source.c_str(), port));
    ASSERT_GE(fds.back(), 0);
  }
  int real = connect_to(port);
  ASSERT_TRUE(send_all(real, kNow));
  EXPECT_EQ(read_all({real}, 5)[0], "\"now\"");
  // The real connection was unauthenticated too when it arrived, so it took one of the 5 places.
  for (int i = 0; i < 12; ++i) {
    EXPECT_EQ(closed_by_peer(fds[static_cast<size_t>(i)], i < 8 ? 2 : 0.1), i < 8) << "connection " << i;
  }
  for (int fd : fds) ::close(fd);
  ::close(real);
  server.stop();
}

// At max_connections an unauthenticated connection makes room; authenticated ones are never closed for a
// newcomer (it is refused instead).
TEST(AdminServer, MaxConnectionsClosesUnauthenticatedBeforeRefusing) {
  const int port = free_port();
  AdminServerOptions o = options_on(port);
  o.max_connections = 3;
  AdminServer server(o, answer_now);
  server.listen();
  server.start();
  std::vector<int> authed;
  for (int i = 0; i < 2; ++i) {
    authed.push_back(connect_to(port));
    ASSERT_TRUE(send_all(authed.back(), kNow));
    ASSERT_EQ(read_all({authed.back()}, 5)[0], "\"now\"");
  }
  int idle = connect_to(port);
  int real = connect_to(port);  // the fourth: the idle one makes room
  ASSERT_TRUE(send_all(real, kNow));
  EXPECT_EQ(read_all({real}, 5)[0], "\"now\"");
  EXPECT_TRUE(closed_by_peer(idle, 2));
  int refused = connect_to(port);  // three authenticated connections now: no room
  EXPECT_TRUE(closed_by_peer(refused, 2));
  for (int fd : authed) {
    ASSERT_TRUE(send_all(fd, kNow));
    EXPECT_EQ(read_all({fd}, 5)[0], "\"now\"");
  }
  for (int fd : authed) ::close(fd);
  for (int fd : {idle, real, refused}) ::close(fd);
  server.stop();
}

// ---------------------------------------------------------------------------------------------------------
// A deadline whose expiry is already queued when the connection's last bytes arrive.
//
// Asio cannot cancel a timer wait whose expiry is already queued in the event loop: it runs, successfully.
// To make a client's last bytes and its deadline land in the same round of the listener's loop, the tests
// stall the loop: the server holds many 1 KiB keys, and a request presenting a wrong key of that length is
// compared against every one of them (in constant time) on the listener's thread. A few dozen such requests
// sent together keep the loop busy for far longer than the victims' head deadline; the victims' last bytes
// are sent once the first of those requests was answered (the stall has begun), so the next round of the loop
// finds both the bytes and the expired deadline.

constexpr size_t kLongKey = 1024;
constexpr size_t kLongKeys = 20000;
constexpr int kStallers = 60;
constexpr int kVictims = 40;
constexpr double kVictimDeadline = 0.3;  // seconds: unauthenticated_timeout
constexpr auto kVictimDeadlineAfter = std::chrono::milliseconds(300);

AdminServerOptions stalling_options(int port) {
  AdminServerOptions o = options_on(port);
  o.unauthenticated_timeout = kVictimDeadline;
  o.idle_timeout = 60;
  o.max_unauthenticated = 1000;
  o.max_unauthenticated_per_source = 1000;
  o.max_connections = 2000;
  return o;
}

void add_long_keys(AdminServer& server) {
  std::vector<AdminKey> keys{AdminKey{"token-0123456789", Role::data_plane, "dp"}};
  for (size_t i = 0; i < kLongKeys; ++i) {
    keys.push_back(AdminKey{std::string(kLongKey, static_cast<char>('a' + i % 26)), Role::data_plane, ""});
  }
  ASSERT_TRUE(server.set_keys(std::move(keys)));
}

struct Stall {
  std::vector<std::chrono::steady_clock::time_point> answers;  // when each stalling request was answered
  std::chrono::steady_clock::time_point during;                // when `during` ran
  bool complete = false;

  // Whether the loop was in one stretch of the stall from `during` until past `deadline`: no answer came
  // meanwhile (answers go out at the end of a stretch, where the loop takes new events), and some after.
  bool spans(std::chrono::steady_clock::time_point deadline) const {
    bool after = false;
    for (auto t : answers) {
      if (t >= during - std::chrono::milliseconds(5) && t <= deadline + std::chrono::milliseconds(50))
        return false;
      after = after || t > deadline + std::chrono::milliseconds(50);
    }
    return after;
  }
};

// A connection whose small writes go out at once (no Nagle delay waiting for the server's delayed ACK).
int connect_nodelay(int port) {
  int fd = connect_to(port);
  int one = 1;
  if (fd >= 0) ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

// Authenticated keep-alive connections, ready to stall the loop.
std::vector<int> open_stallers(int port) {
  std::vector<int> fds;
  for (int i = 0; i < kStallers; ++i) {
    int fd = connect_nodelay(port);
    EXPECT_GE(fd, 0);
    EXPECT_TRUE(send_all(fd, kNow));
    fds.push_back(fd);
  }
  for (const std::string& body : read_all(fds, 10)) EXPECT_EQ(body, "\"now\"");
  return fds;
}

// Sends the head of a request with the wrong long key on every staller, all but its last line end: each is
// read and waits for the rest (the probe request of the caller tells when).
void prime_stallers(const std::vector<int>& stallers) {
  const std::string wrong =
      "GET /v1/now HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer " + std::string(kLongKey, 'z') + "\r\n";
  for (int fd : stallers) EXPECT_TRUE(send_all(fd, wrong));
}

// Ends the stallers' heads together: the loop checks each wrong key in turn without a round of the loop in
// between (their answers go out once all are checked). Runs `during` 100 ms later, well within the stall
// (about 60 x 9 ms), then waits for every answer. Closes the stallers.
Stall stall_loop(std::vector<int>& stallers, const std::function<void()>& during) {
  for (int fd : stallers) EXPECT_TRUE(send_all(fd, "\r\n"));
  const auto start = std::chrono::steady_clock::now();
  Stall stall;
  std::vector<bool> answered(stallers.size(), false);
  size_t left = stallers.size();
  bool ran = false;
  const auto give_up = start + std::chrono::seconds(30);
  while ((left > 0 || !ran) && std::chrono::steady_clock::now() < give_up) {
    if (!ran && std::chrono::steady_clock::now() >= start + std::chrono::milliseconds(100)) {
      ran = true;
      stall.during = std::chrono::steady_clock::now();
      during();
    }
    std::vector<pollfd> p;
    for (size_t i = 0; i < stallers.size(); ++i) p.push_back({answered[i] ? -1 : stallers[i], POLLIN, 0});
    if (::poll(p.data(), p.size(), 5) <= 0) continue;
    const auto now = std::chrono::steady_clock::now();
    for (size_t i = 0; i < p.size(); ++i) {
      if (answered[i] || (p[i].revents & (POLLIN | POLLHUP)) == 0) continue;
      answered[i] = true;
      --left;
      stall.answers.push_back(now);
    }
  }
  stall.complete = left == 0;
  for (int fd : stallers) ::close(fd);
  stallers.clear();
  return stall;
}

// Victims that end their connection (FIN after half a head) as their head deadline expires: the coroutine
// returns and frees the connection while the expiry is queued. Before the fix the expiry then wrote into the
// freed coroutine frame and closed a destroyed socket (a crash, or another connection's descriptor closed).
TEST(AdminServer, DeadlineQueuedWithTheLastReadDoesNotTouchTheFreedConnection) {
  const int port = free_port();
  AdminServer server(stalling_options(port), answer_now);
  server.listen();
  server.start();
  add_long_keys(server);

  int exercised = 0;
  for (int round = 0; round < 8 && exercised < 2; ++round) {
    std::vector<int> stallers = open_stallers(port);
    const auto opened = std::chrono::steady_clock::now();
    std::vector<int> victims;
    for (int i = 0; i < kVictims; ++i) {
      victims.push_back(connect_nodelay(port));
      ASSERT_TRUE(send_all(victims.back(), "GET /v1/now HTTP/1.1\r\nHost: x\r\n"));
    }
    prime_stallers(stallers);
    // A request answered after the victims and the stallers were accepted and their bytes read.
    int probe = connect_to(port);
    ASSERT_TRUE(send_all(probe, kNow));
    ASSERT_EQ(read_all({probe}, 5)[0], "\"now\"");
    ::close(probe);
    std::chrono::steady_clock::time_point ended;
    const Stall stall = stall_loop(stallers, [&] {
      for (int fd : victims) ::shutdown(fd, SHUT_WR);
      ended = std::chrono::steady_clock::now();
    });
    ASSERT_TRUE(stall.complete);
    const auto deadline = opened + kVictimDeadlineAfter;
    if (stall.spans(deadline)) ++exercised;
    for (int fd : victims) EXPECT_TRUE(closed_by_peer(fd, 5));
    for (int fd : victims) ::close(fd);
    // The listener is intact: it still answers.
    int after = connect_to(port);
    ASSERT_TRUE(send_all(after, kNow));
    ASSERT_EQ(read_all({after}, 5)[0], "\"now\"");
    ::close(after);
    std::fprintf(stderr, "round %d: stall spans the deadline: %d, victims' FIN %.0f ms after their open\n",
                 round, static_cast<int>(stall.spans(deadline)),
                 std::chrono::duration<double, std::milli>(ended - opened).count());
  }
  EXPECT_GE(exercised, 1) << "no round stalled the loop across the victims' deadline";
  server.stop();
}

// Victims whose head (with a valid key) completes as their unauthenticated head deadline expires: they
// authenticate, and the head deadline's expiry, already queued, must not close the connection mid-request.
TEST(AdminServer, HeadDeadlineQueuedBeforeAuthenticationDoesNotCloseTheRequest) {
  const int port = free_port();
  AdminServer server(stalling_options(port), answer_now);
  server.listen();
  server.start();
  add_long_keys(server);

  int exercised = 0;
  for (int round = 0; round < 8 && exercised < 2; ++round) {
    std::vector<int> stallers = open_stallers(port);
    const auto opened = std::chrono::steady_clock::now();
    std::vector<int> victims;
    for (int i = 0; i < kVictims; ++i) {
      victims.push_back(connect_nodelay(port));
      ASSERT_TRUE(send_all(victims.back(),
                           "GET /v1/now HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer token-0123456789\r\n"));
    }
    prime_stallers(stallers);
    int probe = connect_to(port);
    ASSERT_TRUE(send_all(probe, kNow));
    ASSERT_EQ(read_all({probe}, 5)[0], "\"now\"");
    ::close(probe);
    std::chrono::steady_clock::time_point ended;
    const Stall stall = stall_loop(stallers, [&] {
      for (int fd : victims) send_all(fd, "\r\n");
      ended = std::chrono::steady_clock::now();
    });
    ASSERT_TRUE(stall.complete);
    const auto deadline = opened + kVictimDeadlineAfter;
    std::vector<std::string> bodies = read_all(victims, 10);
    // A round whose last bytes went out late may have seen the deadline close a victim rightly.
    if (ended < deadline - std::chrono::milliseconds(20)) {
      if (stall.spans(deadline)) ++exercised;
      for (int i = 0; i < kVictims; ++i)
        EXPECT_EQ(bodies[static_cast<size_t>(i)], "\"now\"") << "victim " << i;
    }
    for (int fd : victims) ::close(fd);
    std::fprintf(stderr,
                 "round %d: stall spans the deadline: %d, victims' last bytes %.0f ms after their open\n",
                 round, static_cast<int>(stall.spans(deadline)),
                 std::chrono::duration<double, std::milli>(ended - opened).count());
  }
  EXPECT_GE(exercised, 1) << "no round stalled the loop across the victims' deadline";
  server.stop();
}

// Out of descriptors with idle unauthenticated connections held (as a flood would hold them): the oldest
// makes room and the listener accepts again at once, instead of pausing until some deadline frees a
// descriptor.
TEST(AdminServer, OutOfDescriptorsClosesTheOldestUnauthenticatedAndAcceptsAgain) {
  constexpr int kIdle = 80;
  const int port = free_port();
  AdminServerOptions o = options_on(port);
  o.unauthenticated_timeout = 30;  // nothing frees a descriptor by itself during the test
  o.max_unauthenticated = 1000;
  o.max_unauthenticated_per_source = 1000;
  o.max_connections = 2000;
  AdminServer server(o, answer_now);
  server.listen();
  server.start();

  // The client sockets exist before the limit is lowered (connect() takes no descriptor); the listener gets
  // 20 more descriptors, then accept() fails with EMFILE.
  std::vector<int> idle;
  for (int i = 0; i < kIdle; ++i) idle.push_back(::socket(AF_INET, SOCK_STREAM, 0));
  const int real = ::socket(AF_INET, SOCK_STREAM, 0);
  rlimit before{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &before), 0);
  rlimit low = before;
  low.rlim_cur = static_cast<rlim_t>(real + 1 + 20);
  ASSERT_EQ(::setrlimit(RLIMIT_NOFILE, &low), 0);
  struct Restore {
    rlimit limit;
    ~Restore() { ::setrlimit(RLIMIT_NOFILE, &limit); }
  } restore{before};

  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  for (int fd : idle) ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(::connect(real, reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_TRUE(send_all(real, kNow));
  EXPECT_EQ(read_all({real}, 5)[0], "\"now\"");
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  EXPECT_EQ(base::AcceptBackoff::paused_listeners(), 0);
  // The oldest idle connections made the room.
  EXPECT_TRUE(closed_by_peer(idle.front(), 2));
  for (int fd : idle) ::close(fd);
  ::close(real);
  server.stop();
}

double cpu_seconds() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// A persistent accept() error (here EINVAL: the listening socket was shut down under the listener) backs off
// and counts for readiness, instead of retrying at once on a spinning core.
TEST(AdminServer, PersistentAcceptErrorBacksOffInsteadOfSpinning) {
  const int port = free_port();
  AdminServer server(options_on(port), answer_now);
  server.listen();
  server.start();
  int listening = -1;
  for (int fd = 0; fd < 4096 && listening < 0; ++fd) {
    sockaddr_in a{};
    socklen_t len = sizeof a;
    int accepting = 0;
    socklen_t optlen = sizeof accepting;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) == 0 && a.sin_family == AF_INET &&
        ntohs(a.sin_port) == port && ::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &optlen) == 0 &&
        accepting) {
      listening = fd;
    }
  }
  ASSERT_GE(listening, 0);
  ASSERT_EQ(::shutdown(listening, SHUT_RDWR), 0);
  bool paused = false;
  for (int i = 0; i < 100 && !paused; ++i) {
    paused = base::AcceptBackoff::paused_reason().find("accept() failing") != std::string::npos;
    if (!paused) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(paused) << base::AcceptBackoff::paused_reason();
  const double c0 = cpu_seconds();
  const auto t0 = std::chrono::steady_clock::now();
  std::this_thread::sleep_for(std::chrono::seconds(1));
  const double load =
      (cpu_seconds() - c0) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  EXPECT_LT(load, 0.2) << "the listener used " << 100 * load << "% of a core on a failing accept()";
  server.stop();
  EXPECT_EQ(base::AcceptBackoff::paused_listeners(), 0);
}

}  // namespace
}  // namespace portico::admin
