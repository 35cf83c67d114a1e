// YAML front-end over libyaml's event parser (yaml_parser_parse). No document tree is built: each event goes
// straight to the TreeBuilder.
#include <yaml.h>

#include <algorithm>
#include <charconv>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <limits>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/readers.h"

namespace portico::config::detail {
namespace {

using json = nlohmann::json;

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

// The plain scalars that are null: a plain one with no tag is null, not a string, even as a mapping key.
bool is_null_word(std::string_view s) {
  return s.empty() || s == "~" || s == "null" || s == "Null" || s == "NULL";
}

// The YAML 1.2 core schema's resolution of a plain (unquoted) scalar.
json resolve_plain(std::string_view s) {
  if (s.empty()) return nullptr;
  const char c = s[0];
  if (!(is_digit(c) || c == '-' || c == '+' || c == '.' || c == '~' || c == 'n' || c == 'N' || c == 't' ||
        c == 'T' || c == 'f' || c == 'F')) {
    return std::string(s);  // the common case: a word, a path, a host name
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
  return std::string(s);
}

constexpr std::string_view kTagPrefix = "tag:yaml.org,2002:";
// Scalars without an explicit tag: a plain one is resolved by the core schema ("?"), any other (quoted,
// literal, folded) is a string ("!"), the non-specific tags of the YAML spec.
constexpr std::string_view kPlainTag = "?";
constexpr std::string_view kStringTag = "!";

// A node nested deeper than this (the root is at level 1) ends the parse with a syntax error. The TreeBuilder
// already reports (and skips) anything beyond its own, lower, cap; this one bounds libyaml's stacks on a
// hostile file, at the level yaml-cpp stopped at.
constexpr size_t kMaxParseDepth = 499;

// Concatenation by appends: GCC 12 reports a false -Wrestrict on `"literal" + std::string` once inlined.
std::string concat(std::initializer_list<std::string_view> parts) {
  std::string out;
  for (std::string_view part : parts) out.append(part);
  return out;
}

std::string_view text_of(const yaml_char_t* s) {
  return s == nullptr ? std::string_view() : std::string_view(reinterpret_cast<const char*>(s));
}

std::string at(size_t line, size_t column) {
  return "at line " + std::to_string(line + 1) + ", column " + std::to_string(column + 1);
}

std::string at(const yaml_mark_t& mark) {
  return at(mark.line, mark.column);
}

constexpr std::string_view kByteOrderMark = "\xEF\xBB\xBF";  // skipped by libyaml, not counted in marks

bool is_line_break(std::string_view text, size_t i) {
  return text[i] == '\n' || (text[i] == '\r' && (i + 1 == text.size() || text[i + 1] != '\n'));
}

bool is_continuation_byte(char c) {
  return (static_cast<unsigned char>(c) & 0xC0) == 0x80;
}

// libyaml's reader errors (bad UTF-8, control characters) carry a byte offset, not a mark. Columns count
// characters, as libyaml's marks do.
std::string at_offset(std::string_view text, size_t offset) {
  size_t line = 0, column = 0;
  size_t i = text.substr(0, kByteOrderMark.size()) == kByteOrderMark ? kByteOrderMark.size() : 0;
  for (offset = std::min(offset, text.size()); i < offset; ++i) {
    if (is_line_break(text, i)) {
      ++line;
      column = 0;
    } else if (text[i] != '\r' && !is_continuation_byte(text[i])) {
      ++column;
    }
  }
  return at(line, column);
}

// The text from a mark on.
std::string_view from_mark(std::string_view text, const yaml_mark_t& mark) {
  size_t i = text.substr(0, kByteOrderMark.size()) == kByteOrderMark ? kByteOrderMark.size() : 0;
  for (size_t line = 0; line < mark.line && i < text.size(); ++i) {
    if (is_line_break(text, i)) ++line;
  }
  for (size_t column = 0; column < mark.column && i < text.size(); ++column) {
    ++i;
    while (i < text.size() && is_continuation_byte(text[i])) ++i;
  }
  return text.substr(std::min(i, text.size()));
}

// The reason for a failed yaml_parser_parse: "invalid YAML at line 3, column 1: did not find expected ','
// or ']' (while parsing a flow sequence that starts at line 2, column 10)". `after_document`: the first
// document had ended, so what failed to parse is whatever follows it.
std::string parse_error(std::string_view text, const yaml_parser_t& p, bool after_document) {
  if (p.error == YAML_MEMORY_ERROR || p.problem == nullptr) {
    return concat({"invalid YAML ", at(p.mark), ": out of memory"});
  }
  if (p.error == YAML_PARSER_ERROR && after_document) {
    return "a config must be a single YAML document; another one starts " + at(p.problem_mark);
  }
  if (p.error == YAML_READER_ERROR)
    return concat({"invalid YAML ", at_offset(text, p.problem_offset), ": ", p.problem});
  std::string out = concat({"invalid YAML ", at(p.problem_mark), ": ", p.problem});
  if (p.context != nullptr) {
    out += " (";
    out += p.context;
    const yaml_mark_t& c = p.context_mark;
    if (c.line != p.problem_mark.line || c.column != p.problem_mark.column) {
      out += " that starts ";
      out += at(c);
    }
    out += ")";
  }
  // In a flow collection libyaml takes a ':' for the value indicator, even where YAML 1.2 would start a
  // plain scalar with it (an IPv6 address such as ::1).
  if (p.error == YAML_PARSER_ERROR && from_mark(text, p.problem_mark).substr(0, 1) == ":") {
    out += "; inside [...] or {...}, quote a value that starts with ':', as in [\"::1\"]";
  }
  return out;
}

// The parser, deleted on every way out.
class Parser {
 public:
  explicit Parser(std::string_view text) {
    initialized_ = yaml_parser_initialize(&parser_) != 0;
    if (initialized_) {
      static const unsigned char kEmpty[1] = {0};
      const unsigned char* data = text.empty() ? kEmpty : reinterpret_cast<const unsigned char*>(text.data());
      yaml_parser_set_input_string(&parser_, data, text.size());
    }
  }
  ~Parser() {
    if (initialized_) yaml_parser_delete(&parser_);
  }
  Parser(const Parser&) = delete;
  Parser& operator=(const Parser&) = delete;

  bool initialized() const { return initialized_; }
  bool next(yaml_event_t& event) { return yaml_parser_parse(&parser_, &event) != 0; }
  const yaml_parser_t& state() const { return parser_; }

 private:
  yaml_parser_t parser_;
  bool initialized_ = false;
};

// One event, deleted when it goes out of scope (yaml_parser_parse zeroes it first, even when it fails).
class Event {
 public:
  Event() { std::memset(&event_, 0, sizeof event_); }
  ~Event() { yaml_event_delete(&event_); }
  Event(const Event&) = delete;
  Event& operator=(const Event&) = delete;

  yaml_event_t& get() { return event_; }

 private:
  yaml_event_t event_;
};

class Reader {
 public:
  Reader(TreeBuilder& builder, Errors& errors) : b_(builder), errors_(errors) {}

  bool run(std::string_view text) {
    Parser parser(text);
    if (!parser.initialized()) {
      errors_.add("", "invalid YAML at line 1, column 1: out of memory");
      return false;
    }
    for (;;) {
      Event event;
      if (!parser.next(event.get())) {
        errors_.add("", parse_error(text, parser.state(), document_ended_));
        return false;
      }
      switch (handle(event.get())) {
        case Step::more:
          break;
        case Step::done:
          return true;
        case Step::failed:
          return false;
      }
    }
  }

 private:
  enum class State { list, map_key, map_value };
  enum class Step { more, done, failed };

  Step handle(const yaml_event_t& e) {
    switch (e.type) {
      case YAML_DOCUMENT_START_EVENT:
        if (documents_++ > 0) {
          errors_.add("", "a config must be a single YAML document; another one starts " + at(e.start_mark));
          return Step::failed;
        }
        return Step::more;
      case YAML_DOCUMENT_END_EVENT:
        document_ended_ = true;
        return Step::more;
      case YAML_STREAM_END_EVENT:
        return Step::done;
      case YAML_SCALAR_EVENT:
        return scalar(e);
      case YAML_ALIAS_EVENT:
        return alias(e);
      case YAML_SEQUENCE_START_EVENT:
        if (at_key()) {
          return syntax_error(e.start_mark,
                              "a list cannot be used as a mapping key (quote keys that start with '[', as in "
                              "\"[::1]:8080\": 1)");
        }
        return open(e, e.data.sequence_start.anchor, State::list);
      case YAML_MAPPING_START_EVENT:
        if (at_key()) return syntax_error(e.start_mark, "a mapping cannot be used as a mapping key");
        return open(e, e.data.mapping_start.anchor, State::map_key);
      case YAML_SEQUENCE_END_EVENT:
      case YAML_MAPPING_END_EVENT:
        states_.pop_back();
        b_.end();
        return after_value();
      default:  // stream start; tags on containers are ignored
        return Step::more;
    }
  }

  Step scalar(const yaml_event_t& e) {
    if (too_deep()) return deep(e);
    const auto& s = e.data.scalar;
    const std::string_view value(reinterpret_cast<const char*>(s.value), s.length);
    const bool plain = s.style == YAML_PLAIN_SCALAR_STYLE;
    const std::string_view tag = s.tag != nullptr ? text_of(s.tag) : plain ? kPlainTag : kStringTag;
    const uint64_t anchor = define(s.anchor);
    const bool null = plain && tag == kPlainTag && is_null_word(value);
    if (at_key()) {
      if (null) return syntax_error(e.start_mark, "a mapping key must not be empty or null");
      b_.key(std::string(value), tag == kPlainTag && value == "<<");
      states_.back() = State::map_value;
      return b_.stopped() ? Step::done : Step::more;
    }
    if (null) {
      b_.value(nullptr, anchor);
    } else {
      b_.value(resolve(tag, value), anchor);
    }
    return after_value();
  }

  Step alias(const yaml_event_t& e) {
    if (too_deep()) return deep(e);
    const std::string_view name = text_of(e.data.alias.anchor);
    auto it = anchors_.find(std::string(name));
    if (it == anchors_.end()) {
      return syntax_error(e.start_mark, concat({"the referenced anchor \"", name, "\" is not defined"}));
    }
    if (at_key()) return syntax_error(e.start_mark, "an alias cannot be used as a mapping key");
    b_.alias(it->second);
    return after_value();
  }

  Step open(const yaml_event_t& e, const yaml_char_t* anchor_name, State state) {
    if (too_deep()) return deep(e);
    const uint64_t anchor = define(anchor_name);
    if (state == State::list) {
      b_.begin_list(anchor);
    } else {
      b_.begin_map(anchor);
    }
    states_.push_back(state);
    return Step::more;
  }

  // A new anchor, or a redefinition: later aliases refer to the latest node of that name.
  uint64_t define(const yaml_char_t* anchor) {
    if (anchor == nullptr) return 0;
    const uint64_t id = ++last_anchor_;
    anchors_[std::string(text_of(anchor))] = id;
    return id;
  }

  bool too_deep() const { return states_.size() + 1 > kMaxParseDepth; }
  Step deep(const yaml_event_t& e) {
    return syntax_error(e.start_mark, "nested deeper than " + std::to_string(kMaxParseDepth) + " levels");
  }

  bool at_key() const { return !states_.empty() && states_.back() == State::map_key; }

  Step after_value() {
    if (!states_.empty() && states_.back() == State::map_value) states_.back() = State::map_key;
    return b_.stopped() ? Step::done : Step::more;
  }

  Step syntax_error(const yaml_mark_t& mark, std::string_view what) {
    errors_.add("", concat({"invalid YAML ", at(mark), ": ", what}));
    return Step::failed;
  }

  json resolve(std::string_view tag, std::string_view value) {
    if (tag == kPlainTag) return resolve_plain(value);
    if (tag == kStringTag) return std::string(value);
    if (tag.substr(0, kTagPrefix.size()) == kTagPrefix) {
      const std::string_view t = tag.substr(kTagPrefix.size());
      if (t == "str") return std::string(value);
      json v = resolve_plain(value);
      if ((t == "int" && v.is_number_integer()) || (t == "float" && v.is_number()) ||
          (t == "bool" && v.is_boolean()) || (t == "null" && v.is_null())) {
        return t == "float" ? json(v.get<double>()) : v;
      }
      b_.fail_here(concat({"\"", value, "\" is not a valid !!", t}));
      return nullptr;
    }
    b_.fail_here(concat({"unsupported YAML tag \"", tag, "\""}));
    return nullptr;
  }

  TreeBuilder& b_;
  Errors& errors_;
  std::vector<State> states_;
  std::unordered_map<std::string, uint64_t> anchors_;
  uint64_t last_anchor_ = 0;
  int documents_ = 0;
  bool document_ended_ = false;
};

}  // namespace

bool read_yaml(std::string_view text, TreeBuilder& builder, Errors& errors) {
  Reader reader(builder, errors);
  return reader.run(text);
}

}  // namespace portico::config::detail
