#include "upstream/health_checker.h"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <exception>
#include <map>
#include <optional>
#include <string_view>
#include <thread>

#include "base/log.h"

namespace portico::upstream {
namespace {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

constexpr auto kNoThrow = asio::as_tuple(asio::use_awaitable);
constexpr size_t kMaxStatusLine = 512;  // bytes read at most before giving up on finding the status line

asio::steady_timer::duration seconds(double s, double min_s) {
  return std::chrono::duration_cast<asio::steady_timer::duration>(
      std::chrono::duration<double>(std::max(s, min_s)));
}

// Identity of a probe: targets with the same identity across set_targets() keep their probe loop.
std::string identity(const ProbeTarget& t) {
  const config::ActiveCheck& c = t.spec;
  std::string key;
  auto add = [&key](std::string_view part) {
    key.append(part);
    key.push_back('\0');
  };
  auto num = [&add](double v) {
    char buf[40];
    std::snprintf(buf, sizeof buf, "%a", v);
    add(buf);
  };
  auto list = [&num](const std::vector<int>& v) {
    num(static_cast<double>(v.size()));
    for (int x : v) num(x);
  };
  add(t.upstream_key);
  add(t.address);
  num(t.port);
  add(c.type);
  num(c.https_verify_certificate ? 1 : 0);
  num(c.timeout);
  num(c.concurrency);
  add(c.http_path);
  add(c.host);
  num(c.port);
  num(static_cast<double>(c.req_headers.size()));
  for (const auto& h : c.req_headers) add(h);
  num(c.healthy.interval);
  num(c.healthy.successes);
  list(c.healthy.http_statuses);
  num(c.unhealthy.interval);
  num(c.unhealthy.http_failures);
  num(c.unhealthy.tcp_failures);
  num(c.unhealthy.timeouts);
  list(c.unhealthy.http_statuses);
  return key;
}

// "HTTP/1.x NNN" at the start of `data`: NNN, or 0 if it is not a status line.
int parse_status_line(std::string_view data) {
  if (data.size() < 12 || data.substr(0, 7) != "HTTP/1." || data[7] < '0' || data[7] > '9' ||
      data[8] != ' ') {
    return 0;
  }
  int status = 0;
  for (size_t k = 9; k < 12; ++k) {
    if (data[k] < '0' || data[k] > '9') return 0;
    status = status * 10 + (data[k] - '0');
  }
  if (data.size() > 12 && data[12] != ' ' && data[12] != '\r' && data[12] != '\n') return 0;
  return status >= 100 ? status : 0;
}

std::string build_request(const ProbeTarget& t) {
  std::string host = t.host_header.empty() ? t.address : t.host_header;
  if (host.find(':') != std::string::npos && host.front() != '[') host = "[" + host + "]";  // IPv6 literal
  std::string req = "GET ";
  req += t.spec.http_path.empty() ? "/" : t.spec.http_path;
  req += " HTTP/1.1\r\nHost: ";
  req += host;
  req += "\r\nUser-Agent: portico-healthcheck\r\nConnection: close\r\n";
  for (const auto& h : t.spec.req_headers) {
    req += h;
    req += "\r\n";
  }
  req += "\r\n";
  return req;
}

// One probed node. Lives on the checker's thread only (created, run and stopped there).
struct Probe {
  explicit Probe(asio::io_context& io) : interval(io), deadline(io), socket(io) {}

  void stop() {
    stopped = true;
    interval.cancel();
    deadline.cancel();
    error_code ignored;
    socket.close(ignored);
  }

