#include "router/vars.h"

#include <algorithm>
#include <charconv>
#include <cstring>

#include "base/ascii.h"
#include "http/query.h"

namespace portico::router::detail {

namespace {

using Op = config::VarExpr::Op;
using Source = CompiledExpr::Source;

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Whole (blank-trimmed) string as a number; false for anything else.
bool parse_number(std::string_view s, double& out) {
  s = trim(s);
  if (s.empty()) return false;
  if (s.front() == '+') s.remove_prefix(1);
  auto [ptr, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
  return ec == std::errc() && ptr == s.data() + s.size();
}

bool starts_with(std::string_view s, std::string_view p) {
  return s.substr(0, p.size()) == p;
}

// Header names compare ignoring ASCII case, with '-' and '_' equal; `want` is already lower-case with '_'.
bool header_name_is(std::string_view name, std::string_view want) {
  if (name.size() != want.size()) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    char c = base::ascii_lower(name[i]);
    if (c == '-') c = '_';
    if (c != want[i]) return false;
  }
  return true;
}

bool find_header(const MatchRequest& r, std::string_view want, std::string_view& out) {
  if (r.head == nullptr) return false;
  const http::Header* h = r.head->headers.data();
  for (uint16_t i = 0, n = r.head->header_count; i < n; ++i) {
    if (header_name_is(h[i].name, want)) {
      out = h[i].value;
      return true;
    }
  }
  return false;
}

bool find_cookie(const MatchRequest& r, std::string_view want, std::string_view& out) {
  if (r.head == nullptr) return false;
  const http::Header* h = r.head->headers.data();
  for (uint16_t i = 0, n = r.head->header_count; i < n; ++i) {
    if (!header_name_is(h[i].name, "cookie")) continue;
    std::string_view v = h[i].value;
    while (!v.empty()) {
      size_t semi = v.find(';');
      std::string_view pair = trim(v.substr(0, semi));
      v = semi == std::string_view::npos ? std::string_view() : v.substr(semi + 1);
      size_t eq = pair.find('=');
      if (eq == std::string_view::npos) continue;
      if (trim(pair.substr(0, eq)) == want) {
        out = trim(pair.substr(eq + 1));
        return true;
      }
    }
  }
  return false;
}

// The first argument named `want`, percent-decoded into a per-thread buffer that only grows (no allocation
// once warm).
bool find_arg(std::string_view query, std::string_view want, std::string_view& out) {
  std::string_view raw;
  if (!http::find_query_arg(query, want, raw)) return false;
  if (raw.find_first_of("%+") == std::string_view::npos) {
    out = raw;
    return true;
  }
  thread_local std::string buf;
  buf.clear();
  http::decode_query_value(raw, buf);
  out = buf;
  return true;
}

bool lookup(Source source, const std::string& name, VarContext& ctx, std::string_view& v) {
  const MatchRequest& r = *ctx.request;
  switch (source) {
    case Source::uri:
      v = r.path;
      return true;
    case Source::request_uri:
      v = r.target;
      return true;
    case Source::host:
      v = ctx.host;
      return true;
    case Source::remote_addr:
      if (ctx.addr_len < 0) ctx.addr_len = static_cast<int>(r.client.format(ctx.addr));
      v = std::string_view(ctx.addr, static_cast<size_t>(ctx.addr_len));
      return true;
    case Source::request_method:
      v = ctx.method;
      return true;
    case Source::scheme:
      v = r.tls ? "https" : "http";
      return true;
    case Source::args:
      v = r.query;
      return true;
    case Source::header:
      return find_header(r, name, v);
    case Source::arg:
      return find_arg(r.query, name, v);
    case Source::cookie:
      return find_cookie(r, name, v);
    case Source::status: {
      if (r.status <= 0) return false;
      if (ctx.status_len < 0) {
        auto [end, ec] = std::to_chars(ctx.status, ctx.status + sizeof ctx.status, r.status);
        ctx.status_len = ec == std::errc() ? static_cast<int>(end - ctx.status) : 0;
      }
      v = std::string_view(ctx.status, static_cast<size_t>(ctx.status_len));
      return true;
    }
    case Source::missing:
      return false;
  }
  return false;
}

// A `vars` regex comes from config and runs against client-controlled values: bound its backtracking so a
// pathological pattern costs a bounded amount of CPU per request (a search that hits the limit is a
// non-match). PCRE2's own default is 10 million steps.
constexpr uint32_t kRegexMatchLimit = 100000;

struct MatchDataHolder {
  pcre2_match_data* md = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = make_context();
  ~MatchDataHolder() {
    pcre2_match_data_free(md);
    pcre2_match_context_free(context);
  }
  static pcre2_match_context* make_context() {
    pcre2_match_context* c = pcre2_match_context_create(nullptr);
    if (c != nullptr) pcre2_set_match_limit(c, kRegexMatchLimit);
    return c;
  }
};

bool regex_search(const pcre2_code* re, std::string_view v) {
  // One match data per thread, shared by every regex: a boolean search needs only the first ovector pair.
  thread_local MatchDataHolder holder;
  if (holder.md == nullptr) return false;
  int rc = pcre2_match(re, reinterpret_cast<PCRE2_SPTR>(v.data()), v.size(), 0, 0, holder.md, holder.context);
  return rc >= 0;
}

bool has_token(std::string_view v, std::string_view token) {
  while (true) {
    size_t comma = v.find(',');
    if (trim(v.substr(0, comma)) == token) return true;
    if (comma == std::string_view::npos) return false;
    v.remove_prefix(comma + 1);
  }
}

}  // namespace

Source resolve_var(std::string_view var, std::string& name) {
  name.clear();
  if (var == "uri") return Source::uri;
  if (var == "request_uri") return Source::request_uri;
  if (var == "host") return Source::host;
  if (var == "remote_addr") return Source::remote_addr;
  if (var == "request_method") return Source::request_method;
  if (var == "scheme") return Source::scheme;
  if (var == "args" || var == "query_string") return Source::args;
  if (var == "status") return Source::status;
  if (starts_with(var, "http_") && var.size() > 5) {
    for (char c : var.substr(5)) name.push_back(c == '-' ? '_' : base::ascii_lower(c));
    return Source::header;
  }
  if (starts_with(var, "arg_") && var.size() > 4) {
    name = var.substr(4);
    return Source::arg;
  }
  if (starts_with(var, "cookie_") && var.size() > 7) {
    name = var.substr(7);
    return Source::cookie;
  }
  return Source::missing;
}

bool lookup_var(Source source, const std::string& name, const MatchRequest& request, std::string_view& out) {
  VarContext ctx;
  ctx.request = &request;
  ctx.host = request.host;
  ctx.method = request.method_text;
  if (!lookup(source, name, ctx, out)) return false;
  if (source == Source::remote_addr || source == Source::status) {
    // Formatted into ctx, which dies here: hand out a per-thread copy instead.
    thread_local char copy[sizeof ctx.addr];
    std::memcpy(copy, out.data(), out.size());
    out = std::string_view(copy, out.size());
  }
  return true;
}

bool compile_expr(const config::VarExpr& expr, CompiledExpr& out, std::string* error) {
  auto fail = [&](const std::string& why) {
    if (error != nullptr) *error = "vars: " + expr.var + ": " + why;
    return false;
  };
  out.op = expr.op;
  out.negate = expr.negate;
  out.values = expr.values;
  out.source = resolve_var(expr.var, out.name);

  if (expr.values.empty() && expr.op != Op::in) return fail("no operand");
  switch (expr.op) {
    case Op::gt:
    case Op::ge:
    case Op::lt:
    case Op::le:
      if (!parse_number(expr.values[0], out.number)) return fail("operand is not a number");
      break;
    case Op::regex:
    case Op::regex_nocase: {
      int err = 0;
      PCRE2_SIZE off = 0;
      uint32_t flags = expr.op == Op::regex_nocase ? PCRE2_CASELESS : 0;
      const std::string& pat = expr.values[0];
      pcre2_code* code =
          pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pat.data()), pat.size(), flags, &err, &off, nullptr);
      if (code == nullptr) {
        PCRE2_UCHAR msg[256];
        pcre2_get_error_message(err, msg, sizeof msg);
        return fail("regex \"" + pat + "\": " + reinterpret_cast<const char*>(msg) + " at offset " +
                    std::to_string(off));
      }
      out.regex.reset(code);
      // Without JIT support pcre2_match falls back to the interpreter: slower, still correct.
      pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
      break;
    }
    default:
      break;
  }
  return true;
}

