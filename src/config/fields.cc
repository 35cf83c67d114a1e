#include "config/fields.h"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <limits>
#include <unordered_map>

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace portico::config {

void Errors::add(std::string path, std::string reason) {
  ++total_;
  if (list_.size() < limit_) list_.push_back(FieldError{std::move(path), std::move(reason)});
}

namespace detail {

namespace {

bool is_plain_key(std::string_view key) {
  if (key.empty()) return false;
  for (char c : key) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-')) return false;
  }
  return true;
}

std::string format_double(double d) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, d);
  return ec == std::errc() ? std::string(buf, end) : std::string("?");
}

std::string range_text(int64_t min, int64_t max) {
  if (max == std::numeric_limits<int64_t>::max()) return "an integer >= " + std::to_string(min);
  return "an integer from " + std::to_string(min) + " to " + std::to_string(max);
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diag + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diag = up;
    }
  }
  return row[b.size()];
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
}

}  // namespace

void append_key(std::string& out, std::string_view key) {
  if (is_plain_key(key)) {
    if (!out.empty()) out += '.';
    out.append(key);
    return;
  }
  out += "[\"";
  for (char c : key) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  out += "\"]";
}

void append_index(std::string& out, size_t index) {
  out += '[';
  out += std::to_string(index);
  out += ']';
}

void Path::append_to(std::string& out) const {
  if (parent_ != nullptr) parent_->append_to(out);
  switch (kind_) {
    case Kind::root:
      out.append(text_);
      break;
    case Kind::key:
      append_key(out, text_);
      break;
    case Kind::index:
      append_index(out, index_);
      break;
  }
}

std::string Path::str() const {
  std::string out;
  append_to(out);
  return out;
}

std::string describe_value(const json& v) {
  switch (v.type()) {
    case json::value_t::null:
      return "null";
    case json::value_t::boolean:
      return v.get<bool>() ? "a boolean (true)" : "a boolean (false)";
    case json::value_t::number_integer:
      return "an integer (" + std::to_string(v.get<int64_t>()) + ")";
    case json::value_t::number_unsigned:
      return "an integer (" + std::to_string(v.get<uint64_t>()) + ")";
    case json::value_t::number_float:
      return "a number (" + format_double(v.get<double>()) + ")";
    case json::value_t::string: {
      const std::string& s = v.get_ref<const std::string&>();
      if (s.size() > 40) return "a string (\"" + s.substr(0, 40) + "...\")";
      return "a string (\"" + s + "\")";
    }
    case json::value_t::array:
      return "a list";
    case json::value_t::object:
      return "a mapping";
    default:
      return "an unsupported value";
  }
}

void fail_type(Errors& errors, const Path& path, std::string_view expected, const json& value) {
  std::string reason = "must be ";
  reason.append(expected);
  reason += ", got ";
  reason += describe_value(value);
  errors.add(path.str(), std::move(reason));
}

bool read_string(const json& v, const Path& p, Errors& e, std::string& out, bool allow_empty) {
  if (!v.is_string()) {
    fail_type(e, p, "a string", v);
    return false;
  }
  const std::string& s = v.get_ref<const std::string&>();
  if (s.empty() && !allow_empty) {
    fail(e, p, "must not be empty");
    return false;
  }
  out = s;
  return true;
}

bool read_bool(const json& v, const Path& p, Errors& e, bool& out) {
  if (!v.is_boolean()) {
    fail_type(e, p, "a boolean (true or false)", v);
    return false;
  }
  out = v.get<bool>();
  return true;
}

bool read_int(const json& v, const Path& p, Errors& e, int64_t min, int64_t max, int64_t& out) {
  int64_t value = 0;
  bool in_int64 = true;
  if (v.is_number_unsigned()) {
    uint64_t u = v.get<uint64_t>();
    in_int64 = u <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max());
    value = in_int64 ? static_cast<int64_t>(u) : 0;
  } else if (v.is_number_integer()) {
    value = v.get<int64_t>();
  } else if (v.is_number_float()) {
    double d = v.get<double>();
    if (!std::isfinite(d) || std::trunc(d) != d) {
      fail_type(e, p, range_text(min, max), v);
      return false;
    }
    in_int64 = d >= -9.2e18 && d <= 9.2e18;
    value = in_int64 ? static_cast<int64_t>(d) : 0;
  } else {
    fail_type(e, p, range_text(min, max), v);
    return false;
  }
  if (!in_int64 || value < min || value > max) {
    fail_type(e, p, range_text(min, max), v);
    return false;
  }
  out = value;
  return true;
}

