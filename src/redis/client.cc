#include <boost/asio/post.hpp>
#include <charconv>

#include "base/log.h"
#include "redis/internal.h"
#include "redis/resp.h"

namespace portico::redis {

namespace asio = boost::asio;
using namespace std::chrono_literals;

namespace {

constexpr uint8_t kMaxAttempts = 8;       // redirects and retries of one call
constexpr auto kRefreshInterval = 100ms;  // cluster maps are fetched at most this often
constexpr auto kRetryDelay = 25ms;        // TRYAGAIN / CLUSTERDOWN

// "MOVED 3999 127.0.0.1:6381" -> slot, host, port.
bool parse_redirect(std::string_view text, int& slot, std::string& host, uint16_t& port) {
  size_t a = text.find(' ');
  if (a == std::string_view::npos) return false;
  size_t b = text.find(' ', a + 1);
  if (b == std::string_view::npos) return false;
  std::string_view s = text.substr(a + 1, b - a - 1);
  std::string_view addr = text.substr(b + 1);
  size_t colon = addr.rfind(':');
  if (colon == std::string_view::npos) return false;
  if (std::from_chars(s.data(), s.data() + s.size(), slot).ec != std::errc()) return false;
  unsigned p = 0;
  if (std::from_chars(addr.data() + colon + 1, addr.data() + addr.size(), p).ec != std::errc()) return false;
  std::string_view h = addr.substr(0, colon);
  if (h.size() >= 2 && h.front() == '[') h = h.substr(1, h.size() - 2);
  host.assign(h);
  port = static_cast<uint16_t>(p);
  return slot >= 0 && slot < 16384;
}

}  // namespace

int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch()).count();
}

// --- CallList ---

void CallList::push(Call* c) {
  c->prev_ = tail;
  c->next_ = nullptr;
  if (tail != nullptr) {
    tail->next_ = c;
  } else {
    head = c;
  }
  tail = c;
}

void CallList::unlink(Call* c) {
  (c->prev_ ? c->prev_->next_ : head) = c->next_;
  (c->next_ ? c->next_->prev_ : tail) = c->prev_;
  c->prev_ = c->next_ = nullptr;
}

Call* CallList::pop() {
  Call* c = head;
  if (c != nullptr) unlink(c);
  return c;
}

// --- ClientCore ---

ClientCore::ClientCore(Client& client, Target& t, asio::io_context& ctx)
    : self(client),
      shared(t.shared_),
      context(ctx),
      options(shared->options),
      timeout(std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(
          t.options().timeout_seconds > 0 ? t.options().timeout_seconds : 1.0))),
      alive(std::make_shared<bool>(true)),
      tls(shared->tls),
      timer(ctx),
      retry_timer(ctx) {
  refresh_call.core = this;
  if (options.cluster) slots.assign(16384, kNoNode);
  for (const auto& [host, port] : options.nodes) connection(host, port);
}

ClientCore::~ClientCore() {
  destroying = true;
  *alive = false;
  CallList pending;
  while (Call* c = waiting.pop()) pending.push(c);
  while (Call* c = ready.pop()) pending.push(c);
  for (auto& conn : conns) conn->abandon(pending);
  while (Call* c = pending.pop()) {
    if (c == &refresh_call) continue;
    finish(c, Result::shutdown, nullptr);  // owned calls go back to owned_free, freed with it
  }
}

ClientCore::OwnedCall* ClientCore::take_owned() {
  if (!owned_free.empty()) {
    OwnedCall* call = owned_free.back().release();
    owned_free.pop_back();
    return call;
  }
  if (owned_live >= kOwnedPoolCap) ++stats.owned_overflow;
  ++owned_live;
  auto* call = new OwnedCall;
  call->owned_ = true;
  return call;
}

void ClientCore::give_back(OwnedCall* call) {
  if (owned_free.size() < kOwnedPoolCap) {
    owned_free.emplace_back(call);
    return;
  }
  --owned_live;
  delete call;
}

Connection& ClientCore::connection(const std::string& host, uint16_t port) {
  std::string name =
      (host.find(':') != std::string::npos ? "[" + host + "]" : host) + ":" + std::to_string(port);
  if (Connection* c = connection_by_name(name)) return *c;
  conns.push_back(std::make_unique<Connection>(*this, host, port, shared->breaker(name)));
  return *conns.back();
}

Connection* ClientCore::connection_by_name(std::string_view name) {
  for (auto& c : conns) {
    if (c->name() == name) return c.get();
  }
  return nullptr;
}