bool eval_expr(const CompiledExpr& e, VarContext& ctx) {
  std::string_view v;
  bool result;
  if (!lookup(e.source, e.name, ctx, v)) {
    result = e.op == Op::ne;
  } else {
    double x;
    switch (e.op) {
      case Op::eq:
        result = v == e.values[0];
        break;
      case Op::ne:
        result = v != e.values[0];
        break;
      case Op::gt:
        result = parse_number(v, x) && x > e.number;
        break;
      case Op::ge:
        result = parse_number(v, x) && x >= e.number;
        break;
      case Op::lt:
        result = parse_number(v, x) && x < e.number;
        break;
      case Op::le:
        result = parse_number(v, x) && x <= e.number;
        break;
      case Op::regex:
      case Op::regex_nocase:
        result = regex_search(e.regex.get(), v);
        break;
      case Op::in:
        result = false;
        for (const std::string& s : e.values) {
          if (v == s) {
            result = true;
            break;
          }
        }
        break;
      case Op::has:
        result = has_token(v, e.values[0]);
        break;
      default:
        result = false;
        break;
    }
  }
  return result != e.negate;
}

}  // namespace portico::router::detail

namespace portico::router {

RequestVar::RequestVar(std::string_view name) {
  source_ = static_cast<uint8_t>(detail::resolve_var(name, name_));
}

bool RequestVar::get(const MatchRequest& request, std::string_view& out) const {
  if (source_ == 0xff) return false;
  return detail::lookup_var(static_cast<detail::CompiledExpr::Source>(source_), name_, request, out);
}

}  // namespace portico::router