bool read_int(const json& v, const Path& p, Errors& e, int min, int max, int& out) {
  int64_t value = 0;
  if (!read_int(v, p, e, int64_t{min}, int64_t{max}, value)) return false;
  out = static_cast<int>(value);
  return true;
}

bool read_seconds(const json& v, const Path& p, Errors& e, double min, bool exclusive, double& out) {
  std::string expected = std::string("a number ") + (exclusive ? "> " : ">= ") + format_double(min) +
                         " and <= " + format_double(kMaxSeconds) + " (seconds: at most 365 days)";
  if (!v.is_number()) {
    fail_type(e, p, expected, v);
    return false;
  }
  double d = v.get<double>();
  if (!std::isfinite(d) || d < min || (exclusive && d == min) || d > kMaxSeconds) {
    fail_type(e, p, expected, v);
    return false;
  }
  out = d;
  return true;
}

bool read_port(const json& v, const Path& p, Errors& e, int& out) {
  if (v.is_number_float()) {
    fail_type(e, p, "an integer from 1 to 65535 (written without a fraction)", v);
    return false;
  }
  return read_int(v, p, e, 1, 65535, out);
}

std::string peek_id(const json& v) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    return valid_id_text(s) ? s : std::string();
  }
  if (v.is_number_unsigned())
    return v.get<uint64_t>() >= 1 ? std::to_string(v.get<uint64_t>()) : std::string();
  if (v.is_number_integer()) {
    int64_t i = v.get<int64_t>();
    return i >= 1 ? std::to_string(i) : std::string();
  }
  return {};
}

bool read_id(const json& v, const Path& p, Errors& e, std::string& out) {
  std::string id = peek_id(v);
  if (id.empty()) {
    fail_type(e, p,
              "an id: a string of letters, digits, '_', '-' or '.' (1 to 64 characters, not \".\" or "
              "\"..\") or an integer >= 1",
              v);
    return false;
  }
  out = std::move(id);
  return true;
}

bool read_name(const json& v, const Path& p, Errors& e, std::string& out) {
  if (!read_string(v, p, e, out)) return false;
  if (out.size() > 256) {
    fail(e, p, "must be at most 256 characters long");
    return false;
  }
  return true;
}

bool read_desc(const json& v, const Path& p, Errors& e, std::string* out) {
  if (!v.is_string()) {
    fail_type(e, p, "a string", v);
    return false;
  }
  const std::string& s = v.get_ref<const std::string&>();
  if (s.size() > 256) {
    fail(e, p, "must be at most 256 characters long");
    return false;
  }
  if (out != nullptr) *out = s;
  return true;
}

bool read_labels(const json& v, const Path& p, Errors& e, Labels* out) {
  if (!v.is_object()) {
    fail_type(e, p, "a mapping of label names to string values", v);
    return false;
  }
  const size_t before = e.total();
  for (auto it = v.begin(); it != v.end(); ++it) {
    const json& value = it.value();
    const Path lp = p.key(it.key());
    if (!value.is_string()) {
      fail_type(e, lp, "a string", value);
      continue;
    }
    const std::string& s = value.get_ref<const std::string&>();
    if (s.empty() || s.size() > 256) {
      fail(e, lp, "must be 1 to 256 characters long");
    } else if (std::any_of(s.begin(), s.end(),
                           [](char c) { return std::isspace(static_cast<unsigned char>(c)); })) {
      fail(e, lp, "must not contain whitespace");
    } else if (out != nullptr) {
      out->emplace_back(it.key(), s);  // nlohmann keeps object keys sorted
    }
  }
  return e.total() == before;
}

