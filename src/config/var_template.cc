// Template parsing (var_template.h).
#include "config/var_template.h"

#include <charconv>

namespace portico::config {

namespace {

bool is_word(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
}

bool all_digits(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return true;
}

inline char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c + 32) : c;
}

constexpr std::string_view kVarList =
    "uri, request_uri, host, remote_addr, request_method, scheme, args, query_string, is_args, route_id, "
    "route_name, service_id, consumer_name, request_id, http_<header>, arg_<name>, cookie_<name>";

struct Named {
  std::string_view name;
  TemplateVar var;
};

constexpr Named kNamed[] = {
    {"uri", TemplateVar::uri},
    {"request_uri", TemplateVar::request_uri},
    {"host", TemplateVar::host},
    {"remote_addr", TemplateVar::remote_addr},
    {"request_method", TemplateVar::request_method},
    {"scheme", TemplateVar::scheme},
    {"args", TemplateVar::args},
    {"query_string", TemplateVar::args},
    {"is_args", TemplateVar::is_args},
    {"route_id", TemplateVar::route_id},
    {"route_name", TemplateVar::route_name},
    {"service_id", TemplateVar::service_id},
    {"consumer_name", TemplateVar::consumer_name},
    {"request_id", TemplateVar::request_id},
};

// The piece for variable `name`; false when this version does not know it.
bool resolve(std::string_view name, TemplatePiece& out) {
  for (const Named& n : kNamed) {
    if (n.name == name) {
      out.var = n.var;
      return true;
    }
  }
  struct Prefixed {
    std::string_view prefix;
    TemplateVar var;
  };
  static constexpr Prefixed kPrefixed[] = {
      {"http_", TemplateVar::http}, {"arg_", TemplateVar::arg}, {"cookie_", TemplateVar::cookie}};
  for (const Prefixed& p : kPrefixed) {
    if (name.size() <= p.prefix.size() || name.substr(0, p.prefix.size()) != p.prefix) continue;
    out.var = p.var;
    std::string_view rest = name.substr(p.prefix.size());
    if (p.var == TemplateVar::http) {
      for (char c : rest) out.text.push_back(c == '-' ? '_' : lower(c));
    } else {
      out.text = rest;
    }
    return true;
  }
  return false;
}

void add_literal(std::vector<TemplatePiece>& out, std::string_view text) {
  if (text.empty()) return;
  if (!out.empty() && out.back().var == TemplateVar::literal) {
    out.back().text += text;
  } else {
    out.push_back({TemplateVar::literal, std::string(text), 0});
  }
}

int capture_number(std::string_view digits) {
  int n = 0;
  auto [ptr, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), n);
  return ec == std::errc() && ptr == digits.data() + digits.size() ? n : -1;
}

bool fail(std::string* error, std::string why) {
  if (error != nullptr) *error = std::move(why);
  return false;
}

// ngx.re.sub's template: $N, ${N}, $$.
bool parse_replacement(std::string_view text, std::vector<TemplatePiece>& out, std::string* error) {
  size_t i = 0;
  while (i < text.size()) {
    size_t dollar = text.find('$', i);
    add_literal(out, text.substr(i, dollar - i));
    if (dollar == std::string_view::npos) break;
    i = dollar + 1;
    if (i < text.size() && text[i] == '$') {
      add_literal(out, "$");
      ++i;
      continue;
    }
    std::string_view digits;
    if (i < text.size() && text[i] == '{') {
      size_t close = text.find('}', i);
      if (close == std::string_view::npos)
        return fail(error, "the closing bracket in \"" + std::string(text) + "\" variable is missing");
      digits = text.substr(i + 1, close - i - 1);
      i = close + 1;
    } else {
      size_t end = i;
      while (end < text.size() && text[end] >= '0' && text[end] <= '9') ++end;
      digits = text.substr(i, end - i);
      i = end;
    }
    int n = all_digits(digits) ? capture_number(digits) : -1;
    if (n < 0) return fail(error, "invalid capturing variable name in \"" + std::string(text) + "\"");
    out.push_back({TemplateVar::capture, {}, n});
  }
  return true;
}

}  // namespace

bool parse_template(std::string_view text, TemplateSyntax syntax, std::vector<TemplatePiece>& out,
                    std::string* error) {
  out.clear();
  if (syntax == TemplateSyntax::replacement) return parse_replacement(text, out, error);
  size_t i = 0;
  while (i < text.size()) {
    size_t dollar = text.find('$', i);
    if (dollar == std::string_view::npos) {
      add_literal(out, text.substr(i));
      break;
    }
    // `\$name`: not a variable; both characters stay.
    const bool escaped = dollar > 0 && text[dollar - 1] == '\\';
    std::string_view name;
    size_t next = dollar + 1;
    if (next < text.size() && text[next] == '{') {
      size_t close = next + 1;
      while (close < text.size() && is_word(text[close])) ++close;
      if (close < text.size() && text[close] == '}' && close > next + 1) {
        name = text.substr(next + 1, close - next - 1);
        next = close + 1;
      }
    } else {
      size_t end = next;
      while (end < text.size() && is_word(text[end])) ++end;
      name = text.substr(next, end - next);
      next = end;
    }
    if (name.empty() || escaped) {
      add_literal(out, text.substr(i, (name.empty() ? dollar + 1 : next) - i));
      i = name.empty() ? dollar + 1 : next;
      continue;
    }
    add_literal(out, text.substr(i, dollar - i));
    i = next;
    TemplatePiece piece;
    std::string shown(1, '$');
    shown += name;
    if (all_digits(name)) {
      if (syntax != TemplateSyntax::vars_and_captures)
        return fail(error, shown +
                               ": regex captures are not available here (only in proxy-rewrite's headers, "
                               "after regex_uri)");
      piece.var = TemplateVar::capture;
      piece.index = capture_number(name);
      if (piece.index < 0) return fail(error, shown + ": capture number too large");
    } else if (!resolve(name, piece)) {
      return fail(error, "unknown variable " + shown + " (supported: " + std::string(kVarList) + ")");
    }
    out.push_back(std::move(piece));
  }
  return true;
}

}  // namespace portico::config
