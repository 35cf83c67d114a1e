// The etcd test harness (src/store/testing/etcd_harness.h). No tests here: this file is named *_test.cc only
// so that the unit_store binary picks it up.
#include "store/testing/etcd_harness.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "store/etcd_client.h"

namespace portico::store::testing {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

int listen_on(uint16_t port, int backlog) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int one = 1;
  ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, backlog) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

uint16_t port_of(int fd) {
  sockaddr_in addr{};
  socklen_t len = sizeof addr;
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len);
  return ntohs(addr.sin_port);
}

int connect_to(uint16_t port, bool blocking) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | (blocking ? 0 : SOCK_NONBLOCK), 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  addr.sin_port = htons(port);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 &&
      (blocking || errno != EINPROGRESS)) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Distinct free ports: all are held open until every one is chosen.
std::vector<uint16_t> free_ports(size_t n) {
  std::vector<int> fds;
  std::vector<uint16_t> ports;
  for (size_t i = 0; i < n; ++i) {
    fds.push_back(listen_on(0, 1));
    ports.push_back(port_of(fds.back()));
  }
  for (int fd : fds) ::close(fd);
  return ports;
}

bool write_all(int fd, const char* data, size_t n) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w <= 0) return false;
    data += w;
    n -= static_cast<size_t>(w);
  }
  return true;
}

}  // namespace