  ProbeTarget target;
  asio::steady_timer interval;  // sleep between probes
  asio::steady_timer deadline;  // timeout of the current probe: closes the socket when it fires
  tcp::socket socket;
  uint64_t attempt = 0;  // tells the current deadline from a stale one
  bool timed_out = false;
  bool stopped = false;
};

// Sends the probe request on a connected stream and reads the status line: the status, or 0.
template <typename Stream>
asio::awaitable<int> exchange(Stream& stream, const ProbeTarget& t) {
  std::string request = build_request(t);
  auto [wec, written] = co_await asio::async_write(stream, asio::buffer(request), kNoThrow);
  (void)written;
  if (wec) co_return 0;
  char buf[kMaxStatusLine];
  size_t len = 0;
  while (len < sizeof buf) {
    auto [rec, n] = co_await stream.async_read_some(asio::buffer(buf + len, sizeof buf - len), kNoThrow);
    len += n;
    if (std::memchr(buf, '\n', len) != nullptr || rec) break;
  }
  co_return parse_status_line(std::string_view(buf, len));
}

// One probe: 0 = connection failure (or unusable answer), -1 = timeout, else the HTTP status (200 for a
// successful tcp-only check).
asio::awaitable<int> probe_once(std::shared_ptr<Probe> p) {
  if (p->stopped) co_return 0;
  const ProbeTarget& t = p->target;
  error_code ec;
  asio::ip::address addr = asio::ip::make_address(t.address, ec);
  if (ec) co_return 0;

  p->timed_out = false;
  uint64_t attempt = ++p->attempt;
  p->deadline.expires_after(seconds(t.spec.timeout, 0.001));
  p->deadline.async_wait([p, attempt](error_code e) {
    if (e || p->attempt != attempt || p->stopped) return;
    p->timed_out = true;
    error_code ignored;
    p->socket.close(ignored);
  });
  auto finish = [&p](int result) {
    p->deadline.cancel();
    error_code ignored;
    p->socket.close(ignored);
    return p->timed_out ? -1 : result;
  };

  auto [cec] = co_await p->socket.async_connect(tcp::endpoint(addr, t.port), kNoThrow);
  if (cec) co_return finish(0);
  if (t.spec.type == "tcp") co_return finish(200);
  if (t.spec.type != "https") co_return finish(co_await exchange(p->socket, t));
  // https: a handshake (a certificate that fails verification is a failed probe, like a refused connect),
  // then the same exchange over TLS. No context (its material did not load): a failed probe.
  if (!t.tls) co_return finish(0);
  asio::ssl::stream<tcp::socket&> stream(p->socket, t.tls->asio());
  std::string_view host = tls::host_without_port(t.host_header.empty() ? t.address : t.host_header);
  if (!t.tls->prepare(stream.native_handle(), host, nullptr)) co_return finish(0);
  auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::client, kNoThrow);
  if (hec) co_return finish(0);
  co_return finish(co_await exchange(stream, t));
}

asio::awaitable<void> probe_loop(std::shared_ptr<Probe> p) {
  while (!p->stopped) {
    int status = co_await probe_once(p);
    if (p->stopped) break;
    std::shared_ptr<NodeHealth> health = p->target.health;
    bool healthy = true;
    if (health) {
      bool before = health->healthy();
      health->report_active(p->target.spec, status);
      healthy = health->healthy();
      if (healthy != before) {
        PORTICO_LOG(info, "health: upstream %s node %s:%d is now %s", p->target.upstream_key.c_str(),
                    p->target.address.c_str(), static_cast<int>(p->target.port),
                    healthy ? "healthy" : "unhealthy");
      }
    }
    const auto& spec = p->target.spec;
    p->interval.expires_after(seconds(healthy ? spec.healthy.interval : spec.unhealthy.interval, 0.01));
    co_await p->interval.async_wait(kNoThrow);
  }
}

}  // namespace

struct ActiveHealthChecker::Impl {
  asio::io_context io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  std::thread thread;

  std::mutex mu;  // guards the two fields below
  std::vector<ProbeTarget> targets;
  bool running = false;

  std::map<std::string, std::shared_ptr<Probe>> probes;  // checker thread only

  // On the checker thread: makes the running probes match `next`.
  void apply(std::vector<ProbeTarget> next) {
    std::map<std::string, std::shared_ptr<Probe>> kept;
    for (auto& t : next) {
      std::string key = identity(t);
      if (kept.count(key) != 0) continue;
      auto it = probes.find(key);
      if (it != probes.end()) {
        // Same node, same check: keep its state and schedule; pick up what may differ besides.
        it->second->target.host_header = std::move(t.host_header);
        it->second->target.health = std::move(t.health);
        it->second->target.tls = std::move(t.tls);
        kept.emplace(key, std::move(it->second));
        probes.erase(it);
        continue;
      }
      auto p = std::make_shared<Probe>(io);
      p->target = std::move(t);
      asio::co_spawn(io, probe_loop(p), [p](std::exception_ptr e) {
        if (!e) return;
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          PORTICO_LOG(error, "health: probe of upstream %s node %s:%d stopped: %s",
                      p->target.upstream_key.c_str(), p->target.address.c_str(),
                      static_cast<int>(p->target.port), ex.what());
        }
      });
      kept.emplace(std::move(key), std::move(p));
    }
    for (auto& [key, p] : probes) p->stop();
    probes = std::move(kept);
  }

  void post_apply() {
    asio::post(io, [this] {
      std::vector<ProbeTarget> copy;
      {
        std::lock_guard lock(mu);
        if (!running) return;
        copy = targets;
      }
      apply(std::move(copy));
    });
  }
};

ActiveHealthChecker::ActiveHealthChecker() : impl_(std::make_unique<Impl>()) {}

ActiveHealthChecker::~ActiveHealthChecker() {
  stop();
}

void ActiveHealthChecker::start() {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    if (m.running) return;
    m.running = true;
  }
  m.io.restart();
  m.work.emplace(asio::make_work_guard(m.io));
  m.post_apply();
  m.thread = std::thread([&m] {
    for (;;) {
      try {
        m.io.run();
        return;
      } catch (const std::exception& e) {
        PORTICO_LOG(error, "health: checker loop error: %s", e.what());
      }
    }
  });
}

void ActiveHealthChecker::stop() {
  Impl& m = *impl_;
  {
    std::lock_guard lock(m.mu);
    if (!m.running) return;
    m.running = false;
  }
  // Cancels every timer and socket; the probe coroutines then see `stopped` and return, and run() ends once
  // the work guard is gone.
  asio::post(m.io, [&m] {
    for (auto& [key, p] : m.probes) p->stop();
    m.probes.clear();
  });
  m.work.reset();
  if (m.thread.joinable()) m.thread.join();
}

void ActiveHealthChecker::set_targets(std::vector<ProbeTarget> targets) {
  Impl& m = *impl_;
  bool running;
  {
    std::lock_guard lock(m.mu);
    m.targets = std::move(targets);
    running = m.running;
  }
  if (running) m.post_apply();
}

}  // namespace portico::upstream
