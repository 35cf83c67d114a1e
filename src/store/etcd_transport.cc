#include "store/etcd_transport.h"

#include <algorithm>
#include <thread>

#include "base/log.h"
#include "tls/curl_tls.h"

namespace portico::store::detail {
namespace {

constexpr size_t kMaxIdleHandles = 8;          // more concurrent calls than this get a fresh handle each
constexpr size_t kMaxBody = 64 * 1024 * 1024;  // a range answer larger than this is refused
constexpr double kFirstBackoff = 0.05;         // seconds between passes over all endpoints, doubling...
constexpr double kMaxBackoff = 0.5;            // ...up to this

std::once_flag g_curl_once;
curl_slist* g_headers = nullptr;

size_t append_body(char* data, size_t size, size_t n, void* user) {
  auto* body = static_cast<std::string*>(user);
  if (body->size() + size * n > kMaxBody) return 0;
  body->append(data, size * n);
  return size * n;
}

long millis(double seconds) {
  return std::max(1L, static_cast<long>(seconds * 1000));
}

double seconds_until(Clock::time_point t) {
  return std::chrono::duration<double>(t - Clock::now()).count();
}

// libcurl calls this at least once a second during a transfer, idle or not.
int check_cancel(void* user, curl_off_t, curl_off_t, curl_off_t, curl_off_t) {
  return static_cast<const std::atomic<bool>*>(user)->load() ? 1 : 0;
}

bool canceled(const std::atomic<bool>* cancel) {
  return cancel != nullptr && cancel->load();
}

bool contains(const std::string& text, const char* part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

void curl_init_once() {
  std::call_once(g_curl_once, [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_headers = curl_slist_append(nullptr, "Content-Type: application/json");
    // Without this libcurl waits up to 1 s for "100 Continue" before sending a body over 1 KiB.
    g_headers = curl_slist_append(g_headers, "Expect:");
  });
}

void setup_post(CURL* h, const std::string& url, const std::string& body, double connect_timeout,
                const EtcdOptions& options) {
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_POST, 1L);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
  curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, g_headers);
  curl_easy_setopt(h, CURLOPT_PROXY, "");
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 10L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, millis(connect_timeout));
  tls::apply_curl_tls(h, options.ca_file, options.cert_file, options.key_file);
}

Transport::Transport(const EtcdOptions& options) : options_(options), endpoints_(options.endpoints.size()) {
  curl_init_once();
}

Transport::~Transport() {
  for (CURL* h : idle_) curl_easy_cleanup(h);
}

CURL* Transport::acquire() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      CURL* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void Transport::release(CURL* h) {
  {
    std::lock_guard lock(mu_);
    if (idle_.size() < kMaxIdleHandles) {
      idle_.push_back(h);
      return;
    }
  }
  curl_easy_cleanup(h);
}

std::vector<size_t> Transport::order() const {
  std::lock_guard lock(mu_);
  Clock::time_point now = Clock::now();
  size_t n = endpoints_.size();
  std::vector<size_t> healthy, failed;
  for (size_t k = 0; k < n; ++k) {
    size_t i = (preferred_ + k) % n;
    (endpoints_[i].failed_until > now ? failed : healthy).push_back(i);
  }
  std::stable_sort(failed.begin(), failed.end(), [this](size_t a, size_t b) {
    return endpoints_[a].failed_until < endpoints_[b].failed_until;
  });
  healthy.insert(healthy.end(), failed.begin(), failed.end());
  return healthy;
}

void Transport::mark_ok(size_t i) {
  bool recovered = false, switched = false;
  {
    std::lock_guard lock(mu_);
    recovered = endpoints_[i].failed_until != Clock::time_point{};
    endpoints_[i].failed_until = {};
    switched = preferred_ != i;
    preferred_ = i;
  }
  if (recovered) PORTICO_LOG(info, "etcd: endpoint %s answers again", url(i).c_str());
  if (switched && endpoints_.size() > 1) PORTICO_LOG(info, "etcd: now using endpoint %s", url(i).c_str());
}

