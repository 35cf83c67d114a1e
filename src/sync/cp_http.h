// Private to src/sync: the data plane's HTTP client for the control planes' sync listener.
//
// All transfers of one SyncClient run on one curl multi handle, driven by the sync thread alone:
// - one foreground request at a time (a snapshot or a /changes long poll), which get() blocks on;
// - at most one background POST (a report) that runs alongside it, so a report never waits for a long poll
//   to end and a long poll is never delayed by a slow report.
// Every wait (a transfer, a pause between attempts) sits in curl_multi_poll(), so stop() — which sets a flag
// and calls curl_multi_wakeup(), both thread-safe — ends it at once. The multi handle keeps the connection
// cache, so consecutive polls to the same control plane reuse one keep-alive connection.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <curl/curl.h>
#include <nlohmann/json.hpp>

#include "base/json_limits.h"
#include "sync/resource_set.h"

namespace portico::sync::detail {

struct HttpReply {
  CURLcode code = CURLE_OK;  // transport result; CURLE_OK means an HTTP answer arrived
  long status = 0;           // HTTP status (0 without an answer)
  std::string body;
  std::string error;       // curl's message when code != CURLE_OK
  bool too_large = false;  // the body passed the request's bound: the transfer was aborted (code != CURLE_OK)

  bool transport_ok() const { return code == CURLE_OK; }
};

// TLS files for https:// control planes (see SyncOptions).
struct CpTls {
  std::string ca_file;
  std::string cert_file;
  std::string key_file;
};

class CpHttp {
 public:
  // `token` goes into every request as "Authorization: Bearer <token>" (none when empty: mutual TLS).
  CpHttp(const std::string& token, double connect_timeout, CpTls tls = {});
  ~CpHttp();
  CpHttp(const CpHttp&) = delete;
  CpHttp& operator=(const CpHttp&) = delete;

  // Called on the sync thread about every 250 ms while get() or pause() waits (to start reports when due).
  void set_tick(std::function<void()> tick) { tick_ = std::move(tick); }
  // Called on the sync thread when a background POST ends.
  void set_background_done(std::function<void(const HttpReply&)> done) { background_done_ = std::move(done); }

  // GET `url` with a total timeout of `timeout` seconds. A body longer than `max_body` bytes is never
  // buffered: the transfer is aborted as soon as the Content-Length or the bytes received pass it
  // (reply.too_large), so a hostile peer costs at most `max_body` bytes of memory. False when stop()
  // interrupted it (reply unset).
  // `stall`: seconds without a byte received after which the transfer is given up (0: none), so a peer
  // that accepts connections and never answers is left long before `timeout`. Long polls pass 0: they are
  // silent by design, and abort_foreground() ends them instead.
  bool get(const std::string& url, double timeout, size_t max_body, HttpReply& reply, double stall = 0);
  // Ends the running foreground transfer now, as a transport failure with `why` as its error. For the sync
  // thread (a tick or a background completion) while get() waits; forgotten when nothing runs (the next
  // get() starts without it).
  void abort_foreground(std::string why) { foreground_abort_ = std::move(why); }
  // Starts a POST of JSON `body` in the background; its answer is bounded by kMaxReportAnswer. False
  // (nothing started) while another one is running.
  bool post_background(const std::string& url, std::string body, double timeout);
  bool background_busy() const { return background_busy_; }
  // Waits `seconds` while background transfers go on. False when stop() interrupted it.
  bool pause(double seconds);

  // Thread-safe; every current and later get()/pause() returns false at once.
  void stop();
  bool stopped() const { return stopped_.load(); }

 private:
  // Drives the multi handle until `foreground` (may be null) is done or `seconds` have passed.
  bool drive(CURL* foreground, double seconds, HttpReply* reply);
  // A transfer's body, bounded (see get()).
  struct Sink {
    CURL* handle = nullptr;
    std::string body;
    size_t limit = 0;
    bool too_large = false;
    bool no_memory = false;  // an allocation failed: the transfer was aborted
  };
  static size_t append_body(char* data, size_t size, size_t n, void* user);
  void setup(CURL* handle, const std::string& url, double timeout, Sink* sink, size_t max_body, char* error,
             double stall);
  void finish_background(CURLcode code);

  CURLM* multi_;
  CURL* foreground_;
  CURL* background_;
  curl_slist* get_headers_ = nullptr;
  curl_slist* post_headers_ = nullptr;
  double connect_timeout_;
  const CpTls tls_;
  std::atomic<bool> stopped_{false};

  Sink foreground_body_;
  std::string foreground_abort_;  // set by abort_foreground(): why the running get() ends
  char foreground_error_[CURL_ERROR_SIZE] = {};
  bool background_busy_ = false;
  std::string background_request_;
  Sink background_body_;
  char background_error_[CURL_ERROR_SIZE] = {};

  std::function<void()> tick_;
  std::function<void(const HttpReply&)> background_done_;
};

// Makes room in `body` for `need` bytes in all (need <= limit): capacities are limit / 2^k, never more than
// `limit` (std::string's own growth may reserve up to twice what is asked). While the last step copies, the
// old buffer (limit / 2) and the new one (limit) coexist: 1.5 x limit at the peak. Throws std::bad_alloc.
void reserve_bounded(std::string& body, size_t need, size_t limit);

// A control plane answers a report with 204 and no body: an answer longer than this is cut off.
inline constexpr size_t kMaxReportAnswer = 64 * 1024;

// Protocol helpers.
using Json = nlohmann::json;
// A string field; an integer is accepted too (its decimal digits: a cluster id is a decimal number).
std::string read_string(const Json& j, const char* key);
// An integer field, as a JSON number or a decimal string.
bool read_i64(const Json& j, const char* key, int64_t& out);
// True when `text` nests arrays/objects deeper than `max_depth`: parsing is iterative, but dump() recurses,
// and an answer is parsed before anything in it is verified. The default leaves room for the /changes
// envelope around values ResourceSet accepts (512 levels).
inline bool too_deep(std::string_view text, size_t max_depth = 600) {
  return base::json_too_deep(text, max_depth);
}
// A /changes answer ({cluster_id, from, revision, changes[{kind,id,value|null}], state{...}, behind?}), taken
// apart without a DOM of the whole: the changes may be tens of MB, and a DOM costs about 20 bytes of memory
// per byte of text (and allocates even to free itself). Every member but "changes" is parsed into
// `envelope` (each at most kMaxEnvelopeMember bytes of text); each change's value is canonicalized on its
// own (canonicalize(): verbatim when it is canonical already, as a control plane sends it). About the
// body's size again in memory at the peak.
struct ChangesAnswer {
  Json envelope = Json::object();
  bool has_changes = false;  // "changes" was there, an array
  std::vector<ResourceChange> changes;
};
inline constexpr size_t kMaxEnvelopeMember = 64 * 1024;
// False with `error` ("nested too deep", "not a JSON object", "a malformed change", ...) when the answer is
// unusable. The nesting is checked before anything is parsed.
bool parse_changes_answer(std::string_view body, ChangesAnswer& out, std::string& error);

// The control plane's {"error_msg": ...}, or the start of whatever the body is.
std::string error_message(const std::string& body);
// RFC 3986 percent-encoding: unreserved characters stay, and '/' too when `keep_slash` (an S3 object key in a
// path); everything else is %XX (a query parameter).
std::string url_escape(std::string_view text, bool keep_slash = false);

}  // namespace portico::sync::detail