void ClientCore::issue(Call* call) {
  call->client_ = &self;
  call->attempts_ = 0;
  call->park_epoch_ = 0;
  call->asking_ = false;
  call->deadline_ = Clock::now() + timeout;
  arm(call->deadline_);
  dispatch(call);
}

void ClientCore::dispatch(Call* call) {
  if (!options.cluster) return route_to(*conns[0], call);
  if (call->asking_) {
    std::string_view addr = call->ask_node_;
    size_t colon = addr.rfind(':');
    std::string host(addr.substr(0, colon));
    if (host.size() >= 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    return route_to(connection(host, static_cast<uint16_t>(std::stoi(std::string(addr.substr(colon + 1))))),
                    call);
  }
  uint16_t node = kNoNode;
  if (have_map) {
    if (call->slot_ >= 0) {
      node = slots[static_cast<size_t>(call->slot_)];
    } else {
      for (uint16_t n : slots) {
        if (n != kNoNode) {
          node = n;
          break;
        }
      }
    }
  }
  if (node == kNoNode) {
    wait(call);
    return request_refresh();
  }
  route_to(*conns[node], call);
}

void ClientCore::route_to(Connection& conn, Call* call) {
  const int64_t now = now_ns();
  Breaker& b = conn.breaker();
  bool ok;
  if (conn.state() != Connection::down) {
    ok = !b.is_open(now);
  } else {
    ok = b.try_connect(now);
  }
  if (ok) return conn.send(call);
  if (options.cluster) {
    if (may_wait_for_map(call) && ++call->attempts_ < kMaxAttempts) {
      // The node may have been replaced (failover): look once at a newer map before giving up.
      call->park_epoch_ = map_epoch + 1;
      wait(call);
      return request_refresh();
    }
    // The latest map still sends the slot to this node: fail now (a node down until its failover would
    // otherwise cost every call on its slots the whole retry budget), and keep the map current so that
    // calls go to the new master as soon as the cluster names one.
    request_refresh();
  }
  make_ready(call, Result::unavailable);
}

bool ClientCore::may_wait_for_map(const Call* call) const {
  if (call->park_epoch_ != 0 && map_epoch >= call->park_epoch_) return false;  // waited: same owner
  if (!have_map || call->asking_) return true;
  // A map newer than the refresh interval is what a refresh would bring (refreshes are rate-limited).
  return Clock::now() - map_at >= kRefreshInterval;
}

void ClientCore::on_reply(Connection& conn, Call* call, const Reply& reply) {
  if (call == &refresh_call) return finish(call, Result::ok, &reply);
  if (!reply.is_error()) return finish(call, Result::ok, &reply);
  std::string_view code = reply.error_code();
  if (code == "NOSCRIPT" && call->script_ != nullptr) {
    // EVAL loads the script as SCRIPT LOAD would; later EVALSHAs find it.
    const Script& script = *call->script_;
    std::string rest = call->wire_.substr(call->rest_);
    size_t argc = 0;
    std::from_chars(call->wire_.data() + 1, call->wire_.data() + call->wire_.size(), argc);
    call->wire_.clear();
    append_array_header(call->wire_, argc);
    append_bulk(call->wire_, "EVAL");
    append_bulk(call->wire_, script.source());
    call->wire_ += rest;
    call->script_ = nullptr;
    ++stats.script_loads;
    return route_to(conn, call);
  }
  if (options.cluster && (code == "MOVED" || code == "ASK") && call->attempts_ + 1 < kMaxAttempts) {
    int slot = 0;
    std::string host;
    uint16_t port = 0;
    if (parse_redirect(reply.str, slot, host, port)) {
      ++call->attempts_;
      ++stats.redirects;
      Connection& next = connection(host, port);
      if (code == "MOVED") {
        for (size_t i = 0; i < conns.size(); ++i) {
          if (conns[i].get() == &next) slots[static_cast<size_t>(slot)] = static_cast<uint16_t>(i);
        }
        request_refresh();
      } else {
        call->asking_ = true;
        call->ask_node_ = next.name();
      }
      return route_to(next, call);
    }
  }
  if (options.cluster && (code == "TRYAGAIN" || code == "CLUSTERDOWN") && ++call->attempts_ < kMaxAttempts) {
    wait(call);
    request_refresh();
    return arm_retry(kRetryDelay);
  }
  finish(call, Result::error, &reply);
}

void ClientCore::on_lost(Call* call, Result result, bool written) {
  // A written call may have run (an INCR counted, its reply lost): sending it again could run it twice, so
  // it completes `unavailable` and the caller decides. One still in the output buffer never left.
  if (call != &refresh_call && options.cluster && !written && result != Result::timeout &&
      ++call->attempts_ < kMaxAttempts) {
    // Cluster: the node may be gone (failover); the map will tell where the slot went.
    wait(call);
    return request_refresh();
  }
  make_ready(call, result);
}

void ClientCore::finish(Call* call, Result result, const Reply* reply) {
  if (outcomes != nullptr) {
    outcomes->by_result[static_cast<int>(result)].fetch_add(1, std::memory_order_relaxed);
  }
  call->client_ = nullptr;
  call->state_ = kIdle;
  call->conn_ = nullptr;
  if (call->owned_) return give_back(static_cast<OwnedCall*>(call));
  call->complete(result, reply);
}

void ClientCore::make_ready(Call* call, Result result) {
  call->state_ = kReady;
  call->result_ = result;
  ready.push(call);
  post_drain();
}

void ClientCore::post_drain() {
  if (drain_posted || destroying) return;
  drain_posted = true;
  asio::post(context, [this, a = alive] {
    if (!*a) return;
    drain_posted = false;
    drain();
  });
}

void ClientCore::drain() {
  while (Call* c = ready.pop()) finish(c, c->result_, nullptr);
}

void ClientCore::wait(Call* call) {
  call->state_ = kWaiting;
  waiting.push(call);
}

void ClientCore::arm(Clock::time_point deadline) {
  if (deadline >= timer_at) return;
  timer_at = deadline;
  timer.expires_at(deadline);
  timer.async_wait([this, a = alive](const boost::system::error_code& ec) {
    if (!*a || ec == asio::error::operation_aborted) return;
    timer_at = Clock::time_point::max();
    sweep();
  });
}

void ClientCore::sweep() {
  const Clock::time_point now = Clock::now();
  // A connection with a call past its deadline is broken: a late reply would be matched to the next call.
  for (auto& conn : conns) {
    if (conn->expired(now)) conn->fail(Result::unavailable, "timeout", true);
  }
  for (Call* c = waiting.head; c != nullptr;) {
    Call* next = c->next_;
    if (c->deadline_ <= now) {
      waiting.unlink(c);
      make_ready(c, Result::timeout);
    }
    c = next;
  }
  Clock::time_point earliest = Clock::time_point::max();
  for (auto& conn : conns) earliest = std::min(earliest, conn->earliest_deadline());
  for (Call* c = waiting.head; c != nullptr; c = c->next_) earliest = std::min(earliest, c->deadline_);
  if (earliest != Clock::time_point::max()) arm(earliest);
  drain();
}

// --- cluster slot map ---

void ClientCore::request_refresh() {
  if (refresh_in_flight) return;
  const Clock::time_point now = Clock::now();
  if (now - last_refresh < kRefreshInterval) {
    refresh_wanted = true;
    return arm_retry(
        std::chrono::duration_cast<std::chrono::milliseconds>(kRefreshInterval - (now - last_refresh)) + 1ms);
  }
  refresh_now();
}

void ClientCore::refresh_now() {
  refresh_wanted = false;
  const int64_t now = now_ns();
  // Ask the nodes in turn, so that one dead node does not keep the map from being refreshed.
  for (size_t i = 0; i < conns.size(); ++i) {
    Connection& conn = *conns[(refresh_rotor + i) % conns.size()];
    bool ok =
        conn.state() != Connection::down ? !conn.breaker().is_open(now) : conn.breaker().try_connect(now);
    if (!ok) continue;
    refresh_rotor = (refresh_rotor + i + 1) % conns.size();
    refresh_in_flight = true;
    last_refresh = Clock::now();
    Call* call = &refresh_call;
    refresh_call.from = &conn;
    call->client_ = &self;
    call->deadline_ = Clock::now() + timeout;
    call->wire_.clear();
    std::string_view argv[] = {"CLUSTER", "SLOTS"};
    append_command(call->wire_, argv);
    arm(call->deadline_);
    conn.send(call);
    return;
  }
  // Every known node is unavailable: what waits cannot be served now.
  last_refresh = Clock::now();
  while (Call* c = waiting.pop()) make_ready(c, Result::unavailable);
}

void ClientCore::on_map(Connection* from, Result result, const Reply* reply) {
  refresh_in_flight = false;
  if (result == Result::ok && reply != nullptr && reply->type == ReplyType::array &&
      !reply->elements.empty()) {
    std::vector<uint16_t> map(16384, kNoNode);
    for (const Reply& range : reply->elements) {
      if (range.type != ReplyType::array || range.elements.size() < 3) continue;
      const Reply& master = range.elements[2];
      if (master.type != ReplyType::array || master.elements.size() < 2) continue;
      std::string host(master.elements[0].str);
      if (host.empty() || host == "?") host = from->host();  // "unknown": the node we asked
      uint16_t port = static_cast<uint16_t>(master.elements[1].integer);
      Connection& conn = connection(host, port);
      uint16_t index = 0;
      for (size_t i = 0; i < conns.size(); ++i) {
        if (conns[i].get() == &conn) index = static_cast<uint16_t>(i);
      }
      int64_t lo = range.elements[0].integer, hi = range.elements[1].integer;
      for (int64_t s = std::max<int64_t>(lo, 0); s <= hi && s < 16384; ++s)
        map[static_cast<size_t>(s)] = index;
    }
    slots.swap(map);
    have_map = true;
    ++map_epoch;
    map_at = Clock::now();
    ++stats.map_refreshes;
  } else if (waiting.head != nullptr) {
    request_refresh();  // rate-limited: tries the next node
  }
  redispatch_waiting();
}

void ClientCore::redispatch_waiting() {
  CallList batch;
  while (Call* c = waiting.pop()) batch.push(c);
  while (Call* c = batch.pop()) {
    c->state_ = kIdle;
    dispatch(c);
  }
}

void ClientCore::arm_retry(std::chrono::milliseconds delay) {
  if (retry_armed) return;
  retry_armed = true;
  retry_timer.expires_after(delay);
  retry_timer.async_wait([this, a = alive](const boost::system::error_code& ec) {
    if (!*a || ec == asio::error::operation_aborted) return;
    retry_armed = false;
    if (refresh_wanted && !refresh_in_flight) refresh_now();
    if (!refresh_in_flight) redispatch_waiting();
  });
}

// --- Client ---

Client::Client(Target& target, asio::io_context& context)
    : core_(std::make_unique<ClientCore>(*this, target, context)) {}

Client::~Client() = default;

void Client::command(std::span<const std::string_view> argv, Call* call) {
  if (core_->destroying) return;  // issued from a `shutdown` completion: dropped
  if (call == nullptr) call = core_->take_owned();
  if (call->client_ != nullptr) cancel(call);
  call->wire_.clear();
  append_command(call->wire_, argv);
  call->script_ = nullptr;
  call->slot_ = argv.size() > 1 ? key_slot(argv[1]) : -1;
  core_->issue(call);
}

void Client::eval(const Script& script, std::span<const std::string_view> keys,
                  std::span<const std::string_view> args, Call* call) {
  if (core_->destroying) return;
  if (call->client_ != nullptr) cancel(call);
  std::string& w = call->wire_;
  w.clear();
  append_array_header(w, 3 + keys.size() + args.size());
  append_bulk(w, "EVALSHA");
  append_bulk(w, script.sha());
  call->rest_ = w.size();
  char n[16];
  auto [end, ec] = std::to_chars(n, n + sizeof n, keys.size());
  (void)ec;
  append_bulk(w, std::string_view(n, static_cast<size_t>(end - n)));
  for (std::string_view k : keys) append_bulk(w, k);
  for (std::string_view a : args) append_bulk(w, a);
  call->script_ = &script;
  call->slot_ = keys.empty() ? -1 : key_slot(keys[0]);
  core_->issue(call);
}

void Client::cancel(Call* call) {
  if (call == nullptr || call->client_ != this) return;
  switch (call->state_) {
    case kWaiting:
      core_->waiting.unlink(call);
      break;
    case kReady:
      core_->ready.unlink(call);
      break;
    case kInFlight:
      if (call->conn_ != nullptr) static_cast<Connection*>(call->conn_)->forget(call);
      break;
    default:
      break;
  }
  call->client_ = nullptr;
  call->state_ = kIdle;
  call->conn_ = nullptr;
}

bool Client::available() const {
  const int64_t now = now_ns();
  // Standalone: the server's breaker. Cluster: some node can be reached.
  for (auto& conn : core_->conns) {
    if (!conn->breaker().is_open(now)) return true;
  }
  return false;
}

const Options& Client::options() const {
  return core_->options;
}
const Client::Stats& Client::stats() const {
  Stats& s = core_->stats;
  s.owned_pooled = core_->owned_free.size();
  s.ring_slots = 0;
  for (auto& conn : core_->conns) s.ring_slots += conn->ring_capacity();
  return s;
}

}  // namespace portico::redis
