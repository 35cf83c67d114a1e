#include "redis/resp.h"

#include <charconv>

namespace portico::redis {

namespace {

void append_prefixed(std::string& out, char prefix, size_t n) {
  char buf[24];
  buf[0] = prefix;
  auto [end, ec] = std::to_chars(buf + 1, buf + sizeof buf - 2, n);
  (void)ec;
  end[0] = '\r';
  end[1] = '\n';
  out.append(buf, static_cast<size_t>(end + 2 - buf));
}

}  // namespace

void append_array_header(std::string& out, size_t count) {
  append_prefixed(out, '*', count);
}

void append_bulk(std::string& out, std::string_view arg) {
  append_prefixed(out, '$', arg.size());
  out.append(arg);
  out.append("\r\n", 2);
}

void append_command(std::string& out, std::span<const std::string_view> argv) {
  append_array_header(out, argv.size());
  for (std::string_view a : argv) append_bulk(out, a);
}

uint16_t crc16(std::string_view data) {
  uint16_t crc = 0;
  for (unsigned char c : data) {
    crc ^= static_cast<uint16_t>(c) << 8;
    for (int i = 0; i < 8; ++i) crc = (crc & 0x8000) ? static_cast<uint16_t>((crc << 1) ^ 0x1021) : crc << 1;
  }
  return crc;
}

int key_slot(std::string_view key) {
  // Only the part between the first '{' and the next '}' is hashed, if it is not empty.
  size_t open = key.find('{');
  if (open != std::string_view::npos) {
    size_t close = key.find('}', open + 1);
    if (close != std::string_view::npos && close != open + 1) key = key.substr(open + 1, close - open - 1);
  }
  return crc16(key) & 16383;
}

}  // namespace portico::redis
