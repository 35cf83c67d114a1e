// Value helpers for schema validation (schema_node.h): type tests, the reasons' formatting (Lua's number
// and string quoting, as APISIX prints them), formats, and the duplicate search behind uniqueItems.
#include <arpa/inet.h>

#include <cctype>
#include <cmath>
#include <cstdio>
#include <functional>
#include <unordered_map>

#include "config/schema_node.h"

namespace portico::config::detail::schema {

namespace {

bool finite_number(const json& v) {
  return v.is_number_integer() || (v.is_number_float() && std::isfinite(v.get<double>()));
}

// A hash consistent with json's operator== (1 == 1.0, object key order irrelevant), for uniqueItems.
size_t value_hash(const json& v) {
  size_t h = static_cast<size_t>(v.type() == json::value_t::number_unsigned ||
                                         v.type() == json::value_t::number_float
                                     ? json::value_t::number_integer
                                     : v.type());
  const auto mix = [&h](size_t x) { h ^= x + 0x9e3779b97f4a7c15ULL + (h << 6) + (h >> 2); };
  if (v.is_number()) {
    const double d = v.get<double>();
    mix(std::hash<double>()(d == 0 ? 0.0 : d));
  } else if (v.is_string()) {
    mix(std::hash<std::string>()(v.get_ref<const std::string&>()));
  } else if (v.is_boolean()) {
    mix(v.get<bool>());
  } else if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      mix(std::hash<std::string>()(it.key()));
      mix(value_hash(it.value()));
    }
  } else if (v.is_array()) {
    for (const json& item : v) mix(value_hash(item));
  }
  return h;
}

}  // namespace

// Numbers in reasons are written as Lua's tostring writes them ("%.14g"), as APISIX's messages show them.
std::string lua_number(double d) {
  char buf[40];
  std::snprintf(buf, sizeof buf, "%.14g", d);
  return buf;
}

// Lua's %q, which APISIX's messages use for property names, patterns and values.
std::string lua_quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += static_cast<char>(c);
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '\r') {
      out += "\\r";
    } else if (c < 0x20 || c == 0x7f) {
      out += '\\' + std::to_string(c);
    } else {
      out += static_cast<char>(c);
    }
  }
  return out + '"';
}

bool integral(const json& v) {
  if (v.is_number_integer()) return true;
  if (!v.is_number_float()) return false;
  const double d = v.get<double>();
  return std::isfinite(d) && std::trunc(d) == d;
}

// "got ..." in "wrong type" reasons. APISIX prints Lua's type names ("table" for objects and arrays,
// "userdata" for null); JSON's names say more and are what a configuration author wrote.
std::string kind_name(const json& v) {
  switch (v.type()) {
    case json::value_t::string:
      return "string";
    case json::value_t::boolean:
      return "boolean";
    case json::value_t::object:
      return "object";
    case json::value_t::array:
      return "array";
    case json::value_t::null:
      return "null";
    default:
      return finite_number(v) ? "number" : lua_number(v.get<double>());
  }
}

bool type_matches(uint8_t types, const json& v) {
  switch (v.type()) {
    case json::value_t::string:
      return types & kString;
    case json::value_t::boolean:
      return types & kBoolean;
    case json::value_t::object:
      return types & kObject;
    case json::value_t::array:
      return types & kArray;
    case json::value_t::null:
      return types & kNull;
    default:
      if (!finite_number(v)) return false;
      return (types & kNumber) || ((types & kInteger) && integral(v));
  }
}

size_t code_points(const std::string& s) {
  size_t n = 0;
  for (unsigned char c : s) n += (c & 0xC0) != 0x80;
  return n;
}

bool valid_format(Format format, const std::string& s) {
  const auto all_of = [](std::string_view text, auto&& pred) {
    for (unsigned char c : text) {
      if (!pred(c)) return false;
    }
    return true;
  };
  const auto host_char = [](unsigned char c) { return std::isalnum(c) || c == '-' || c == '.'; };
  unsigned char addr[16];
  switch (format) {
    case Format::ipv4:
      return s.find('\0') == std::string::npos && inet_pton(AF_INET, s.c_str(), addr) == 1;
    case Format::ipv6:
      return s.find('\0') == std::string::npos && inet_pton(AF_INET6, s.c_str(), addr) == 1;
    case Format::hostname:
      return !s.empty() && all_of(s, host_char);
    case Format::email: {
      // APISIX's pattern: ^[A-Za-z0-9_.-]+@[A-Za-z0-9_.-]+\.[A-Za-z]{2,4}$
      const auto word = [](unsigned char c) { return std::isalnum(c) || c == '_' || c == '-' || c == '.'; };
      const size_t at = s.find('@');
      const size_t dot = s.rfind('.');
      if (at == std::string::npos || at == 0 || dot == std::string::npos || dot < at + 2) return false;
      const std::string_view view(s);
      const std::string_view tld = view.substr(dot + 1);
      return all_of(view.substr(0, at), word) && all_of(view.substr(at + 1, dot - at - 1), word) &&
             tld.size() >= 2 && tld.size() <= 4 &&
             all_of(tld, [](unsigned char c) { return std::isalpha(c); });
    }
    case Format::none:
      break;
  }
  return true;
}

const char* format_name(Format format) {
  switch (format) {
    case Format::email:
      return "email address";
    case Format::ipv4:
      return "ipv4 address";
    case Format::ipv6:
      return "ipv6 address";
    default:
      return "hostname";
  }
}

// The first item equal to an earlier one: (earlier, later), 0-based; {0, 0} when all are distinct.
std::pair<size_t, size_t> find_equal_items(const json& array) {
  std::unordered_multimap<size_t, size_t> seen;
  seen.reserve(array.size());
  for (size_t i = 0; i < array.size(); ++i) {
    const size_t h = value_hash(array[i]);
    size_t first = i;
    for (auto [it, end] = seen.equal_range(h); it != end; ++it) {
      if (array[it->second] == array[i]) first = std::min(first, it->second);
    }
    if (first != i) return {first, i};
    seen.emplace(h, i);
  }
  return {0, 0};
}

}  // namespace portico::config::detail::schema
