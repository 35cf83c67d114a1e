#include "http2/grpc.h"

#include <algorithm>

namespace portico::http2::grpc {

std::optional<double> parse_timeout(std::string_view value) {
  if (value.size() < 2 || value.size() > 9) return std::nullopt;
  const char unit = value.back();
  std::string_view digits = value.substr(0, value.size() - 1);
  double n = 0;
  for (char c : digits) {
    if (c < '0' || c > '9') return std::nullopt;
    n = n * 10 + (c - '0');
  }
  switch (unit) {
    case 'H':
      return n * 3600;
    case 'M':
      return n * 60;
    case 'S':
      return n;
    case 'm':
      return n / 1e3;
    case 'u':
      return n / 1e6;
    case 'n':
      return n / 1e9;
    default:
      return std::nullopt;
  }
}

std::string encode_timeout(std::chrono::nanoseconds left) {
  struct Unit {
    int64_t nanos;
    char symbol;
  };
  static constexpr Unit kUnits[] = {{1, 'n'},          {1000, 'u'},          {1000000, 'm'},
                                    {1000000000, 'S'}, {60000000000LL, 'M'}, {3600000000000LL, 'H'}};
  constexpr int64_t kMaxCount = 99999999;
  const int64_t n = std::max<int64_t>(left.count(), 1);
  for (const Unit& u : kUnits) {
    const int64_t count = n / u.nanos;  // truncated, as Envoy and grpc-go do
    if (count <= kMaxCount) return std::to_string(count) + u.symbol;
  }
  return "99999999H";
}

double effective_timeout(std::string_view grpc_timeout, double route_seconds) {
  std::optional<double> t = parse_timeout(grpc_timeout);
  if (!t) return route_seconds;
  return std::min(*t, route_seconds);
}

int status_for_http(int http_status) {
  switch (http_status) {
    case 200:
      return kUnknown;  // a 200 that is not gRPC (or ended without grpc-status)
    case 400:
      return kInternal;
    case 401:
      return kUnauthenticated;
    case 403:
      return kPermissionDenied;
    case 404:
      return kUnimplemented;
    case 429:
    case 502:
    case 503:
    case 504:
      return kUnavailable;
    default:
      return kUnknown;
  }
}

std::string percent_encode(std::string_view message) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(message.size());
  for (unsigned char c : message) {
    if (c < 0x20 || c > 0x7e || c == '%') {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

namespace {
int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}
}  // namespace

std::string percent_decode(std::string_view encoded) {
  std::string out;
  out.reserve(encoded.size());
  for (size_t i = 0; i < encoded.size(); ++i) {
    if (encoded[i] == '%' && i + 2 < encoded.size() && hex(encoded[i + 1]) >= 0 && hex(encoded[i + 2]) >= 0) {
      out += static_cast<char>(hex(encoded[i + 1]) * 16 + hex(encoded[i + 2]));
      i += 2;
    } else {
      out += encoded[i];
    }
  }
  return out;
}

std::string message_of_body(std::string_view body) {
  for (std::string_view key : {std::string_view("\"message\""), std::string_view("\"error_msg\"")}) {
    size_t at = body.find(key);
    if (at == std::string_view::npos) continue;
    size_t i = at + key.size();
    while (i < body.size() && (body[i] == ' ' || body[i] == ':')) ++i;
    if (i >= body.size() || body[i] != '"') continue;
    std::string out;
    for (++i; i < body.size() && body[i] != '"' && out.size() < 512; ++i) {
      if (body[i] == '\\' && i + 1 < body.size()) ++i;  // \" and \\ as themselves; good enough for a message
      out += body[i];
    }
    return out;
  }
  size_t b = body.find_first_not_of(" \t\r\n");
  if (b == std::string_view::npos) return {};
  size_t e = body.find_last_not_of(" \t\r\n");
  return std::string(body.substr(b, std::min<size_t>(e - b + 1, 512)));
}

Fields trailers_only(int grpc_status, std::string_view message) {
  Fields f{
      {":status", "200"}, {"content-type", "application/grpc"}, {"grpc-status", std::to_string(grpc_status)}};
  if (!message.empty()) f.push_back({"grpc-message", percent_encode(message)});
  return f;
}

bool is_grpc_content_type(std::string_view ct) {
  constexpr std::string_view kPrefix = "application/grpc";
  if (ct.size() < kPrefix.size()) return false;
  for (size_t i = 0; i < kPrefix.size(); ++i) {
    char c = ct[i];
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    if (c != kPrefix[i]) return false;
  }
  if (ct.size() == kPrefix.size()) return true;
  const char next = ct[kPrefix.size()];
  return next == '+' || next == ';';
}

}  // namespace portico::http2::grpc
