// EtcdWatch: one watch stream over the JSON gateway. The transfer runs on a curl multi handle owned by the
// watch so that stop() can interrupt curl_multi_poll() at once with curl_multi_wakeup() (thread-safe),
// instead of waiting for the next progress callback (up to 1 s on an idle stream).
#include <atomic>
#include <chrono>

#include "store/etcd_client.h"
#include "store/etcd_json.h"
#include "store/etcd_transport.h"

namespace portico::store {
namespace {

using detail::Clock;
using detail::Json;

constexpr int kPollMillis = 250;       // upper bound between checks of the idle / creation timers
constexpr size_t kMaxLine = 64 << 20;  // one watch response larger than this is treated as garbage
constexpr size_t kMaxErrorBody = 64 << 10;

double elapsed(Clock::time_point since) {
  return std::chrono::duration<double>(Clock::now() - since).count();
}

}  // namespace

struct EtcdWatch::Impl {
  Impl(detail::Transport& t, Callbacks c) : transport(t), callbacks(std::move(c)), multi(curl_multi_init()) {
    detail::curl_init_once();
  }
  ~Impl() { curl_multi_cleanup(multi); }

  // How one stream (one endpoint) ended.
  enum class End { stopped, not_connected, compacted, lost };

  // State of the stream in progress; lives on run()'s stack.
  struct Stream {
    Impl* impl = nullptr;
    CURL* handle = nullptr;
    std::string line_buffer;
    std::string error_body;  // the body of a non-200 answer
    bool http_ok = false;    // the status line was 200
    bool got_data = false;
    bool created = false;
    bool finished = false;  // canceled by etcd or an in-band error: `status` says why
    Status status;
    Clock::time_point last_activity = Clock::now();
  };

  static size_t on_data(char* data, size_t size, size_t n, void* user);
  bool handle_line(Stream& s, std::string_view line);
  End stream(const std::string& url, const std::string& body, double idle_timeout, Status& status);

  detail::Transport& transport;
  Callbacks callbacks;
  CURLM* multi;
  std::atomic<bool> stopped{false};
};

size_t EtcdWatch::Impl::on_data(char* data, size_t size, size_t n, void* user) {
  auto& s = *static_cast<Stream*>(user);
  size_t bytes = size * n;
  s.got_data = true;
  s.last_activity = Clock::now();
  if (!s.http_ok) {
    long code = 0;
    curl_easy_getinfo(s.handle, CURLINFO_RESPONSE_CODE, &code);
    s.http_ok = code == 200;
  }
  if (!s.http_ok) {
    if (s.error_body.size() < kMaxErrorBody) s.error_body.append(data, bytes);
    return bytes;
  }
  s.line_buffer.append(data, bytes);
  // The gateway writes one JSON object per line and flushes after each.
  size_t start = 0;
  for (size_t eol; (eol = s.line_buffer.find('\n', start)) != std::string::npos; start = eol + 1) {
    std::string_view line(s.line_buffer.data() + start, eol - start);
    if (line.find_first_not_of(" \r\t") == std::string_view::npos) continue;
    if (!s.impl->handle_line(s, line)) return 0;  // aborts the transfer (CURLE_WRITE_ERROR)
  }
  s.line_buffer.erase(0, start);
  if (s.line_buffer.size() > kMaxLine) {
    s.finished = true;
    s.status = {Code::internal, "watch response too large"};
    return 0;
  }
  return bytes;
}

// Returns false to end the stream.
bool EtcdWatch::Impl::handle_line(Stream& s, std::string_view line) {
  Json j = Json::parse(line, nullptr, false);
  auto fail = [&s](Code code, std::string message) {
    s.finished = true;
    s.status = {code, std::move(message)};
    return false;
  };
  if (!j.is_object()) return fail(Code::internal, "unparsable watch response");
  if (auto e = j.find("error"); e != j.end()) {
    std::string message = e->is_object() ? detail::get_string(*e, "message") : std::string("watch error");
    return fail(Code::unavailable, "watch stream error: " + message);
  }
  auto r = j.find("result");
  if (r == j.end() || !r->is_object()) return fail(Code::internal, "watch response without result");
  ResponseHeader header = detail::parse_header(*r);
  if (detail::get_bool(*r, "canceled")) {
    int64_t compact_revision = detail::get_i64(*r, "compact_revision");
    if (compact_revision > 0) {
      fail(Code::compacted,
           "watch start revision compacted; oldest available " + std::to_string(compact_revision));
      s.status.compact_revision = compact_revision;
      return false;
    }
    std::string reason = detail::get_string(*r, "cancel_reason");
    return fail(Code::unavailable, "watch canceled by etcd: " + (reason.empty() ? "no reason" : reason));
  }
  if (detail::get_bool(*r, "created")) {
    s.created = true;
    if (callbacks.on_created) callbacks.on_created(header);
    return true;
  }
  std::vector<WatchEvent> events;
  if (auto evs = r->find("events"); evs != r->end() && evs->is_array()) {
    events.resize(evs->size());
    for (size_t i = 0; i < evs->size(); ++i) {
      const Json& ev = (*evs)[i];
      // A PUT event has no "type": PUT is the enum's default value, which the gateway leaves out.
      events[i].type =
          detail::get_string(ev, "type") == "DELETE" ? WatchEvent::Type::del : WatchEvent::Type::put;
      auto kv = ev.find("kv");
      if (kv == ev.end() || !detail::parse_kv(*kv, events[i].kv))
        return fail(Code::internal, "bad watch event");
    }
  }
  if (callbacks.on_events) callbacks.on_events(header, events);
  return true;
}

EtcdWatch::Impl::End EtcdWatch::Impl::stream(const std::string& url, const std::string& body,
                                             double idle_timeout, Status& status) {
  const EtcdOptions& options = transport.options();
  Stream s;
  s.impl = this;
  s.handle = curl_easy_init();
  if (s.handle == nullptr) {
    status = {Code::internal, "curl_easy_init failed"};
    return End::lost;
  }
  std::string full_url = url + "/v3/watch";
  detail::setup_post(s.handle, full_url, body, options.connect_timeout, options);
  curl_easy_setopt(s.handle, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(s.handle, CURLOPT_WRITEDATA, &s);
  char error[CURL_ERROR_SIZE] = {};
  curl_easy_setopt(s.handle, CURLOPT_ERRORBUFFER, error);
  curl_multi_add_handle(multi, s.handle);

  Clock::time_point started = Clock::now();
  enum { running, done, by_stop, by_idle, by_no_create } why = running;
  CURLcode result = CURLE_OK;
  while (why == running) {
    int still_running = 0;
    curl_multi_perform(multi, &still_running);
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg == CURLMSG_DONE) {
        result = msg->data.result;
        why = done;
      }
    }
    if (why != running) break;
    if (stopped.load()) {
      why = by_stop;
    } else if (!s.created && elapsed(started) > options.request_timeout) {
      why = by_no_create;
    } else if (idle_timeout > 0 && elapsed(s.last_activity) > idle_timeout) {
      why = by_idle;
    } else {
      curl_multi_poll(multi, nullptr, 0, kPollMillis, nullptr);
    }
  }
  curl_multi_remove_handle(multi, s.handle);
  long request_size = 0;
  curl_easy_getinfo(s.handle, CURLINFO_REQUEST_SIZE, &request_size);
  curl_easy_cleanup(s.handle);