void Transport::mark_failed(size_t i, const std::string& why) {
  bool was_healthy = false;
  {
    std::lock_guard lock(mu_);
    Clock::time_point now = Clock::now();
    was_healthy = endpoints_[i].failed_until <= now;
    endpoints_[i].failed_until = now + std::chrono::duration_cast<Clock::duration>(
                                           std::chrono::duration<double>(options_.endpoint_cooldown));
  }
  if (was_healthy) {
    PORTICO_LOG(warn, "etcd: endpoint %s failed (%s); trying it last for %.1fs", url(i).c_str(), why.c_str(),
                options_.endpoint_cooldown);
  }
}

std::string Transport::current() const {
  std::lock_guard lock(mu_);
  return endpoints_.empty() ? std::string() : options_.endpoints[preferred_];
}

// gRPC status codes as the gateway reports them in {"code":N}.
enum GrpcCode {
  kCanceled = 1,
  kUnknown = 2,
  kDeadlineExceeded = 4,
  kResourceExhausted = 8,
  kFailedPrecondition = 9,
  kInternal = 13,
  kUnavailable = 14,
  kDataLoss = 15,
};

Transport::Attempt Transport::classify_http(long http_status, const std::string& body) {
  Attempt a;
  Json j = Json::parse(body, nullptr, false);
  std::string message = j.is_object() ? get_string(j, "error") : std::string();
  if (message.empty()) message = "HTTP " + std::to_string(http_status);
  int code = j.is_object() ? static_cast<int>(get_i64(j, "code")) : 0;
  a.status.message = message;

  auto final = [&a](Code c) {
    a.outcome = Outcome::final;
    a.status.code = c;
    return a;
  };
  if (contains(message, "required revision has been compacted")) return final(Code::compacted);
  switch (code) {
    case kUnavailable:
      // "request timed out" (all three variants) and "server stopped" can hit a proposal already in raft;
      // the rest ("no leader", "leader changed", "not capable", "unhealthy cluster", learner) are refusals.
      a.outcome = contains(message, "timed out") || contains(message, "stopped") ? Outcome::ambiguous
                                                                                 : Outcome::rejected;
      a.mark_failed = !contains(message, "leader changed");
      return a;
    case kResourceExhausted:
      if (contains(message, "too many requests")) {
        a.outcome = Outcome::rejected;
        return a;
      }
      return final(Code::unavailable);  // "database space exceeded": needs an operator, not a retry
    case kDeadlineExceeded:
    case kCanceled:
      a.outcome = Outcome::ambiguous;
      a.mark_failed = true;
      return a;
    case kUnknown:
      // A follower drops a proposal when it has no leader to forward it to.
      if (contains(message, "proposal dropped")) {
        a.outcome = Outcome::rejected;
        a.mark_failed = true;
        return a;
      }
      return final(Code::internal);
    case kFailedPrecondition:
      if (contains(message, "not leader")) {
        a.outcome = Outcome::rejected;
        return a;
      }
      return final(Code::invalid);
    case kInternal:
    case kDataLoss:
      return final(Code::internal);
    case 0:
      break;  // not a gateway error body: judge by the HTTP status alone
    default:
      return final(Code::invalid);  // InvalidArgument, OutOfRange, NotFound, PermissionDenied, ...
  }
  if (http_status == 502 || http_status == 503 || http_status == 504) {
    a.outcome = Outcome::ambiguous;
    a.mark_failed = true;
    return a;
  }
  return final(http_status >= 400 && http_status < 500 ? Code::invalid : Code::internal);
}

