// APISIX variable references in configuration text (var_refs.h).
#include "config/var_refs.h"

namespace portico::config {

namespace {

bool is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

bool has_prefix_and_more(std::string_view name, std::string_view prefix) {
  return name.size() > prefix.size() && name.substr(0, prefix.size()) == prefix;
}

}  // namespace

std::vector<VarRef> find_var_refs(std::string_view text) {
  std::vector<VarRef> refs;
  for (size_t i = 0; i < text.size(); ++i) {
    if (text[i] != '$' || (i > 0 && text[i - 1] == '\\')) continue;
    VarRef ref;
    ref.begin = i;
    if (i + 1 < text.size() && text[i + 1] == '{') {
      const size_t close = text.find('}', i + 2);
      if (close == std::string_view::npos) continue;  // "${" without a closing brace: not a reference
      std::string_view inner = trim(text.substr(i + 2, close - i - 2));
      if (inner.empty()) continue;  // "${}"
      const size_t alt = inner.find("??");
      ref.name = trim(inner.substr(0, alt));
      if (alt != std::string_view::npos) {
        std::string_view rest = inner.substr(alt + 2);
        ref.fallback = trim(rest.substr(0, rest.find("??")));
      }
      ref.end = close + 1;
    } else {
      size_t end = i + 1;
      while (end < text.size() && (is_word(text[end]) || text[end] == '.')) ++end;
      if (end == i + 1) continue;  // a lone '$'
      ref.name = text.substr(i + 1, end - i - 1);
      ref.end = end;
    }
    refs.push_back(ref);
    i = ref.end - 1;
  }
  return refs;
}

bool known_template_var(std::string_view name) {
  for (std::string_view known :
       {"uri", "request_uri", "host", "remote_addr", "request_method", "scheme", "args", "query_string",
        "route_id", "route_name", "service_id", "consumer_name"}) {
    if (name == known) return true;
  }
  return has_prefix_and_more(name, "http_") || has_prefix_and_more(name, "arg_") ||
         has_prefix_and_more(name, "cookie_");
}

std::string check_var_refs(std::string_view text) {
  for (const VarRef& ref : find_var_refs(text)) {
    if (!known_template_var(ref.name)) {
      return "unknown variable $" + std::string(ref.name) +
             " (supported: uri, request_uri, host, remote_addr, request_method, scheme, args, query_string, "
             "http_<header>, arg_<name>, cookie_<name>, route_id, route_name, service_id, consumer_name; a "
             "'$' after a backslash is kept as written)";
    }
  }
  return {};
}

}  // namespace portico::config
