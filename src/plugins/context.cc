// RequestContext helpers (context.h).
#include "plugins/context.h"

#include "base/json_escape.h"

namespace portico::plugins {

namespace {

// The value of `name` in a list of `name=value` pairs separated by `sep` (query: '&'; cookies: ';' with
// optional spaces).
std::string_view find_pair(std::string_view list, char sep, std::string_view name, bool* found) {
  if (found != nullptr) *found = false;
  while (!list.empty()) {
    size_t end = list.find(sep);
    std::string_view item = list.substr(0, end);
    list = end == std::string_view::npos ? std::string_view() : list.substr(end + 1);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    size_t eq = item.find('=');
    std::string_view key = item.substr(0, eq);
    if (key != name) continue;
    if (found != nullptr) *found = true;
    return eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
  }
  return {};
}

bool is_cookie_field(std::string_view n) {
  return n.size() == 6 && (n[0] | 0x20) == 'c' && (n[1] | 0x20) == 'o' && (n[2] | 0x20) == 'o' &&
         (n[3] | 0x20) == 'k' && (n[4] | 0x20) == 'i' && (n[5] | 0x20) == 'e';
}

}  // namespace

std::string_view RequestContext::query_arg(std::string_view name, bool* found) const {
  return find_pair(request->query, '&', name, found);
}

std::string_view RequestContext::cookie(std::string_view name, bool* found) const {
  if (found != nullptr) *found = false;
  for (size_t i = 0; i < request->header_count; ++i) {
    const http::Header& h = request->headers[i];
    if (!is_cookie_field(h.name)) continue;
    bool hit = false;
    std::string_view v = find_pair(h.value, ';', name, &hit);
    if (hit) {
      if (found != nullptr) *found = true;
      return v;
    }
  }
  return {};
}

void RequestContext::remove_query_arg(std::string_view name) {
  std::string kept;
  std::string_view list = upstream_query();
  bool removed = false;
  while (!list.empty()) {
    size_t end = list.find('&');
    std::string_view item = list.substr(0, end);
    list = end == std::string_view::npos ? std::string_view() : list.substr(end + 1);
    if (item.substr(0, item.find('=')) == name) {
      removed = true;
      continue;
    }
    if (!kept.empty()) kept += '&';
    kept += item;
  }
  if (!removed) return;
  upstream.query = std::move(kept);
  upstream.query_set = true;
}

void RequestContext::remove_cookie(std::string_view name) {
  std::string kept;
  bool removed = false;
  for (size_t i = 0; i < request->header_count; ++i) {
    const http::Header& h = request->headers[i];
    if (!is_cookie_field(h.name)) continue;
    std::string_view list = h.value;
    while (!list.empty()) {
      size_t end = list.find(';');
      std::string_view item = list.substr(0, end);
      list = end == std::string_view::npos ? std::string_view() : list.substr(end + 1);
      while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
      while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
      if (item.empty()) continue;
      if (item.substr(0, item.find('=')) == name) {
        removed = true;
        continue;
      }
      if (!kept.empty()) kept += "; ";
      kept += item;
    }
  }
  if (!removed) return;
  if (kept.empty()) {
    remove_upstream_header("Cookie");
  } else {
    set_upstream_header("Cookie", kept);
  }
}

void RequestContext::respond_message(int status, std::string_view message) {
  std::string body = "{\"message\":\"";
  body += base::json_escape(message);
  body += "\"}\n";
  respond(status, std::move(body), "application/json");
}

}  // namespace portico::plugins