Transport::Attempt Transport::attempt(const std::string& url, const char* path, const std::string& body,
                                      double timeout, Json& out, const std::atomic<bool>* cancel) {
  CURL* h = acquire();
  if (h == nullptr) return {Outcome::final, false, {Code::internal, "curl_easy_init failed"}};
  curl_easy_reset(h);  // keeps the handle's connection cache, which is the point of pooling
  std::string full_url = url + path;
  std::string reply;
  setup_post(h, full_url, body, std::min(options_.connect_timeout, timeout), options_);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, millis(timeout));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &reply);
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  if (cancel != nullptr) {
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, check_cancel);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, const_cast<std::atomic<bool>*>(cancel));
  }

  CURLcode rc = curl_easy_perform(h);
  long http_status = 0;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &http_status);
  // Bytes of request headers written to a socket: 0 means the request never left this process.
  long request_size = 0;
  curl_easy_getinfo(h, CURLINFO_REQUEST_SIZE, &request_size);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
  release(h);

  Attempt a;
  if (rc != CURLE_OK) {
    a.status.message = error[0] != '\0' ? error : curl_easy_strerror(rc);
    a.mark_failed = true;
    if (rc == CURLE_URL_MALFORMAT || rc == CURLE_UNSUPPORTED_PROTOCOL) {
      a.outcome = Outcome::final;
      a.status.code = Code::invalid;
    } else if (rc == CURLE_COULDNT_CONNECT || rc == CURLE_COULDNT_RESOLVE_HOST || request_size == 0) {
      a.outcome = Outcome::not_sent;
    } else {
      a.outcome = Outcome::ambiguous;
    }
    return a;
  }
  if (http_status != 200) return classify_http(http_status, reply);
  // Streaming endpoints (lease keepalive) wrap each message as {"result":{...}}, one per line.
  size_t eol = reply.find('\n');
  Json j =
      Json::parse(eol == std::string::npos ? std::string_view(reply) : std::string_view(reply).substr(0, eol),
                  nullptr, false);
  if (j.is_object() && j.contains("result") && !j.contains("header")) j = std::move(j["result"]);
  if (!j.is_object()) return {Outcome::final, false, {Code::internal, "unparsable answer from " + url}};
  // A stream's in-band error: {"error":{"grpc_code":14,"message":"..."}}. (A string "error" is a field of
  // some answers, e.g. LeaseGrantResponse, and is left to the caller.)
  if (auto e = j.find("error"); e != j.end() && e->is_object()) {
    Json flat = {{"error", get_string(*e, "message")}, {"code", get_i64(*e, "grpc_code")}};
    return classify_http(503, flat.dump());
  }
  out = std::move(j);
  return a;
}

Status Transport::call(const char* path, const std::string& body, bool write, Json& out,
                       bool* ambiguous_retry, const std::atomic<bool>* cancel) {
  if (options_.endpoints.empty()) return {Code::invalid, "no etcd endpoints configured"};
  Clock::time_point deadline = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                  std::chrono::duration<double>(options_.retry_deadline));
  bool maybe_applied = false;
  std::string last_error = "no endpoint";
  double backoff = kFirstBackoff;
  while (true) {
    for (size_t i : order()) {
      double left = seconds_until(deadline);
      if (left <= 0 || canceled(cancel)) break;
      Attempt a = attempt(url(i), path, body, std::min(options_.request_timeout, left), out, cancel);
      if (canceled(cancel)) break;
      if (a.outcome == Outcome::ok) {
        mark_ok(i);
        if (ambiguous_retry != nullptr) *ambiguous_retry = maybe_applied;
        return {};
      }
      if (a.outcome == Outcome::final) {
        a.status.maybe_applied = maybe_applied;
        return a.status;
      }
      if (a.outcome == Outcome::ambiguous && write) maybe_applied = true;
      if (a.mark_failed) mark_failed(i, a.status.message);
      last_error = url(i) + ": " + a.status.message;
    }
    double left = seconds_until(deadline);
    if (left <= 0 || canceled(cancel)) break;
    for (Clock::time_point wake = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                     std::chrono::duration<double>(std::min(backoff, left)));
         Clock::now() < wake && !canceled(cancel);) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    backoff = std::min(backoff * 2, kMaxBackoff);
  }
  Status s{Code::unavailable, canceled(cancel) ? "canceled" : "etcd unavailable: " + last_error};
  s.maybe_applied = maybe_applied;
  return s;
}

Status Transport::call_once(const std::string& url, const char* path, const std::string& body, Json& out) {
  Attempt a = attempt(url, path, body, options_.request_timeout, out);
  if (a.outcome == Outcome::ok) return {};
  if (a.outcome == Outcome::final) return a.status;
  return {Code::unavailable, url + ": " + a.status.message};
}

}  // namespace portico::store::detail