std::string find_etcd() {
  if (const char* env = std::getenv("PORTICO_ETCD"); env != nullptr && ::access(env, X_OK) == 0) return env;
  const char* path = std::getenv("PATH");
  std::stringstream dirs(path != nullptr ? path : "/usr/local/bin:/usr/bin:/bin");
  for (std::string dir; std::getline(dirs, dir, ':');) {
    std::string candidate = dir + "/etcd";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return {};
}

uint16_t unused_port() {
  return free_ports(1)[0];
}

EtcdCluster::~EtcdCluster() {
  for (int i = 0; i < size(); ++i) kill(i);
  if (!dir_.empty()) {
    std::error_code ignored;
    fs::remove_all(dir_, ignored);
  }
}

bool EtcdCluster::start(int members, std::string& error) {
  etcd_ = find_etcd();
  if (etcd_.empty()) {
    error = "etcd not found: install etcd 3.4+ on PATH or set PORTICO_ETCD (these tests need a real etcd)";
    return false;
  }
  char tmpl[] = "/tmp/portico-store-test-XXXXXX";
  if (::mkdtemp(tmpl) == nullptr) {
    error = "mkdtemp failed";
    return false;
  }
  dir_ = tmpl;
  std::vector<uint16_t> ports = free_ports(2 * static_cast<size_t>(members));
  for (int i = 0; i < members; ++i) {
    Member m;
    m.name = std::string("m").append(std::to_string(i));
    m.client_port = ports[2 * i];
    m.peer_port = ports[2 * i + 1];
    if (!initial_cluster_.empty()) initial_cluster_ += ",";
    initial_cluster_ += m.name + "=http://127.0.0.1:" + std::to_string(m.peer_port);
    members_.push_back(m);
  }
  std::vector<int> all;
  for (int i = 0; i < members; ++i) {
    if (!spawn(i, error)) return false;
    all.push_back(i);
  }
  return wait_ready(all, 20, error);
}

bool EtcdCluster::spawn(int i, std::string& error) {
  Member& m = members_[i];
  std::string client = "http://127.0.0.1:" + std::to_string(m.client_port);
  std::string peer = "http://127.0.0.1:" + std::to_string(m.peer_port);
  // Auto-compaction as every etcd the project starts has it (src/store/README.md, "Compaction").
  std::vector<std::string> args = {etcd_,
                                   "--name=" + m.name,
                                   "--data-dir=" + dir_ + "/" + m.name,
                                   "--listen-client-urls=" + client,
                                   "--advertise-client-urls=" + client,
                                   "--listen-peer-urls=" + peer,
                                   "--initial-advertise-peer-urls=" + peer,
                                   "--initial-cluster=" + initial_cluster_,
                                   "--initial-cluster-state=new",
                                   "--initial-cluster-token=portico-" + dir_.substr(dir_.size() - 6),
                                   "--auto-compaction-mode=revision",
                                   "--auto-compaction-retention=10000",
                                   "--logger=zap"};
  std::vector<char*> argv;
  for (std::string& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  std::string log = dir_ + "/" + m.name + ".log";
  pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) {
    error = "fork failed";
    return false;
  }
  if (pid == 0) {  // only async-signal-safe calls from here on
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(1);
    int fd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (fd >= 0) {
      ::dup2(fd, 1);
      ::dup2(fd, 2);
    }
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  m.pid = pid;
  return true;
}

bool EtcdCluster::wait_ready(const std::vector<int>& which, double timeout, std::string& error) {
  Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(static_cast<int>(timeout * 1000));
  for (int i : which) {
    EtcdOptions o;
    o.endpoints = {endpoint(i)};
    o.connect_timeout = 0.2;
    o.request_timeout = 1.0;
    o.retry_deadline = 0.2;
    EtcdClient client(o);
    while (true) {
      ResponseHeader h;
      if (client.current("portico-ready", h).ok()) break;
      int status = 0;
      if (::waitpid(members_[i].pid, &status, WNOHANG) == members_[i].pid) {
        members_[i].pid = -1;
        error = members_[i].name + " exited during start-up:\n" + log_tail(i);
        return false;
      }
      if (Clock::now() > deadline) {
        error = members_[i].name + " not ready after " + std::to_string(timeout) + "s:\n" + log_tail(i);
        return false;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
  }
  return true;
}

std::vector<std::string> EtcdCluster::endpoints() const {
  std::vector<std::string> out;
  for (int i = 0; i < size(); ++i) out.push_back(endpoint(i));
  return out;
}

std::string EtcdCluster::endpoint(int i) const {
  return "http://127.0.0.1:" + std::to_string(members_[i].client_port);
}

void EtcdCluster::kill(int i) {
  Member& m = members_[i];
  if (m.pid <= 0) return;
  ::kill(m.pid, SIGKILL);
  ::waitpid(m.pid, nullptr, 0);
  m.pid = -1;
}

bool EtcdCluster::restart(int i, std::string& error) {
  kill(i);
  if (!spawn(i, error)) return false;
  return wait_ready({i}, 20, error);
}

int EtcdCluster::leader() const {
  EtcdOptions o;
  o.endpoints = endpoints();
  o.request_timeout = 1.0;
  EtcdClient client(o);
  std::vector<uint64_t> ids(members_.size(), 0);
  uint64_t leader = 0;
  for (int i = 0; i < size(); ++i) {
    if (members_[i].pid <= 0) continue;
    MemberStatus st;
    if (!client.member_status(endpoint(i), st).ok()) continue;
    ids[i] = st.header.member_id;
    if (st.leader != 0) leader = st.leader;
  }
  for (int i = 0; i < size(); ++i) {
    if (leader != 0 && ids[i] == leader) return i;
  }
  return -1;
}

std::string EtcdCluster::log_tail(int i) const {
  std::ifstream in(dir_ + "/" + members_[i].name + ".log");
  std::vector<std::string> lines;
  for (std::string line; std::getline(in, line);) {
    lines.push_back(line);
    if (lines.size() > 20) lines.erase(lines.begin());
  }
  std::string out;
  for (const std::string& l : lines) out += l + "\n";
  return out;
}

// --- TcpProxy ---

TcpProxy::TcpProxy(uint16_t target) : target_(target) {
  int listener = listen_on(0, 64);
  port_ = port_of(listener);
  ::pipe2(wake_, O_CLOEXEC);
  thread_ = std::thread([this, listener] { loop(listener); });
}

TcpProxy::~TcpProxy() {
  {
    std::lock_guard lock(mu_);
    quit_ = true;
  }
  char c = 'q';
  ssize_t ignored = ::write(wake_[1], &c, 1);
  (void)ignored;
  thread_.join();
  ::close(wake_[0]);
  ::close(wake_[1]);
}

void TcpProxy::cut() {
  command(Mode::cut);
}
void TcpProxy::freeze() {
  command(Mode::frozen);
}
void TcpProxy::restore() {
  command(Mode::forward);
}

void TcpProxy::command(Mode mode) {
  {
    std::lock_guard lock(mu_);
    mode_ = mode;
  }
  char c = 'c';
  ssize_t ignored = ::write(wake_[1], &c, 1);
  (void)ignored;
  // Let the proxy thread act before the test goes on, so "cut" means cut.
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
}

void TcpProxy::loop(int listener) {
  struct Pair {
    int client;
    int server;
  };
  std::vector<Pair> pairs;
  std::vector<int> parked;  // accepted while frozen: never served
  auto close_all = [&] {
    for (Pair& p : pairs) {
      ::close(p.client);
      ::close(p.server);
    }
    for (int fd : parked) ::close(fd);
    pairs.clear();
    parked.clear();
  };
  char buf[65536];
  while (true) {
    Mode mode;
    {
      std::lock_guard lock(mu_);
      if (quit_) break;
      mode = mode_;
    }
    if (mode == Mode::cut && listener >= 0) {
      ::close(listener);
      listener = -1;
      close_all();
    } else if (mode != Mode::cut && listener < 0) {
      listener = listen_on(port_, 64);
    }
    std::vector<pollfd> fds = {{wake_[0], POLLIN, 0}};
    if (listener >= 0) fds.push_back({listener, POLLIN, 0});
    size_t first_pair = fds.size();
    if (mode == Mode::forward) {
      for (Pair& p : pairs) {
        fds.push_back({p.client, POLLIN, 0});
        fds.push_back({p.server, POLLIN, 0});
      }
    }
    if (::poll(fds.data(), fds.size(), -1) < 0) continue;
    if (fds[0].revents != 0) {
      ssize_t ignored = ::read(wake_[0], buf, sizeof buf);
      (void)ignored;
    }
    if (listener >= 0 && fds[1].revents != 0) {
      int fd = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
      if (fd >= 0 && mode == Mode::forward) {
        int server = connect_to(target_, true);
        if (server < 0) {
          ::close(fd);
        } else {
          pairs.push_back({fd, server});
        }
      } else if (fd >= 0) {
        parked.push_back(fd);
      }
    }
    if (mode != Mode::forward) continue;
    std::vector<Pair> alive;
    size_t polled = (fds.size() - first_pair) / 2;
    for (size_t k = 0; k < pairs.size(); ++k) {
      Pair p = pairs[k];
      bool ok = true;
      if (k < polled) {
        for (int side = 0; side < 2 && ok; ++side) {
          if (fds[first_pair + 2 * k + side].revents == 0) continue;
          int from = side == 0 ? p.client : p.server;
          int to = side == 0 ? p.server : p.client;
          ssize_t n = ::read(from, buf, sizeof buf);
          ok = n > 0 && write_all(to, buf, static_cast<size_t>(n));
        }
      }
      if (ok) {
        alive.push_back(p);
      } else {
        ::close(p.client);
        ::close(p.server);
      }
    }
    pairs.swap(alive);
  }
  if (listener >= 0) ::close(listener);
  close_all();
}

// --- Blackhole ---

Blackhole::Blackhole() {
  listener_ = listen_on(0, 0);
  port_ = port_of(listener_);
  // A backlog of 0 still queues one connection; fill it (and a spare) so that further SYNs are dropped.
  for (int i = 0; i < 3; ++i) {
    int fd = connect_to(port_, false);
    if (fd >= 0) fillers_.push_back(fd);
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
}

Blackhole::~Blackhole() {
  for (int fd : fillers_) ::close(fd);
  ::close(listener_);
}

}  // namespace portico::store::testing