  if (why == by_stop || stopped.load()) return End::stopped;
  if (why == by_no_create) {
    status = {Code::unavailable, "watch not confirmed within request_timeout"};
    return End::not_connected;
  }
  if (why == by_idle) {
    status = {Code::unavailable, "watch idle for " + std::to_string(idle_timeout) + "s"};
    return End::lost;
  }
  if (s.finished) {
    status = s.status;
    return status.code == Code::compacted ? End::compacted : End::lost;
  }
  if (s.got_data && !s.http_ok) {
    Json j = Json::parse(s.error_body, nullptr, false);
    std::string message = j.is_object() ? detail::get_string(j, "error") : std::string();
    if (message.find("required revision has been compacted") != std::string::npos) {
      status = {Code::compacted, message};
      return End::compacted;
    }
    status = {Code::unavailable,
              "watch refused: " + (message.empty() ? std::string("bad HTTP status") : message)};
    return End::lost;
  }
  std::string what = result == CURLE_OK
                         ? std::string("stream ended")
                         : (error[0] != '\0' ? std::string(error) : curl_easy_strerror(result));
  status = {Code::unavailable, "watch: " + what};
  if (!s.created && (result == CURLE_COULDNT_CONNECT || request_size == 0)) return End::not_connected;
  return End::lost;
}

EtcdWatch::EtcdWatch(EtcdClient& client, Callbacks callbacks)
    : impl_(std::make_unique<Impl>(client.impl_->transport, std::move(callbacks))) {}

EtcdWatch::~EtcdWatch() = default;

void EtcdWatch::stop() {
  impl_->stopped.store(true);
  curl_multi_wakeup(impl_->multi);
}

Status EtcdWatch::run(std::string_view key, std::string_view range_end, int64_t start_revision,
                      double idle_timeout) {
  Json create = {{"key", detail::base64_encode(key)}, {"progress_notify", true}};
  if (!range_end.empty()) create["range_end"] = detail::base64_encode(range_end);
  if (start_revision > 0) create["start_revision"] = detail::i64_string(start_revision);
  std::string body = Json{{"create_request", std::move(create)}}.dump();

  detail::Transport& transport = impl_->transport;
  std::string last_error = "no endpoint";
  for (size_t i : transport.order()) {
    if (impl_->stopped.load()) return {};
    Status status;
    switch (impl_->stream(transport.url(i), body, idle_timeout, status)) {
      case Impl::End::stopped:
        return {};
      case Impl::End::compacted:
        return status;
      case Impl::End::not_connected:
        transport.mark_failed(i, status.message);
        last_error = transport.url(i) + ": " + status.message;
        continue;
      case Impl::End::lost:
        // The member went away (or refused): the caller's re-watch should start elsewhere.
        if (status.code == Code::unavailable) transport.mark_failed(i, status.message);
        status.message = transport.url(i) + ": " + status.message;
        return status;
    }
  }
  return {Code::unavailable, "watch: no endpoint reachable: " + last_error};
}

}  // namespace portico::store
