#include "sync/cp_http.h"

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <mutex>

#include "tls/curl_tls.h"

namespace portico::sync::detail {
namespace {

using Clock = std::chrono::steady_clock;

constexpr double kTickSeconds = 0.25;  // upper bound between tick() calls and stop checks

std::once_flag g_curl_once;

long millis(double seconds) {
  return std::max(1L, static_cast<long>(seconds * 1000));
}

}  // namespace

CpHttp::CpHttp(const std::string& token, double connect_timeout, CpTls tls)
    : connect_timeout_(connect_timeout), tls_(std::move(tls)) {
  // curl_global_init is not thread-safe itself; the sync client is created before its thread starts.
  std::call_once(g_curl_once, [] { curl_global_init(CURL_GLOBAL_DEFAULT); });
  multi_ = curl_multi_init();
  foreground_ = curl_easy_init();
  background_ = curl_easy_init();
  if (!token.empty()) {
    std::string auth = "Authorization: Bearer ";
    auth += token;
    get_headers_ = curl_slist_append(nullptr, auth.c_str());
    post_headers_ = curl_slist_append(nullptr, auth.c_str());
  }
  post_headers_ = curl_slist_append(post_headers_, "Content-Type: application/json");
  // Without this libcurl waits up to 1 s for "100 Continue" before sending a body over 1 KiB.
  post_headers_ = curl_slist_append(post_headers_, "Expect:");
}

CpHttp::~CpHttp() {
  // Removing a handle that is not in the multi handle is harmless (CURLM_OK or a no-op error).
  curl_multi_remove_handle(multi_, foreground_);
  curl_multi_remove_handle(multi_, background_);
  curl_easy_cleanup(foreground_);
  curl_easy_cleanup(background_);
  curl_multi_cleanup(multi_);
  curl_slist_free_all(get_headers_);
  curl_slist_free_all(post_headers_);
}

void reserve_bounded(std::string& body, size_t need, size_t limit) {
  if (need <= body.capacity()) return;
  size_t cap = limit;
  while (cap / 2 >= need && cap / 2 >= 16384) cap /= 2;
  std::string bigger;
  bigger.reserve(cap);  // from an empty string: exactly `cap`
  bigger.append(body);
  body.swap(bigger);
}

size_t CpHttp::append_body(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const size_t bytes = size * n;
  try {
    if (sink->body.empty()) {
      // A declared length past the bound is refused before a byte is kept (curl 7.88's CURLOPT_MAXFILESIZE
      // does that too, but only for a length it knew before the transfer started); one within it is
      // reserved at once.
      curl_off_t declared = -1;
      if (curl_easy_getinfo(sink->handle, CURLINFO_CONTENT_LENGTH_DOWNLOAD_T, &declared) == CURLE_OK &&
          declared > 0) {
        if (declared > static_cast<curl_off_t>(sink->limit)) {
          sink->too_large = true;
          return 0;  // aborts the transfer with CURLE_WRITE_ERROR
        }
        sink->body.reserve(static_cast<size_t>(declared));
      }
    }
    if (bytes > sink->limit - sink->body.size()) {
      sink->too_large = true;
      return 0;
    }
    reserve_bounded(sink->body, sink->body.size() + bytes, sink->limit);
    sink->body.append(data, bytes);
    return bytes;
  } catch (const std::exception&) {  // never through libcurl's C frames
    sink->no_memory = true;
    return 0;
  }
}

void CpHttp::setup(CURL* h, const std::string& url, double timeout, Sink* sink, size_t max_body, char* error,
                   double stall) {
  curl_easy_reset(h);
  error[0] = '\0';
  sink->handle = h;
  std::string().swap(sink->body);  // the last answer's capacity goes too
  sink->limit = max_body;
  sink->too_large = false;
  sink->no_memory = false;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_PROXY, "");  // control planes are reached directly, as etcd is
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPIDLE, 10L);
  curl_easy_setopt(h, CURLOPT_TCP_KEEPINTVL, 5L);
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, millis(std::min(connect_timeout_, timeout)));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, millis(timeout));
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, append_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, sink);
  curl_easy_setopt(h, CURLOPT_MAXFILESIZE_LARGE, static_cast<curl_off_t>(max_body));
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, error);
  tls::apply_curl_tls(h, tls_.ca_file, tls_.cert_file, tls_.key_file);
  if (stall > 0) {  // fewer than 1 byte/s over `stall` seconds, the wait for the first byte included
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, std::max(1L, std::lround(stall)));
  }
}

