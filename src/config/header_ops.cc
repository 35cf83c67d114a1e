// Plugins' header operations (header_ops.h).
#include "config/header_ops.h"

#include <nlohmann/json.hpp>

#include "config/path.h"

namespace portico::config {

namespace {

using json = nlohmann::json;

inline char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

// `name` equals `want` (lower case) ignoring case; with `dash_underscore`, '_' in `name` counts as '-'.
bool same_name(std::string_view name, std::string_view want, bool dash_underscore) {
  if (name.size() != want.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    const char c = dash_underscore && name[i] == '_' ? '-' : lower(name[i]);
    if (c != want[i]) return false;
  }
  return true;
}

std::string check_value(std::string_view value) {
  for (char c : value) {
    const auto b = static_cast<unsigned char>(c);
    if (b < 32 || b >= 127) return "invalid value character in header";
  }
  return {};
}

std::string value_text(const json& v) {
  return v.is_string() ? v.get<std::string>() : v.dump();
}

std::string trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return std::string(s);
}

// One operation, checked; the reason is empty when fine.
std::string add_op(HeaderOp::Kind kind, std::string name, std::string value, const HeaderOpsSyntax& syntax,
                   std::vector<HeaderOp>& out) {
  std::string reason = check_header_name(name);
  if (reason.empty() && is_reserved_header(name, syntax.request_side)) {
    reason = name + " is managed by Portico itself and cannot be changed by a plugin";
  }
  if (reason.empty()) reason = check_value(value);
  if (!reason.empty()) return reason;
  HeaderOp op{kind, std::move(name), std::move(value), {}};
  if (kind != HeaderOp::Kind::remove && !parse_template(op.value, syntax.values, op.pieces, &reason))
    return reason;
  out.push_back(std::move(op));
  return {};
}

bool is_structured(const json& headers) {
  for (const char* key : {"add", "set"}) {
    auto it = headers.find(key);
    if (it != headers.end() && (it->is_object() || it->is_array())) return true;
  }
  auto it = headers.find("remove");
  return it != headers.end() && (it->is_object() || it->is_array());
}

}  // namespace

bool is_reserved_header(std::string_view name, bool request_side) {
  static constexpr std::string_view kAlways[] = {"connection", "keep-alive",     "proxy-connection",
                                                 "te",         "trailer",        "transfer-encoding",
                                                 "upgrade",    "content-length", "host"};
  static constexpr std::string_view kRequest[] = {"x-forwarded-for", "x-forwarded-host", "x-forwarded-proto",
                                                  "x-real-ip", "expect"};
  for (std::string_view r : kAlways) {
    if (same_name(name, r, false)) return true;
  }
  if (!request_side) return false;
  for (std::string_view r : kRequest) {
    if (same_name(name, r, true)) return true;
  }
  return false;
}

std::string check_header_name(std::string_view name) {
  if (name.empty()) return "invalid field length in header";
  for (char c : name) {
    const auto b = static_cast<unsigned char>(c);
    if (b <= 32 || b >= 127 || c == ':') return "invalid field character in header";
  }
  return {};
}

std::string read_header_ops(const json& headers, const HeaderOpsSyntax& syntax, std::vector<HeaderOp>& out,
                            std::string& field) {
  out.clear();
  field.clear();
  if (!headers.is_object()) return "must be a mapping";
  std::string reason;
  if (!is_structured(headers)) {
    for (auto it = headers.begin(); it != headers.end(); ++it) {
      reason = add_op(HeaderOp::Kind::set, it.key(), value_text(it.value()), syntax, out);
      if (!reason.empty()) {
        detail::append_key(field, it.key());
        return reason;
      }
    }
    return {};
  }
  for (auto it = headers.begin(); it != headers.end(); ++it) {
    if (it.key() != "add" && it.key() != "set" && it.key() != "remove") {
      detail::append_key(field, it.key());
      return "a header cannot be given next to add, set and remove (use set)";
    }
  }
  if (auto add = headers.find("add"); add != headers.end()) {
    if (syntax.add_as_lines) {
      for (size_t i = 0; i < add->size(); ++i) {
        const std::string line = (*add)[i].get<std::string>();
        const size_t colon = line.find(':');
        reason = add_op(HeaderOp::Kind::add, trim(std::string_view(line).substr(0, colon)),
                        trim(std::string_view(line).substr(colon + 1)), syntax, out);
        if (!reason.empty()) {
          field = "add";
          detail::append_index(field, i);
          return reason;
        }
      }
    } else {
      for (auto it = add->begin(); it != add->end(); ++it) {
        reason = add_op(HeaderOp::Kind::add, it.key(), value_text(it.value()), syntax, out);
        if (!reason.empty()) {
          field = "add";
          detail::append_key(field, it.key());
          return reason;
        }
      }
    }
  }
  if (auto set = headers.find("set"); set != headers.end()) {
    for (auto it = set->begin(); it != set->end(); ++it) {
      reason = add_op(HeaderOp::Kind::set, it.key(), value_text(it.value()), syntax, out);
      if (!reason.empty()) {
        field = "set";
        detail::append_key(field, it.key());
        return reason;
      }
    }
  }
  if (auto remove = headers.find("remove"); remove != headers.end()) {
    for (size_t i = 0; i < remove->size(); ++i) {
      reason = add_op(HeaderOp::Kind::remove, (*remove)[i].get<std::string>(), {}, syntax, out);
      if (!reason.empty()) {
        field = "remove";
        detail::append_index(field, i);
        return reason;
      }
    }
  }
  return {};
}

}  // namespace portico::config
