// VarTemplate (var_template.h): APISIX's resolve_var syntax, parsed once.
#include "plugins/var_template.h"

#include "config/var_refs.h"
#include "plugins/consumers.h"

namespace portico::plugins {

namespace {

void append_value(std::string& out, std::string_view v, bool header_safe) {
  if (!header_safe) {
    out += v;
    return;
  }
  for (char c : v) {
    const auto u = static_cast<unsigned char>(c);
    if ((u >= 0x20 && u != 0x7f) || c == '\t') out += c;
  }
}

}  // namespace

bool VarTemplate::parse(std::string_view text, std::string* error) {
  text_.assign(text);
  pieces_.clear();
  has_vars_ = false;
  if (std::string why = config::check_var_refs(text); !why.empty()) {
    if (error != nullptr) *error = std::move(why);
    return false;
  }
  size_t at = 0;
  for (const config::VarRef& ref : config::find_var_refs(text)) {
    if (ref.begin > at) pieces_.push_back({Kind::literal, std::string(text.substr(at, ref.begin - at)), {}});
    Piece var;
    var.text.assign(ref.fallback);
    if (ref.name == "route_id") {
      var.kind = Kind::route_id;
    } else if (ref.name == "route_name") {
      var.kind = Kind::route_name;
    } else if (ref.name == "service_id") {
      var.kind = Kind::service_id;
    } else if (ref.name == "consumer_name") {
      var.kind = Kind::consumer_name;
    } else {
      var.kind = Kind::request_var;
      var.var = router::RequestVar(ref.name);
    }
    pieces_.push_back(std::move(var));
    has_vars_ = true;
    at = ref.end;
  }
  if (at < text.size()) pieces_.push_back({Kind::literal, std::string(text.substr(at)), {}});
  return true;
}

void VarTemplate::render(const RequestContext& ctx, std::string& out, bool header_safe) const {
  if (!has_vars_) {
    out += text_;
    return;
  }
  for (const Piece& p : pieces_) {
    std::string_view v;
    bool found = true;
    switch (p.kind) {
      case Kind::literal:
        out += p.text;
        continue;
      case Kind::request_var:
        found = ctx.match != nullptr && p.var.get(*ctx.match, v);
        break;
      case Kind::route_id:
        v = ctx.route_id;
        found = !v.empty();
        break;
      case Kind::route_name:
        v = ctx.route_name;
        found = !v.empty();
        break;
      case Kind::service_id:
        v = ctx.service_id;
        found = !v.empty();
        break;
      case Kind::consumer_name:
        found = ctx.consumer != nullptr;
        if (found) v = ctx.consumer->username;
        break;
    }
    append_value(out, found ? v : std::string_view(p.text), header_safe);
  }
}

}  // namespace portico::plugins
