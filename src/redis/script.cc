// Script, Options and Result helpers.
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>

#include <cstdio>

#include "redis/client.h"

namespace portico::redis {

namespace {

std::string hex(const unsigned char* data, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = digits[data[i] >> 4];
    out[2 * i + 1] = digits[data[i] & 15];
  }
  return out;
}

// A per-process salt: keys never carry a password's plain hash (which a dictionary could reverse).
const std::string& salt() {
  static const std::string s = [] {
    unsigned char b[16];
    if (RAND_bytes(b, sizeof b) != 1) return std::string("portico-redis");
    return hex(b, sizeof b);
  }();
  return s;
}

}  // namespace

Script::Script(std::string source) : source_(std::move(source)) {
  unsigned char md[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(source_.data()), source_.size(), md);
  sha_ = hex(md, sizeof md);
}

std::string Options::key() const {
  std::string k = cluster ? "cluster:" : "redis:";
  k += describe();
  k += "|db=" + std::to_string(database);
  k += "|user=" + username;
  if (!password.empty()) {
    std::string salted = salt() + password;
    unsigned char md[SHA256_DIGEST_LENGTH];
    SHA256(reinterpret_cast<const unsigned char*>(salted.data()), salted.size(), md);
    k += "|pass=" + hex(md, 8);
  }
  char timeout[32];
  std::snprintf(timeout, sizeof timeout, "%.6g", timeout_seconds);
  k += "|timeout=";
  k += timeout;
  if (tls) {
    k += tls_verify ? "|tls=verify" : "|tls=noverify";
    k += "|sni=" + server_name;
  }
  return k;
}

std::string Options::describe() const {
  std::string out;
  for (const auto& [host, port] : nodes) {
    if (!out.empty()) out += ',';
    if (host.find(':') != std::string::npos) {
      out += '[' + host + ']';
    } else {
      out += host;
    }
    out += ':' + std::to_string(port);
  }
  return out;
}

const char* result_name(Result result) {
  switch (result) {
    case Result::ok:
      return "ok";
    case Result::error:
      return "error";
    case Result::timeout:
      return "timeout";
    case Result::unavailable:
      return "unavailable";
    case Result::shutdown:
      return "shutdown";
  }
  return "?";
}

}  // namespace portico::redis