bool CpHttp::get(const std::string& url, double timeout, size_t max_body, HttpReply& reply, double stall) {
  if (stopped()) return false;
  setup(foreground_, url, timeout, &foreground_body_, max_body, foreground_error_, stall);
  curl_easy_setopt(foreground_, CURLOPT_HTTPHEADER, get_headers_);
  curl_multi_add_handle(multi_, foreground_);
  foreground_abort_.clear();
  // drive() runs the tick and the report callbacks, which allocate: whatever unwinds through here (a
  // bad_alloc the sync thread survives), the handle leaves the multi handle, so the next get() starts clean.
  struct Detach {
    CpHttp& http;
    ~Detach() {
      curl_multi_remove_handle(http.multi_, http.foreground_);  // a no-op once drive() removed it
      http.foreground_abort_.clear();
    }
  } detach{*this};
  return drive(foreground_, 0, &reply);
}

bool CpHttp::post_background(const std::string& url, std::string body, double timeout) {
  if (background_busy_ || stopped()) return false;
  background_request_ = std::move(body);
  setup(background_, url, timeout, &background_body_, kMaxReportAnswer, background_error_, 0);
  curl_easy_setopt(background_, CURLOPT_HTTPHEADER, post_headers_);
  curl_easy_setopt(background_, CURLOPT_POST, 1L);
  curl_easy_setopt(background_, CURLOPT_POSTFIELDS, background_request_.data());
  curl_easy_setopt(background_, CURLOPT_POSTFIELDSIZE_LARGE,
                   static_cast<curl_off_t>(background_request_.size()));
  curl_multi_add_handle(multi_, background_);
  background_busy_ = true;
  return true;
}

bool CpHttp::pause(double seconds) {
  return drive(nullptr, seconds, nullptr);
}

void CpHttp::stop() {
  stopped_.store(true);
  curl_multi_wakeup(multi_);
}

void CpHttp::finish_background(CURLcode code) {
  HttpReply r;
  r.code = code;
  curl_easy_getinfo(background_, CURLINFO_RESPONSE_CODE, &r.status);
  if (code != CURLE_OK) r.error = background_error_[0] != '\0' ? background_error_ : curl_easy_strerror(code);
  r.body = std::move(background_body_.body);
  curl_multi_remove_handle(multi_, background_);
  background_busy_ = false;
  if (background_done_) background_done_(r);
}

