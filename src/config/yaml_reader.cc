// YAML front-end over yaml-cpp's event parser (no YAML::Node tree: events go straight to the TreeBuilder).
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/exceptions.h>
#include <yaml-cpp/mark.h>
#include <yaml-cpp/parser.h>

#include <charconv>
#include <cmath>
#include <istream>
#include <limits>
#include <streambuf>

#include "config/readers.h"

namespace portico::config::detail {
namespace {

using json = nlohmann::json;

// An istream over the caller's bytes, without copying them.
class MemoryBuf : public std::streambuf {
 public:
  explicit MemoryBuf(std::string_view text) {
    char* begin = const_cast<char*>(text.data());
    setg(begin, begin, begin + text.size());
  }
};

bool is_digit(char c) {
  return c >= '0' && c <= '9';
}

// [-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?
bool is_core_float(std::string_view s) {
  size_t i = 0;
  if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
  size_t int_digits = 0, frac_digits = 0;
  while (i < s.size() && is_digit(s[i])) ++i, ++int_digits;
  if (i < s.size() && s[i] == '.') {
    ++i;
    while (i < s.size() && is_digit(s[i])) ++i, ++frac_digits;
  }
  if (int_digits == 0 && frac_digits == 0) return false;
  if (i < s.size() && (s[i] == 'e' || s[i] == 'E')) {
    ++i;
    if (i < s.size() && (s[i] == '-' || s[i] == '+')) ++i;
    size_t exp_digits = 0;
    while (i < s.size() && is_digit(s[i])) ++i, ++exp_digits;
    if (exp_digits == 0) return false;
  }
  return i == s.size();
}

bool parse_int(std::string_view s, json& out) {
  bool negative = false;
  std::string_view digits = s;
  if (!digits.empty() && (digits[0] == '-' || digits[0] == '+')) {
    negative = digits[0] == '-';
    digits.remove_prefix(1);
  }
  int base = 10;
  if (!negative && s.size() > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'o')) {
    base = s[1] == 'x' ? 16 : 8;
    digits = s.substr(2);
  }
  if (digits.empty()) return false;
  uint64_t magnitude = 0;
  auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), magnitude, base);
  if (end != digits.data() + digits.size()) return false;
  if (ec == std::errc::result_out_of_range) {  // beyond 64 bits: keep it as a (range-checked later) number
    out = negative ? -std::numeric_limits<double>::max() : std::numeric_limits<double>::max();
    return true;
  }
  if (ec != std::errc()) return false;
  if (!negative) {
    if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      out = static_cast<int64_t>(magnitude);
    } else {
      out = magnitude;
    }
  } else if (magnitude <= static_cast<uint64_t>(std::numeric_limits<int64_t>::max()) + 1) {
    out = static_cast<int64_t>(0 - magnitude);
  } else {
    out = -static_cast<double>(magnitude);
  }
  return true;
}

// The YAML 1.2 core schema's resolution of a plain (unquoted) scalar.
json resolve_plain(const std::string& s) {
  if (s.empty()) return nullptr;
  const char c = s[0];
  if (!(is_digit(c) || c == '-' || c == '+' || c == '.' || c == '~' || c == 'n' || c == 'N' || c == 't' ||
        c == 'T' || c == 'f' || c == 'F')) {
    return s;  // the common case: a word, a path, a host name
  }
  if (s == "~" || s == "null" || s == "Null" || s == "NULL") return nullptr;
  if (s == "true" || s == "True" || s == "TRUE") return true;
  if (s == "false" || s == "False" || s == "FALSE") return false;
  json number;
  if (parse_int(s, number)) return number;
  if (is_core_float(s)) {
    double d = 0;
    std::string_view text = s;
    if (text[0] == '+') text.remove_prefix(1);
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), d);
    if (end == text.data() + text.size() && (ec == std::errc() || ec == std::errc::result_out_of_range)) {
      return d;
    }
  }
  std::string_view rest = s;
  if (rest[0] == '-' || rest[0] == '+') rest.remove_prefix(1);
  if (rest == ".inf" || rest == ".Inf" || rest == ".INF") {
    return s[0] == '-' ? -std::numeric_limits<double>::infinity() : std::numeric_limits<double>::infinity();
  }
  if (s == ".nan" || s == ".NaN" || s == ".NAN") return std::numeric_limits<double>::quiet_NaN();
  return s;
}

constexpr std::string_view kTagPrefix = "tag:yaml.org,2002:";

struct Stop {};  // the builder's error list is full

struct SecondDocument {
  YAML::Mark mark;
};

class Handler : public YAML::EventHandler {
 public:
  explicit Handler(TreeBuilder& builder) : b_(builder) {}

