// Private to src/store: HTTP to etcd's JSON gateway with libcurl, endpoint failover, and the retry rules of
// EtcdClient (see README.md, "Retries and failover").
//
// Transport owns the endpoint list with its health (which member answered last, which failed recently) and a
// pool of curl easy handles. Each pooled handle keeps its own keep-alive connections, so a steady stream of
// calls costs no TCP connect per call. Thread-safe.
#pragma once

#include <atomic>
#include <chrono>
#include <cstddef>
#include <mutex>
#include <string>
#include <vector>

#include <curl/curl.h>

#include "store/etcd_client.h"
#include "store/etcd_json.h"

namespace portico::store::detail {

using Clock = std::chrono::steady_clock;

// curl_global_init, once per process, before the first handle (it is not thread-safe itself).
void curl_init_once();

// Sets what every transfer to etcd needs: POST of `body` (not copied: it must outlive the transfer) to
// `url`, JSON headers without "Expect: 100-continue", no proxy from the environment (etcd is reached
// directly), no signals (threads), TCP keep-alive, the connect timeout, and TLS (`options`' files).
void setup_post(CURL* handle, const std::string& url, const std::string& body, double connect_timeout,
                const EtcdOptions& options);

class Transport {
 public:
  explicit Transport(const EtcdOptions& options);
  ~Transport();
  Transport(const Transport&) = delete;
  Transport& operator=(const Transport&) = delete;

  const EtcdOptions& options() const { return options_; }

  // POSTs `body` to `path` ("/v3/kv/range"), retrying over the endpoints until options.retry_deadline. On ok,
  // `out` is the parsed response. `write`: the request changes the store, so an attempt that was sent and
  // got no answer makes a final failure ambiguous (maybe_applied) and a later success reports
  // `*ambiguous_retry` (may be null). `cancel` (may be null) abandons the call when it becomes true.
  Status call(const char* path, const std::string& body, bool write, Json& out,
              bool* ambiguous_retry = nullptr, const std::atomic<bool>* cancel = nullptr);
  // One attempt at `url` + `path`; no failover, no effect on endpoint health.
  Status call_once(const std::string& url, const char* path, const std::string& body, Json& out);

  // Endpoint order for the next attempt: the endpoint that answered last first, then the others in list
  // order, then the endpoints that failed within the cool-down (the one whose cool-down ends first, first).
  std::vector<size_t> order() const;
  const std::string& url(size_t i) const { return options_.endpoints[i]; }
  void mark_ok(size_t i);
  void mark_failed(size_t i, const std::string& why);
  std::string current() const;

 private:
  struct Endpoint {
    Clock::time_point failed_until{};  // epoch = healthy
  };
  enum class Outcome {
    ok,
    not_sent,   // never reached the member (connect failed): safe to retry anything
    ambiguous,  // sent, no usable answer (timeout, reset, "request timed out"): a write may have committed
    rejected,   // a transient etcd error that guarantees nothing was applied ("no leader"): retry
    final,      // an answer that retrying cannot change (bad request, compacted)
  };
  struct Attempt {
    Outcome outcome = Outcome::ok;
    bool mark_failed = false;  // the member itself is the problem: try it last for a while
    Status status;             // for Outcome::final; message for the others
  };

  Attempt attempt(const std::string& url, const char* path, const std::string& body, double timeout,
                  Json& out, const std::atomic<bool>* cancel = nullptr);
  static Attempt classify_http(long http_status, const std::string& body);
  CURL* acquire();
  void release(CURL* handle);

  const EtcdOptions options_;
  mutable std::mutex mu_;
  std::vector<Endpoint> endpoints_;  // guarded by mu_
  size_t preferred_ = 0;             // guarded by mu_
  std::vector<CURL*> idle_;          // guarded by mu_: pooled handles not in use
};

}  // namespace portico::store::detail

namespace portico::store {
struct EtcdClient::Impl {
  explicit Impl(const EtcdOptions& options) : transport(options) {}
  detail::Transport transport;
};
}  // namespace portico::store
