// Structured access log: one JSON object per line. Each worker owns an AccessLog that formats into its own
// buffer and writes it out in large chunks (when 32 KiB are pending, and on the worker's periodic tick), so
// the request path never does a syscall for logging. All workers share the file descriptor; each flush is a
// single write(2) of whole lines on an O_APPEND file, so lines never interleave.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace portico::proxy {

struct AccessRecord {
  std::string_view remote_addr;
  std::string_view method;
  std::string_view uri;
  std::string_view host;
  std::string_view user_agent;
  std::string_view route_id;
  std::string_view upstream_addr;
  int status = 0;
  int upstream_status = 0;
  uint64_t bytes_sent = 0;
  double request_time = 0;    // seconds
  double upstream_time = -1;  // seconds; < 0 = no upstream
  // TLS connections only (plain lines stay as they were): "scheme":"https", and with a client certificate
  // nginx's $ssl_client_s_dn and $ssl_client_verify.
  bool tls = false;
  std::string_view ssl_client_s_dn;
  std::string_view ssl_client_verify;
  // HTTP/2 streams only (HTTP/1.1 lines stay as they were): "protocol":"HTTP/2.0".
  std::string_view protocol;
};

class AccessLog {
 public:
  // `fd` < 0 disables logging. The fd is owned by the caller (the server) and outlives the worker.
  explicit AccessLog(int fd) : fd_(fd) {}
  ~AccessLog() { flush(); }
  bool enabled() const { return fd_ >= 0; }
  void write(const AccessRecord& record);
  void flush();

 private:
  int fd_;
  std::string buffer_;
};

// Opens the access log target: "-" = stdout, "off" = disabled (-1), else a file opened for appending.
int open_access_log(const std::string& target);

}  // namespace portico::proxy
