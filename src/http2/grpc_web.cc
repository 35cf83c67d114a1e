#include "http2/grpc_web.h"

namespace portico::http2::grpc_web {

namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// 0..63 for a base64 character, 64 for '=', 255 for anything else.
struct DecodeTable {
  uint8_t v[256];
  constexpr DecodeTable() : v() {
    for (int i = 0; i < 256; ++i) v[i] = 255;
    for (int i = 0; i < 64; ++i) v[static_cast<uint8_t>(kAlphabet[i])] = static_cast<uint8_t>(i);
    v[static_cast<uint8_t>('=')] = 64;
  }
};
constexpr DecodeTable kDecode;

bool is_token_char(char c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
  for (char t : std::string_view("!#$%&'*+-.^_`|~")) {
    if (c == t) return true;
  }
  return false;
}

}  // namespace

Encoding encoding_of(std::string_view ct) {
  if (ct == "application/grpc-web" || ct == "application/grpc-web+proto") return Encoding::binary;
  if (ct == "application/grpc-web-text" || ct == "application/grpc-web-text+proto") return Encoding::text;
  return Encoding::none;
}

bool TextDecoder::feed(std::string_view in, std::string& out) {
  if (failed_) return false;
  for (unsigned char c : in) {
    const uint8_t v = kDecode.v[c];
    // Padding only in the last two places of a quantum, and nothing but padding after it.
    if (v == 255 || (v == 64 && have_ < 2) || (v != 64 && pad_ > 0)) {
      failed_ = true;
      return false;
    }
    if (v == 64) ++pad_;
    quad_[have_++] = v == 64 ? 0 : v;
    if (have_ < 4) continue;
    const uint32_t bits = (uint32_t{quad_[0]} << 18) | (uint32_t{quad_[1]} << 12) |
                          (uint32_t{quad_[2]} << 6) | uint32_t{quad_[3]};
    out += static_cast<char>(bits >> 16);
    if (pad_ < 2) out += static_cast<char>((bits >> 8) & 0xff);
    if (pad_ < 1) out += static_cast<char>(bits & 0xff);
    have_ = 0;
    pad_ = 0;
  }
  return true;
}

void append_base64(std::string_view in, std::string& out) {
  out.reserve(out.size() + (in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const uint32_t bits = (uint32_t{static_cast<uint8_t>(in[i])} << 16) |
                          (uint32_t{static_cast<uint8_t>(in[i + 1])} << 8) |
                          uint32_t{static_cast<uint8_t>(in[i + 2])};
    out += kAlphabet[bits >> 18];
    out += kAlphabet[(bits >> 12) & 63];
    out += kAlphabet[(bits >> 6) & 63];
    out += kAlphabet[bits & 63];
  }
  const size_t rest = in.size() - i;
  if (rest == 0) return;
  uint32_t bits = uint32_t{static_cast<uint8_t>(in[i])} << 16;
  if (rest == 2) bits |= uint32_t{static_cast<uint8_t>(in[i + 1])} << 8;
  out += kAlphabet[bits >> 18];
  out += kAlphabet[(bits >> 12) & 63];
  out += rest == 2 ? kAlphabet[(bits >> 6) & 63] : '=';
  out += '=';
}

void append_trailer_frame(const Fields& trailers, std::string& out) {
  size_t len = 0;
  for (const Field& f : trailers) len += f.name.size() + 1 + f.value.size() + 2;
  out += static_cast<char>(kTrailerFlag);
  out += static_cast<char>((len >> 24) & 0xff);
  out += static_cast<char>((len >> 16) & 0xff);
  out += static_cast<char>((len >> 8) & 0xff);
  out += static_cast<char>(len & 0xff);
  for (const Field& f : trailers) {
    out += f.name;
    out += ':';
    out += f.value;
    out += "\r\n";
  }
}

FrameReader::Status FrameReader::next(Frame& frame) {
  const size_t avail = buffer_.size() - used_;
  if (avail < 5) {
    buffer_.erase(0, used_);  // keep the buffer to what is unread
    used_ = 0;
    return Status::need_more;
  }
  const auto* p = reinterpret_cast<const uint8_t*>(buffer_.data() + used_);
  const size_t len = (size_t{p[1]} << 24) | (size_t{p[2]} << 16) | (size_t{p[3]} << 8) | size_t{p[4]};
  if (len > max_frame_) return Status::error;
  if (avail - 5 < len) return Status::need_more;
  frame.flags = p[0];
  frame.payload.assign(buffer_, used_ + 5, len);
  used_ += 5 + len;
  return Status::frame;
}

bool parse_trailers(std::string_view payload, Fields& out) {
  out.clear();
  while (!payload.empty()) {
    size_t eol = payload.find("\r\n");
    std::string_view line = payload.substr(0, eol);
    payload = eol == std::string_view::npos ? std::string_view() : payload.substr(eol + 2);
    if (line.empty()) continue;
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || colon == 0) return false;
    Field f;
    for (char c : line.substr(0, colon)) {
      if (!is_token_char(c)) return false;
      f.name += (c >= 'A' && c <= 'Z') ? static_cast<char>(c - 'A' + 'a') : c;
    }
    std::string_view value = line.substr(colon + 1);
    while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.remove_prefix(1);
    while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.remove_suffix(1);
    f.value.assign(value);
    out.push_back(std::move(f));
  }
  return true;
}

}  // namespace portico::http2::grpc_web
