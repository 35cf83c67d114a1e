// A small S3 client for the snapshot fallback (docs/sync-protocol.md, "S3 fallback"): PUT, GET, LIST (v2,
// by prefix, every page) and DELETE of whole objects, on an S3-compatible endpoint with path-style URLs
// (<endpoint>/<bucket>/<key>). Every request is signed with AWS Signature Version 4 by libcurl
// (CURLOPT_AWS_SIGV4); the payload's SHA-256 goes in x-amz-content-sha256, which curl signs with the rest.
//
// The credentials come from a file (load_s3_credentials) and never appear in logs, errors or argv.
//
// Contract: one S3Client may be used by any number of threads; calls are serialised on one curl handle (so
// the connection to the endpoint is kept alive between calls). cancel() is thread-safe: it makes the call in
// progress, and every later call, fail within about a second. Calls are blocking and bounded by
// S3Options::timeout.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace portico::sync {

namespace detail {
struct S3Reply;
}

struct S3Options {
  std::string endpoint;  // "http://127.0.0.1:4568" (scheme, host, port; no path)
  std::string bucket;
  std::string region = "us-east-1";
  std::string access_key;
  std::string secret_key;
  double connect_timeout = 2;  // seconds
  double timeout = 60;         // seconds for a whole request (a snapshot can be tens of MB)
};

// Reads the access key (line 1) and the secret key (line 2) from `path` into `options`. Throws
// std::runtime_error naming the file (never its content) when it cannot be read or a line is empty. A file
// readable by group or others is used, with a warning.
void load_s3_credentials(const std::string& path, S3Options& options);

struct S3Object {
  std::string key;
  int64_t size = 0;
};

class S3Client {
 public:
  explicit S3Client(S3Options options);
  ~S3Client();
  S3Client(const S3Client&) = delete;
  S3Client& operator=(const S3Client&) = delete;

  // Each returns false with `error` ("HTTP 403 SignatureDoesNotMatch: ...", or curl's message) on failure.
  bool put(const std::string& key, std::string_view body, std::string& error);
  // `max_bytes`: a larger object is refused. `status` (optional) receives the HTTP status (404: no object).
  bool get(const std::string& key, std::string& body, std::string& error, long* status = nullptr,
           size_t max_bytes = size_t{128} << 20);
  // The first `bytes` bytes of an object (a Range request), e.g. to read a snapshot's header only.
  bool get_head(const std::string& key, size_t bytes, std::string& body, std::string& error);
  // Every object whose key starts with `prefix`, in key order, following continuation tokens. `page_size`
  // is max-keys per request (1..1000).
  bool list(const std::string& prefix, std::vector<S3Object>& objects, std::string& error,
            int page_size = 1000);
  // Deleting a missing object succeeds (S3 answers 204 either way).
  bool remove(const std::string& key, std::string& error);

  void cancel();
  const S3Options& options() const { return options_; }
  // "<endpoint>/<bucket>/<prefix>" for logs.
  std::string describe(const std::string& prefix) const;

 private:
  bool request(const char* method, const std::string& path_and_query, std::string_view body, size_t max_bytes,
               detail::S3Reply& reply, const std::string& extra_header = {});

  const S3Options options_;
  std::mutex mu_;
  void* curl_ = nullptr;  // CURL*, guarded by mu_
  std::atomic<bool> canceled_{false};
};

}  // namespace portico::sync