  void OnDocumentStart(const YAML::Mark&) override {}
  void OnDocumentEnd() override {}

  void OnNull(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (at_key()) {
      complex_key(mark, "a mapping key must not be empty or null");
    }
    b_.value(nullptr, anchor);
    after_value();
  }

  void OnAlias(const YAML::Mark& mark, YAML::anchor_t anchor) override {
    if (at_key()) complex_key(mark, "an alias cannot be used as a mapping key");
    b_.alias(anchor);
    after_value();
  }

  void OnScalar(const YAML::Mark&, const std::string& tag, YAML::anchor_t anchor,
                const std::string& value) override {
    if (at_key()) {
      b_.key(value, tag == "?" && value == "<<");
      states_.back() = State::map_value;
      check_stop();
      return;
    }
    b_.value(resolve(tag, value), anchor);
    after_value();
  }

  void OnSequenceStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                       YAML::EmitterStyle::value) override {
    if (at_key()) {
      complex_key(mark,
                  "a list cannot be used as a mapping key (quote keys that start with '[', as in "
                  "\"[::1]:8080\": 1)");
    }
    b_.begin_list(anchor);
    states_.push_back(State::list);
  }

  void OnSequenceEnd() override { close(); }

  void OnMapStart(const YAML::Mark& mark, const std::string&, YAML::anchor_t anchor,
                  YAML::EmitterStyle::value) override {
    if (at_key()) complex_key(mark, "a mapping cannot be used as a mapping key");
    b_.begin_map(anchor);
    states_.push_back(State::map_key);
  }

  void OnMapEnd() override { close(); }

 private:
  enum class State { list, map_key, map_value };

  bool at_key() const { return !states_.empty() && states_.back() == State::map_key; }

  [[noreturn]] void complex_key(const YAML::Mark& mark, const char* what) {
    throw YAML::ParserException(mark, what);
  }

  void close() {
    states_.pop_back();
    b_.end();
    after_value();
  }

  void after_value() {
    if (!states_.empty() && states_.back() == State::map_value) states_.back() = State::map_key;
    check_stop();
  }

  void check_stop() const {
    if (b_.stopped()) throw Stop{};
  }

  json resolve(const std::string& tag, const std::string& value) {
    if (tag == "?") return resolve_plain(value);
    if (tag == "!") return value;  // quoted or block scalar: always a string
    std::string_view t = tag;
    if (t.substr(0, kTagPrefix.size()) == kTagPrefix) {
      t.remove_prefix(kTagPrefix.size());
      if (t == "str") return value;
      json v = resolve_plain(value);
      if ((t == "int" && v.is_number_integer()) || (t == "float" && v.is_number()) ||
          (t == "bool" && v.is_boolean()) || (t == "null" && v.is_null())) {
        return t == "float" ? json(v.get<double>()) : v;
      }
      b_.fail_here("\"" + value + "\" is not a valid !!" + std::string(t));
      return nullptr;
    }
    b_.fail_here("unsupported YAML tag \"" + tag + "\"");
    return nullptr;
  }

  TreeBuilder& b_;
  std::vector<State> states_;
};

class FirstMark : public YAML::EventHandler {
 public:
  void OnDocumentStart(const YAML::Mark& mark) override { throw SecondDocument{mark}; }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark&, YAML::anchor_t) override {}
  void OnAlias(const YAML::Mark&, YAML::anchor_t) override {}
  void OnScalar(const YAML::Mark&, const std::string&, YAML::anchor_t, const std::string&) override {}
  void OnSequenceStart(const YAML::Mark&, const std::string&, YAML::anchor_t,
                       YAML::EmitterStyle::value) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark&, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
  }
  void OnMapEnd() override {}
};

std::string at(const YAML::Mark& mark) {
  return "at line " + std::to_string(mark.line + 1) + ", column " + std::to_string(mark.column + 1);
}

}  // namespace

bool read_yaml(std::string_view text, TreeBuilder& builder, Errors& errors) {
  MemoryBuf buf(text);
  std::istream in(&buf);
  try {
    YAML::Parser parser(in);
    Handler handler(builder);
    parser.HandleNextDocument(handler);
    FirstMark second;
    parser.HandleNextDocument(second);
  } catch (const Stop&) {
    return true;
  } catch (const SecondDocument& s) {
    errors.add("", "a config must be a single YAML document; another one starts " + at(s.mark));
    return false;
  } catch (const YAML::Exception& e) {
    errors.add("", "invalid YAML " + at(e.mark) + ": " + e.msg);
    return false;
  }
  return true;
}

}  // namespace portico::config::detail