bool check_meta_field(std::string_view key, const json& v, const Path& p, Errors& e) {
  if (key == "desc") {
    read_desc(v, p, e, nullptr);
    return true;
  }
  if (key == "labels") {
    read_labels(v, p, e, nullptr);
    return true;
  }
  if (key == "create_time" || key == "update_time") {
    int64_t ignored = 0;
    read_int(v, p, e, int64_t{0}, std::numeric_limits<int64_t>::max(), ignored);
    return true;
  }
  return false;
}

void fail_unknown(Errors& e, const Path& p, std::string_view key, std::span<const std::string_view> known) {
  std::string reason = "unknown field '";
  reason.append(key);
  reason += '\'';
  std::string_view best;
  size_t best_distance = 3;  // suggest only close matches (distance <= 2)
  for (std::string_view k : known) {
    size_t d = edit_distance(key, k);
    if (d < best_distance) {
      best_distance = d;
      best = k;
    }
  }
  if (!best.empty()) {
    reason += " (did you mean '";
    reason.append(best);
    reason += "'?)";
  }
  e.add(p.key(key).str(), std::move(reason));
}

namespace {

template <typename T>
long find_duplicate_impl(const std::vector<T>& items, size_t& first) {
  if (items.size() <= 16) {
    for (size_t i = 1; i < items.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        if (items[i] == items[j]) {
          first = j;
          return static_cast<long>(i);
        }
      }
    }
    return -1;
  }
  std::unordered_map<T, size_t> seen;
  seen.reserve(items.size());
  for (size_t i = 0; i < items.size(); ++i) {
    auto [it, inserted] = seen.emplace(items[i], i);
    if (!inserted) {
      first = it->second;
      return static_cast<long>(i);
    }
  }
  return -1;
}

}  // namespace

long find_duplicate(const std::vector<std::string>& items, size_t& first) {
  return find_duplicate_impl(items, first);
}
long find_duplicate(const std::vector<int>& items, size_t& first) {
  return find_duplicate_impl(items, first);
}

bool is_ip_literal(std::string_view text) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (text.empty() || text.size() >= sizeof buf) return false;
  text.copy(buf, text.size());
  buf[text.size()] = '\0';
  unsigned char addr[16];
  if (text.find(':') != std::string_view::npos) return inet_pton(AF_INET6, buf, addr) == 1;
  return inet_pton(AF_INET, buf, addr) == 1;
}

std::string check_hostname(std::string_view text) {
  if (text.empty()) return "must not be empty";
  if (is_ip_literal(text)) return {};
  if (text.find(':') != std::string_view::npos) {
    return "must be a host name or an IP address, without a port (IPv6 addresses go without brackets here)";
  }
  if (text.size() > 253) return "must be at most 253 characters long";
  if (text.back() == '.') return "must not end with '.'";
  bool numeric = true;
  size_t start = 0;
  while (start <= text.size()) {
    size_t dot = text.find('.', start);
    if (dot == std::string_view::npos) dot = text.size();
    std::string_view label = text.substr(start, dot - start);
    if (label.empty()) return "must not contain an empty label ('..' or a leading '.')";
    if (label.size() > 63) return "each dot-separated label must be at most 63 characters long";
    for (char c : label) {
      if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '_')) {
        return std::string("must be a host name (letters, digits, '-', '_' and '.'), found '") + c + "'";
      }
    }
    if (label.front() == '-' || label.back() == '-') return "a label must not start or end with '-'";
    if (!all_digits(label)) numeric = false;
    start = dot + 1;
  }
  if (numeric) return "is not a valid IPv4 address";
  return {};
}

std::string check_host_pattern(std::string& text) {
  for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (text.empty()) return "must not be empty";
  if (text.front() == '[') {
    if (text.back() != ']' || !is_ip_literal(std::string_view(text).substr(1, text.size() - 2)) ||
        text.find(':') == std::string::npos) {
      return "must be an IPv6 address in brackets, e.g. \"[::1]\"";
    }
    return {};
  }
  if (text.find(':') != std::string::npos) {
    if (is_ip_literal(text)) return "write IPv6 addresses in brackets, e.g. \"[" + text + "]\"";
    return "must not contain a port (hosts are matched without the port)";
  }
  std::string_view name = text;
  if (name.size() > 2 && name[0] == '*' && name[1] == '.') {
    name.remove_prefix(2);
    if (name.find('*') == std::string_view::npos && is_ip_literal(name)) {
      return "a wildcard \"*.suffix\" needs a domain name suffix, not an IP address";
    }
  }
  if (name.find('*') != std::string_view::npos) {
    return "'*' is only allowed as the leading label of a wildcard host, as in \"*.example.com\"";
  }
  return check_hostname(name);
}