bool CpHttp::drive(CURL* foreground, double seconds, HttpReply* reply) {
  Clock::time_point deadline =
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
  Clock::time_point next_tick = Clock::now();
  while (!stopped()) {
    int running = 0;
    curl_multi_perform(multi_, &running);
    bool done = false;
    CURLcode result = CURLE_OK;
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      // Copy before removing: the message does not survive curl_multi_remove_handle().
      CURL* easy = msg->easy_handle;
      CURLcode code = msg->data.result;
      if (easy == foreground && foreground != nullptr) {
        done = true;
        result = code;
      } else if (easy == background_) {
        finish_background(code);
      }
    }
    if (!done && foreground != nullptr && !foreground_abort_.empty()) {
      reply->code = CURLE_ABORTED_BY_CALLBACK;
      reply->status = 0;
      reply->too_large = false;
      reply->error = std::move(foreground_abort_);
      foreground_abort_.clear();
      reply->body.clear();
      std::string().swap(foreground_body_.body);  // up to the request's bound: not kept until the next get()
      curl_multi_remove_handle(multi_, foreground);
      return true;
    }
    if (done) {
      reply->code = result;
      reply->status = 0;
      curl_easy_getinfo(foreground, CURLINFO_RESPONSE_CODE, &reply->status);
      reply->too_large = foreground_body_.too_large || result == CURLE_FILESIZE_EXCEEDED;
      if (foreground_body_.no_memory) {
        reply->code = CURLE_OUT_OF_MEMORY;
        reply->error = "out of memory receiving the answer";
      } else if (reply->too_large) {
        if (result == CURLE_OK) reply->code = CURLE_WRITE_ERROR;
        reply->error = "answer larger than ";
        reply->error += std::to_string(foreground_body_.limit);
        reply->error += " bytes: transfer aborted";
      } else {
        reply->error = result == CURLE_OK ? std::string()
                                          : (foreground_error_[0] != '\0' ? std::string(foreground_error_)
                                                                          : curl_easy_strerror(result));
      }
      reply->body = std::move(foreground_body_.body);
      curl_multi_remove_handle(multi_, foreground);
      return true;
    }
    Clock::time_point now = Clock::now();
    if (foreground == nullptr && now >= deadline) return true;
    if (tick_ && now >= next_tick) {
      next_tick =
          now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(kTickSeconds));
      tick_();
      continue;  // a transfer the tick started needs a curl_multi_perform before polling
    }
    double wait = kTickSeconds;
    if (tick_) wait = std::min(wait, std::chrono::duration<double>(next_tick - now).count());
    if (foreground == nullptr) wait = std::min(wait, std::chrono::duration<double>(deadline - now).count());
    curl_multi_poll(multi_, nullptr, 0, static_cast<int>(std::max(1.0, wait * 1000)), nullptr);
  }
  if (foreground != nullptr) curl_multi_remove_handle(multi_, foreground);
  return false;
}

std::string read_string(const Json& j, const char* key) {
  auto it = j.find(key);
  if (it == j.end()) return {};
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number_integer()) return it->dump();
  return {};
}

bool read_i64(const Json& j, const char* key, int64_t& out) {
  auto it = j.find(key);
  if (it == j.end()) return false;
  if (it->is_number_integer()) {
    out = it->get<int64_t>();
    return true;
  }
  if (!it->is_string()) return false;
  const std::string& s = it->get_ref<const std::string&>();
  char* end = nullptr;
  errno = 0;
  long long v = std::strtoll(s.c_str(), &end, 10);
  if (s.empty() || errno != 0 || *end != '\0') return false;
  out = v;
  return true;
}

namespace {

// The structure of JSON text, skipped over without building anything: what a span holds is validated by
// whoever parses it (nlohmann for small members, canonicalize() for values).
struct Lexer {
  std::string_view t;
  size_t pos = 0;

