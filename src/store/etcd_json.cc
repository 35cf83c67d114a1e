#include "store/etcd_json.h"

#include <array>
#include <charconv>

namespace portico::store::detail {
namespace {

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

constexpr std::array<int8_t, 256> make_decode_table() {
  std::array<int8_t, 256> table{};
  for (auto& v : table) v = -1;
  for (int i = 0; i < 64; ++i) table[static_cast<unsigned char>(kAlphabet[i])] = static_cast<int8_t>(i);
  return table;
}
constexpr std::array<int8_t, 256> kDecode = make_decode_table();

template <typename T>
T get_integer(const Json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end()) return 0;
  if (it->is_number_integer()) return it->get<T>();
  if (it->is_string()) {
    const std::string& s = it->get_ref<const std::string&>();
    T v = 0;
    std::from_chars(s.data(), s.data() + s.size(), v);
    return v;
  }
  return 0;
}

}  // namespace

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    uint32_t n = static_cast<uint8_t>(in[i]) << 16 | static_cast<uint8_t>(in[i + 1]) << 8 |
                 static_cast<uint8_t>(in[i + 2]);
    out.push_back(kAlphabet[n >> 18]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(kAlphabet[(n >> 6) & 63]);
    out.push_back(kAlphabet[n & 63]);
  }
  size_t rest = in.size() - i;
  if (rest > 0) {
    uint32_t n = static_cast<uint8_t>(in[i]) << 16;
    if (rest == 2) n |= static_cast<uint8_t>(in[i + 1]) << 8;
    out.push_back(kAlphabet[n >> 18]);
    out.push_back(kAlphabet[(n >> 12) & 63]);
    out.push_back(rest == 2 ? kAlphabet[(n >> 6) & 63] : '=');
    out.push_back('=');
  }
  return out;
}

bool base64_decode(std::string_view in, std::string& out) {
  out.clear();
  // Go's encoder always pads; tolerate unpadded input anyway, it costs nothing.
  while (!in.empty() && in.back() == '=') in.remove_suffix(1);
  if (in.size() % 4 == 1) return false;
  out.reserve(in.size() * 3 / 4);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : in) {
    int8_t v = kDecode[static_cast<unsigned char>(c)];
    if (v < 0) return false;
    acc = acc << 6 | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<char>((acc >> bits) & 0xff));
    }
  }
  return true;
}

int64_t get_i64(const Json& obj, const char* name) {
  return get_integer<int64_t>(obj, name);
}

uint64_t get_u64(const Json& obj, const char* name) {
  return get_integer<uint64_t>(obj, name);
}

bool get_bool(const Json& obj, const char* name) {
  auto it = obj.find(name);
  return it != obj.end() && it->is_boolean() && it->get<bool>();
}

std::string get_string(const Json& obj, const char* name) {
  auto it = obj.find(name);
  if (it == obj.end() || !it->is_string()) return {};
  return it->get<std::string>();
}

bool get_bytes(const Json& obj, const char* name, std::string& out) {
  out.clear();
  auto it = obj.find(name);
  if (it == obj.end()) return true;
  if (!it->is_string()) return false;
  return base64_decode(it->get_ref<const std::string&>(), out);
}

ResponseHeader parse_header(const Json& obj) {
  ResponseHeader h;
  auto it = obj.find("header");
  if (it == obj.end() || !it->is_object()) return h;
  h.cluster_id = get_u64(*it, "cluster_id");
  h.member_id = get_u64(*it, "member_id");
  h.revision = get_i64(*it, "revision");
  return h;
}

bool parse_kv(const Json& obj, KeyValue& out) {
  if (!obj.is_object()) return false;
  if (!get_bytes(obj, "key", out.key) || !get_bytes(obj, "value", out.value)) return false;
  out.create_revision = get_i64(obj, "create_revision");
  out.mod_revision = get_i64(obj, "mod_revision");
  out.version = get_i64(obj, "version");
  out.lease = get_i64(obj, "lease");
  return true;
}

bool parse_kvs(const Json& array, std::vector<KeyValue>& out) {
  out.clear();
  if (!array.is_array()) return array.is_null();
  out.resize(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    if (!parse_kv(array[i], out[i])) return false;
  }
  return true;
}

}  // namespace portico::store::detail
