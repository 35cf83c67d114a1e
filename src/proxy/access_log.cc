#include "proxy/access_log.h"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <ctime>

namespace portico::proxy {
namespace {

constexpr size_t kFlushAt = 32 * 1024;

void append_json_string(std::string& out, std::string_view value) {
  static const char* kHex = "0123456789abcdef";
  out.push_back('"');
  for (unsigned char c : value) {
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
    } else if (c < 0x20 || c == 0x7f) {
      out += "\\u00";
      out.push_back(kHex[c >> 4]);
      out.push_back(kHex[c & 15]);
    } else {
      out.push_back(static_cast<char>(c));  // bytes >= 0x80 pass through (logged as received)
    }
  }
  out.push_back('"');
}

void append_field(std::string& out, const char* name, std::string_view value) {
  out.push_back(',');
  out.push_back('"');
  out += name;
  out += "\":";
  append_json_string(out, value);
}

}  // namespace

void AccessLog::write(const AccessRecord& r) {
  if (fd_ < 0) return;
  timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  std::tm tm{};
  gmtime_r(&ts.tv_sec, &tm);
  char head[96];
  int n = std::snprintf(head, sizeof head, "{\"time\":\"%04d-%02d-%02dT%02d:%02d:%02d.%03ldZ\"",
                        tm.tm_year + 1900, tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                        ts.tv_nsec / 1000000);
  buffer_.append(head, static_cast<size_t>(n));
  append_field(buffer_, "remote_addr", r.remote_addr);
  append_field(buffer_, "method", r.method);
  append_field(buffer_, "uri", r.uri);
  append_field(buffer_, "host", r.host);
  append_field(buffer_, "user_agent", r.user_agent);
  append_field(buffer_, "route_id", r.route_id);
  append_field(buffer_, "upstream_addr", r.upstream_addr);
  if (r.tls) {
    buffer_ += ",\"scheme\":\"https\"";
    if (!r.ssl_client_s_dn.empty()) append_field(buffer_, "ssl_client_s_dn", r.ssl_client_s_dn);
    append_field(buffer_, "ssl_client_verify", r.ssl_client_verify);
  }
  if (!r.protocol.empty()) append_field(buffer_, "protocol", r.protocol);
  char tail[192];
  if (r.upstream_time >= 0) {
    n = std::snprintf(tail, sizeof tail,
                      ",\"status\":%d,\"bytes_sent\":%llu,\"request_time\":%.6f,\"upstream_status\":%d,"
                      "\"upstream_time\":%.6f}\n",
                      r.status, static_cast<unsigned long long>(r.bytes_sent), r.request_time,
                      r.upstream_status, r.upstream_time);
  } else {
    n = std::snprintf(tail, sizeof tail,
                      ",\"status\":%d,\"bytes_sent\":%llu,\"request_time\":%.6f,\"upstream_status\":null,"
                      "\"upstream_time\":null}\n",
                      r.status, static_cast<unsigned long long>(r.bytes_sent), r.request_time);
  }
  buffer_.append(tail, static_cast<size_t>(n));
  if (buffer_.size() >= kFlushAt) flush();
}

void AccessLog::flush() {
  size_t off = 0;
  while (fd_ >= 0 && off < buffer_.size()) {
    ssize_t w = ::write(fd_, buffer_.data() + off, buffer_.size() - off);
    if (w <= 0) break;  // a full disk must not stop the proxy: drop what cannot be written
    off += static_cast<size_t>(w);
  }
  buffer_.clear();
}

int open_access_log(const std::string& target) {
  if (target == "off") return -1;
  if (target == "-" || target.empty()) return 1;
  return ::open(target.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

}  // namespace portico::proxy