  void space() {
    while (pos < t.size() && (t[pos] == ' ' || t[pos] == '\n' || t[pos] == '\r' || t[pos] == '\t')) ++pos;
  }
  bool eat(char c) {
    space();
    if (pos >= t.size() || t[pos] != c) return false;
    ++pos;
    return true;
  }
  bool skip_string() {  // at '"'
    for (++pos; pos < t.size(); ++pos) {
      if (t[pos] == '\\') {
        ++pos;
      } else if (t[pos] == '"') {
        ++pos;
        return true;
      }
    }
    return false;
  }
  bool skip_container() {  // at '{' or '['
    int depth = 0;
    while (pos < t.size()) {
      char c = t[pos];
      if (c == '"') {
        if (!skip_string()) return false;
        continue;
      }
      ++pos;
      if (c == '{' || c == '[') {
        ++depth;
      } else if ((c == '}' || c == ']') && --depth == 0) {
        return true;
      }
    }
    return false;
  }
  // One value; `span` gets its text.
  bool value(std::string_view& span) {
    space();
    size_t start = pos;
    if (pos >= t.size()) return false;
    char c = t[pos];
    if (c == '"') {
      if (!skip_string()) return false;
    } else if (c == '{' || c == '[') {
      if (!skip_container()) return false;
    } else {
      while (pos < t.size() && std::string_view(",]} \t\r\n").find(t[pos]) == std::string_view::npos) ++pos;
      if (pos == start) return false;
    }
    span = t.substr(start, pos - start);
    return true;
  }
  // The members of an object: `member(key)` is called at each value, which it must consume.
  template <typename Member>
  bool object(Member&& member) {
    if (!eat('{')) return false;
    if (eat('}')) return true;
    do {
      space();
      std::string_view span;
      if (pos >= t.size() || t[pos] != '"' || !value(span) || span.size() > kMaxEnvelopeMember) return false;
      Json key = Json::parse(span, nullptr, false);
      if (!key.is_string() || !eat(':') || !member(key.get_ref<const std::string&>())) return false;
    } while (eat(','));
    return eat('}');
  }
};

// A small member's value, parsed; discarded when it is not JSON or too long for a DOM.
Json small_value(Lexer& lex) {
  std::string_view span;
  if (!lex.value(span) || span.size() > kMaxEnvelopeMember) return Json(Json::value_t::discarded);
  return Json::parse(span, nullptr, false);
}

}  // namespace

bool parse_changes_answer(std::string_view body, ChangesAnswer& out, std::string& error) {
  out = ChangesAnswer{};
  if (too_deep(body)) {  // what is parsed below (members, values) recurses when dumped
    error = "nested too deep";
    return false;
  }
  Lexer lex{body};
  std::string problem;
  auto fail = [&](const char* what) {
    if (problem.empty()) problem = what;
    return false;
  };
  auto change = [&]() {
    ResourceChange c;
    std::string_view value;
    bool has_value = false;
    bool ok = lex.object([&](const std::string& key) {
      if (key == "value") {
        has_value = true;
        return lex.value(value);
      }
      Json v = small_value(lex);
      if (v.is_discarded()) return false;
      if (key == "kind" || key == "id") {
        Json holder = {{"v", std::move(v)}};
        (key == "kind" ? c.kind : c.id) = read_string(holder, "v");
      }
      return true;
    });
    if (!ok) return fail("a change is not an object");
    if (c.kind.empty() || c.id.empty() || !has_value) return fail("a malformed change");
    if (value != "null") {
      std::string canonical;
      if (!canonicalize(value, canonical)) {
        return fail(value.size() > kMaxNonCanonicalBytes ? "a change's value is too large (not canonical)"
                                                         : "a change's value is not JSON");
      }
      c.value = std::move(canonical);
    }
    out.changes.push_back(std::move(c));
    return true;
  };
  bool ok = lex.object([&](const std::string& key) {
    if (key == "changes") {
      if (out.has_changes) return fail("two \"changes\"");
      out.has_changes = true;
      if (!lex.eat('[')) return fail("no changes");
      if (lex.eat(']')) return true;
      do {
        if (!change()) return false;
      } while (lex.eat(','));
      return lex.eat(']');
    }
    Json v = small_value(lex);
    if (v.is_discarded()) return fail("a member is not JSON or too large");
    out.envelope[key] = std::move(v);
    return true;
  });
  lex.space();
  if (!ok || lex.pos != body.size()) {
    error = problem.empty() ? "not a JSON object" : problem;
    return false;
  }
  return true;
}

std::string error_message(const std::string& body) {
  // Only a body small enough for a DOM: an error answer is a line of JSON.
  if (body.size() <= kMaxEnvelopeMember && !too_deep(body)) {
    Json j = Json::parse(body, nullptr, false);
    if (j.is_object()) {
      std::string m = read_string(j, "error_msg");
      if (!m.empty()) return m;
    }
  }
  return body.substr(0, 200);
}

std::string url_escape(std::string_view text, bool keep_slash) {
  static const char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if ((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_' ||
        c == '.' || c == '~' || (keep_slash && c == '/')) {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

}  // namespace portico::sync::detail
