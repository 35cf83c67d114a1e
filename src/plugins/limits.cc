// The local rate-limit state and arithmetic (limits.h, limit_table.h).
#include "plugins/limits.h"

#include <algorithm>
#include <bit>
#include <charconv>
#include <chrono>
#include <cmath>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "config/var_template.h"

namespace portico::plugins {

namespace {

uint64_t mix(uint64_t x) {  // splitmix64's finaliser
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ULL;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

uint64_t fnv1a(std::string_view text, uint64_t h = 0xcbf29ce484222325ULL) {
  for (unsigned char c : text) {
    h ^= c;
    h *= 0x100000001b3ULL;
  }
  return h;
}

int64_t ceil_seconds(int64_t ms) {
  return ms <= 0 ? 0 : (ms + 999) / 1000;
}

constexpr int64_t kDead = INT64_MIN;

}  // namespace

LimitTable::LimitTable(size_t capacity) {
  const size_t unit = kStripes * kWindow;
  const size_t slots = std::max(unit, (capacity + unit - 1) / unit * unit);
  per_stripe_ = slots / kStripes;
  stripes_ = std::make_unique<Stripe[]>(kStripes);
}

void LimitTable::allocate() {
  slots_.resize(capacity());
  for (Entry& e : slots_) e.expires_ms = kDead;
}

uint64_t limit_hash(uint64_t ns, std::string_view key) {
  return mix(fnv1a(key) ^ mix(ns));
}

int64_t LimitStores::steady_ms() {
  using namespace std::chrono;
  return duration_cast<milliseconds>(steady_clock::now().time_since_epoch()).count();
}

uint64_t conf_namespace(std::string_view plugin, const nlohmann::json& conf) {
  return fnv1a(conf.dump(), fnv1a(plugin));
}

std::string_view format_int(int64_t v, char* buf) {
  auto r = std::to_chars(buf, buf + 24, v);
  return std::string_view(buf, static_cast<size_t>(r.ptr - buf));
}

// --- keys ---

LimitKey::LimitKey(std::string_view key_type, const std::string& key) {
  if (key_type == "constant") {
    constant_ = true;
    text_ = key;
    return;
  }
  std::vector<config::TemplatePiece> pieces;
  std::string error;
  const std::string text = key_type == "var" ? "$" + key : key;
  if (!config::parse_template(text, config::TemplateSyntax::vars, pieces, &error)) {
    throw std::invalid_argument("key: " + error);
  }
  for (const auto& p : pieces) {
    if (p.var == config::TemplateVar::literal) literal_size_ += p.text.size();
  }
  template_ = Template(std::move(pieces));
}

void LimitKey::resolve(const RequestContext& ctx, std::string& out) const {
  if (constant_) {
    out += text_;
    return;
  }
  const size_t start = out.size();
  Expansion expansion(out, Escape::body);
  template_.expand(ctx, nullptr, expansion);
  if (out.size() - start <= literal_size_) {  // no variable resolved to anything
    out.resize(start);
    out += ctx.client_ip_text;
  }
}

// --- limit-count ---

CountDecision LocalCount::take(std::string_view key, int64_t now) const {
  CountDecision d;
  d.limit = count_;
  const bool ok = stores_.count.update(ns_, key, now, [&](LimitTable::Entry& e, bool fresh) {
    if (!sliding_) {
      if (fresh) e.expires_ms = now + window_ms_;
      d.reset = fresh ? window_ms_ / 1000 : ceil_seconds(e.expires_ms - now);
      if (e.a >= count_) {
        d.kind = CountDecision::Kind::rejected;
        return;
      }
      ++e.a;
      d.kind = CountDecision::Kind::allowed;
      d.remaining = count_ - e.a;
      return;
    }
    // a: the previous window's count, b: the current one's, c: the current window's start.
    const int64_t start = now - now % window_ms_;
    if (fresh || e.c != start) {
      e.a = !fresh && e.c == start - window_ms_ ? e.b : 0;
      e.b = 0;
      e.c = start;
    }
    e.expires_ms = start + 2 * window_ms_;
    const double weight = static_cast<double>(window_ms_ - (now - start)) / static_cast<double>(window_ms_);
    const double estimate = static_cast<double>(e.a) * weight + static_cast<double>(e.b);
    d.reset = ceil_seconds(start + window_ms_ - now);
    if (estimate + 1 > static_cast<double>(count_)) {
      d.kind = CountDecision::Kind::rejected;
      return;
    }
    ++e.b;
    d.kind = CountDecision::Kind::allowed;
    d.remaining = std::max<int64_t>(0, static_cast<int64_t>(std::floor(count_ - estimate - 1)));
  });
  if (!ok) d.kind = CountDecision::Kind::failed;
  return d;
}

bool LocalCount::incoming(RequestContext&, std::string_view key, CountDecision& out) const {
  out = take(key, stores_.now_ms());
  return true;
}

// --- limit-req ---

ReqDecision LocalReq::take(std::string_view key, int64_t now) const {
  ReqDecision d;
  const double rate = rate_ * 1000;  // resty.limit.req's units: thousandths of a request
  const double burst = burst_ * 1000;
  const bool ok = stores_.req.update(ns_, key, now, [&](LimitTable::Entry& e, bool fresh) {
    double excess = 0;
    if (!fresh) {
      const double last = std::bit_cast<double>(e.a);
      const double elapsed = static_cast<double>(std::llabs(now - e.b));
      excess = std::max(last - rate * elapsed / 1000 + 1000, 0.0);
    }
    if (excess > burst) {
      d.kind = ReqDecision::Kind::rejected;
      if (fresh) e.expires_ms = kDead;
      return;
    }
    e.a = std::bit_cast<int64_t>(excess);
    e.b = now;
    // Once drained (excess + 1000 worth of time at the rate), the entry means nothing a new one would not.
    e.expires_ms = now + static_cast<int64_t>(std::ceil((excess + 1000) / rate * 1000));
    d.kind = ReqDecision::Kind::allowed;
    d.delay = excess / rate;
  });
  if (!ok) d.kind = ReqDecision::Kind::failed;
  return d;
}

bool LocalReq::incoming(RequestContext&, std::string_view key, ReqDecision& out) const {
  out = take(key, stores_.now_ms());
  return true;
}

// --- limit-conn ---

ConnDecision LocalConn::take(std::string_view key, int64_t now, LimitTable::Handle& handle) const {
  ConnDecision d;
  const bool ok = stores_.conn.update(
      ns_, key, now,
      [&](LimitTable::Entry& e, bool fresh) {
        const int64_t conn = e.c + 1;
        if (conn > conn_ + burst_) {
          d.kind = ConnDecision::Kind::rejected;
          if (fresh) e.expires_ms = kDead;
          return;
        }
        e.c = conn;
        e.expires_ms = INT64_MAX;  // pinned until the last request of the key is released
        d.kind = ConnDecision::Kind::allowed;
        if (conn > conn_) d.delay = unit_delay() * static_cast<double>((conn - 1) / conn_);
      },
      &handle);
  if (!ok) d.kind = ConnDecision::Kind::failed;
  return d;
}

bool LocalConn::incoming(RequestContext& ctx, std::string_view key, ConnDecision& out) const {
  LimitTable::Handle h;
  out = take(key, stores_.now_ms(), h);
  if (out.kind == ConnDecision::Kind::allowed) {
    ctx.add_lease(this, (static_cast<uint64_t>(h.slot) << 32) | h.gen,
                  static_cast<uint64_t>(std::llround(out.delay * 1e6)));
  }
  return true;
}

void LocalConn::release(uint64_t a, uint64_t b, double request_seconds) const {
  const LimitTable::Handle h{static_cast<uint32_t>(a >> 32), static_cast<uint32_t>(a)};
  stores_.conn.with(h, [](LimitTable::Entry& e) {
    if (--e.c <= 0) {
      e.c = 0;
      e.expires_ms = kDead;
    }
  });
  if (!only_default_ && request_seconds >= 0) {
    // resty.limit.conn's leaving(): the unit moves halfway towards the request's own time (less the delay it
    // was given). Shared by the workers; a lost update between two of them is as good as either.
    const double latency = request_seconds - static_cast<double>(b) / 1e6;
    unit_delay_.store((latency + unit_delay()) / 2, std::memory_order_relaxed);
  }
}

}  // namespace portico::plugins