namespace portico::router {

struct VarsCondition::Impl {
  std::vector<detail::CompiledExpr> exprs;
};

VarsCondition::VarsCondition() : impl_(std::make_unique<Impl>()) {}
VarsCondition::~VarsCondition() = default;

std::unique_ptr<VarsCondition> VarsCondition::compile(const std::vector<config::VarExpr>& vars,
                                                      std::string* error) {
  std::unique_ptr<VarsCondition> out(new VarsCondition());
  out->impl_->exprs.resize(vars.size());
  for (size_t i = 0; i < vars.size(); ++i) {
    if (!detail::compile_expr(vars[i], out->impl_->exprs[i], error)) return nullptr;
  }
  return out;
}

bool VarsCondition::matches(const MatchRequest& request) const {
  detail::VarContext ctx;
  ctx.request = &request;
  // Host as the router compares it: lower-cased, without a trailing dot.
  char host[256];
  std::string_view h = request.host;
  if (!h.empty() && h.back() == '.') h.remove_suffix(1);
  if (h.size() <= sizeof host) {
    for (size_t i = 0; i < h.size(); ++i)
      host[i] = h[i] >= 'A' && h[i] <= 'Z' ? static_cast<char>(h[i] + 32) : h[i];
    h = std::string_view(host, h.size());
  }
  ctx.host = h;
  ctx.method = request.method_text;
  for (const detail::CompiledExpr& e : impl_->exprs) {
    if (!detail::eval_expr(e, ctx)) return false;
  }
  return true;
}

}  // namespace portico::router