std::string check_cidr(std::string_view text) {
  std::string_view addr = text;
  std::string_view prefix;
  bool has_prefix = false;
  if (size_t slash = text.find('/'); slash != std::string_view::npos) {
    addr = text.substr(0, slash);
    prefix = text.substr(slash + 1);
    has_prefix = true;
  }
  const bool v6 = addr.find(':') != std::string_view::npos;
  if (!is_ip_literal(addr)) {
    return "must be an IPv4 or IPv6 address or CIDR block, e.g. \"10.0.0.0/8\" or \"fd00::/8\"";
  }
  if (has_prefix) {
    const int max = v6 ? 128 : 32;
    int len = -1;
    if (all_digits(prefix) && prefix.size() <= 3) {
      std::from_chars(prefix.data(), prefix.data() + prefix.size(), len);
    }
    if (len < 0 || len > max) return "the prefix length must be from 0 to " + std::to_string(max);
  }
  return {};
}

std::string check_uri_pattern(std::string_view text) {
  if (text.empty() || text.front() != '/') return "must start with '/'";
  if (text.size() > 4096) return "must be at most 4096 characters long";
  for (unsigned char c : text) {
    if (c <= 0x20 || c == 0x7f) return "must not contain spaces or control characters";
    if (c == '?' || c == '#') return "must be a path only, without a query ('?') or fragment ('#')";
  }
  std::vector<std::string_view> params;
  size_t start = 1;
  while (start <= text.size()) {
    size_t slash = text.find('/', start);
    const bool last = slash == std::string_view::npos;
    if (last) slash = text.size();
    std::string_view seg = text.substr(start, slash - start);
    if (seg == "*") {
      if (!last) return "'*' is only allowed as the last segment, as in \"/prefix/*\"";
    } else if (seg.find('*') != std::string_view::npos) {
      return "'*' must be a whole segment and the last one, as in \"/prefix/*\"";
    } else if (seg == "." || seg == "..") {
      return "must not contain '.' or '..' segments (requests are matched on the normalized path)";
    } else if (!seg.empty() && seg.front() == ':') {
      std::string_view name = seg.substr(1);
      bool ok = !name.empty() && !std::isdigit(static_cast<unsigned char>(name.front()));
      for (char c : name) ok = ok && (std::isalnum(static_cast<unsigned char>(c)) || c == '_');
      if (!ok) {
        return "a parameter must be a whole segment \":name\" with a name of letters, digits and '_' (got "
               "\"" +
               std::string(seg) + "\")";
      }
      if (std::find(params.begin(), params.end(), name) != params.end()) {
        return "parameter \":" + std::string(name) + "\" appears twice";
      }
      params.push_back(name);
    } else if (seg.find(':') != std::string_view::npos) {
      return "':' may only start a parameter segment, as in \"/users/:id\" (got \"" + std::string(seg) +
             "\")";
    }
    if (last) break;
    start = slash + 1;
  }
  return {};
}

std::string check_regex(const std::string& pattern, bool caseless) {
  int error_code = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   caseless ? PCRE2_CASELESS : 0, &error_code, &offset, nullptr);
  if (code != nullptr) {
    pcre2_code_free(code);
    return {};
  }
  PCRE2_UCHAR message[256];
  int n = pcre2_get_error_message(error_code, message, sizeof message);
  std::string text = n > 0 ? std::string(reinterpret_cast<const char*>(message), static_cast<size_t>(n))
                           : std::string("unknown error");
  return "invalid regular expression at offset " + std::to_string(offset) + ": " + text;
}

}  // namespace detail

bool valid_id_text(std::string_view s) {
  // "." and ".." are refused (APISIX accepts them): ids are path segments of etcd keys and Admin API URLs.
  if (s.empty() || s.size() > 64 || s == "." || s == "..") return false;
  for (char c : s) {
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-' || c == '.')) return false;
  }
  return true;
}

}  // namespace portico::config
