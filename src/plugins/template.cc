// Template expansion and regex_uri rewrites (template.h).
#include "plugins/template.h"

#include <nlohmann/json.hpp>
#include <stdexcept>

#include "base/ascii.h"
#include "http/query.h"
#include "plugins/consumers.h"

namespace portico::plugins {

namespace {

constexpr char kHex[] = "0123456789ABCDEF";

bool is_hex(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

void percent(std::string& out, unsigned char b) {
  out += '%';
  out += kHex[b >> 4];
  out += kHex[b & 15];
}

// The header named like `want` (lower case, '_' for '-'), as the origin will receive it so far: the last
// set/remove a plugin recorded wins over the received fields (APISIX: a header set by an earlier plugin is
// what the next one reads), else the first received field.
std::string_view find_header(const RequestContext& ctx, std::string_view want) {
  auto same = [&](std::string_view name) {
    if (name.size() != want.size()) return false;
    for (size_t i = 0; i < name.size(); ++i) {
      const char c = name[i] == '-' ? '_' : base::ascii_lower(name[i]);
      if (c != want[i]) return false;
    }
    return true;
  };
  const auto& edits = ctx.upstream.headers;
  for (size_t i = edits.size(); i-- > 0;) {
    if (edits[i].op != HeaderEdit::Op::add && same(edits[i].name)) return edits[i].value;
  }
  if (ctx.request == nullptr) return {};
  for (uint16_t i = 0; i < ctx.request->header_count; ++i) {
    const http::Header& h = ctx.request->headers[i];
    if (same(h.name)) return h.value;
  }
  return {};
}

// Per-thread scratch for values built per request (a decoded argument, a lower-cased host).
std::string& scratch() {
  thread_local std::string s;
  s.clear();
  return s;
}

struct MatchData {
  pcre2_match_data* md = pcre2_match_data_create(Captures::kMax, nullptr);
  pcre2_match_context* context = pcre2_match_context_create(nullptr);
  MatchData() {
    // The regex comes from config and runs against client-controlled paths: bound its backtracking, as the
    // router bounds `vars` regexes (a search that hits the limit is a non-match).
    if (context != nullptr) pcre2_set_match_limit(context, 100000);
  }
  ~MatchData() {
    pcre2_match_data_free(md);
    pcre2_match_context_free(context);
  }
};

}  // namespace

void Expansion::put(std::string_view text, bool from_template, bool encoded) {
  if (escape_ == Escape::body) {
    out_ += text;
    return;
  }
  for (size_t i = 0; i < text.size(); ++i) {
    const char c = text[i];
    const auto b = static_cast<unsigned char>(c);
    if (escape_ == Escape::header) {
      if (b < 0x20 || b == 0x7f) {
        percent(out_, b);
      } else {
        out_ += c;
      }
      continue;
    }
    if (c == '?' && query_at_ == std::string::npos) {
      if (from_template) {
        query_at_ = out_.size();
        out_ += c;
      } else {
        out_ += "%3F";
      }
      continue;
    }
    if (c == '%') {
      const bool escape_start = i + 2 < text.size() && is_hex(text[i + 1]) && is_hex(text[i + 2]);
      if ((from_template || encoded) && escape_start) {
        out_ += c;
      } else {
        out_ += "%25";
      }
      continue;
    }
    if (b <= 0x20 || b >= 0x7f || c == '#') {
      percent(out_, b);
    } else {
      out_ += c;
    }
  }
}

void Expansion::literal(std::string_view text) {
  put(text, true, true);
}

void Expansion::value(std::string_view text, bool encoded) {
  put(text, false, encoded);
}

Template Template::parse(std::string_view text, config::TemplateSyntax syntax) {
  std::vector<config::TemplatePiece> pieces;
  std::string error;
  if (!config::parse_template(text, syntax, pieces, &error)) throw std::invalid_argument(error);
  return Template(std::move(pieces));
}

void Template::expand(const RequestContext& ctx, const Captures* captures, Expansion& out) const {
  using V = config::TemplateVar;
  for (const config::TemplatePiece& p : pieces_) {
    switch (p.var) {
      case V::literal:
        out.literal(p.text);
        break;
      case V::uri:
        out.value(ctx.path, true);
        break;
      case V::request_uri: {
        // The target's own '?' separates its query, like a '?' of the template (APISIX's redirect to
        // https://$host$request_uri keeps the query a query).
        const std::string_view target = ctx.request ? ctx.request->target : std::string_view();
        const size_t q = target.find('?');
        out.value(target.substr(0, q), true);
        if (q != std::string_view::npos) {
          out.literal("?");
          out.value(target.substr(q + 1), true);
        }
        break;
      }
      case V::host: {
        std::string& host = scratch();
        if (ctx.request != nullptr) {
          for (char c : ctx.request->host) host += base::ascii_lower(c);
        }
        out.value(host, false);
        break;
      }
      case V::remote_addr:
        out.value(ctx.client_ip_text, false);
        break;
      case V::request_method:
        out.value(ctx.request ? ctx.request->method_text : std::string_view(), false);
        break;
      case V::scheme:
        out.value(ctx.tls ? "https" : "http", false);
        break;
      case V::args:
        // The query as it goes upstream: an argument an earlier plugin removed (hide_credentials) stays out.
        out.value(ctx.request ? ctx.upstream_query() : std::string_view(), true);
        break;
      case V::is_args:
        out.value(ctx.request && ctx.request->target.find('?') != std::string_view::npos ? "?" : "", true);
        break;
      case V::route_id:
        out.value(ctx.route_id, false);
        break;
      case V::route_name:
        out.value(ctx.route_name, false);
        break;
      case V::service_id:
        out.value(ctx.service_id, false);
        break;
      case V::consumer_name:
        out.value(ctx.consumer ? std::string_view(ctx.consumer->username) : std::string_view(), false);
        break;
      case V::request_id:
        out.value(ctx.request_id, false);
        break;
      case V::http:
        out.value(find_header(ctx, p.text), false);
        break;
      case V::arg: {
        std::string& decoded = scratch();
        std::string_view raw;
        if (ctx.request != nullptr && http::find_query_arg(ctx.upstream_query(), p.text, raw)) {
          http::decode_query_value(raw, decoded);
        }
        out.value(decoded, false);
        break;
      }
      case V::cookie:
        out.value(ctx.request ? ctx.cookie(p.text) : std::string_view(), false);
        break;
      case V::capture:
        out.value(captures ? captures->get(p.index) : std::string_view(), true);
        break;
    }
  }
}

RegexRewrite::RegexRewrite(const std::string& regex, std::string_view replacement) {
  int error = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(regex.data()), regex.size(), 0, &error, &offset, nullptr);
  if (code == nullptr) throw std::invalid_argument("regex_uri: invalid regular expression " + regex);
  code_.reset(code);
  // Without JIT support pcre2_match falls back to the interpreter: slower, same results.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  replacement_ = Template::parse(replacement, config::TemplateSyntax::replacement);
}

bool RegexRewrite::apply(std::string_view subject, Expansion& out, Captures* captures) const {
  thread_local MatchData data;
  if (data.md == nullptr) return false;
  const int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0,
                             data.md, data.context);
  if (rc < 0) return false;
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(data.md);
  Captures local;
  Captures& groups = captures != nullptr ? *captures : local;
  // rc == 0: more groups than the match data holds; those past kMax expand to nothing.
  groups.count = rc == 0 ? Captures::kMax : rc;
  for (int i = 0; i < groups.count; ++i) {
    const PCRE2_SIZE start = ov[2 * i], end = ov[2 * i + 1];
    groups.group[i] = start == PCRE2_UNSET ? std::string_view() : subject.substr(start, end - start);
  }
  out.value(subject.substr(0, ov[0]), true);
  static const RequestContext kNoRequest;  // a replacement holds text and captures only
  replacement_.expand(kNoRequest, &groups, out);
  out.value(subject.substr(ov[1]), true);
  return true;
}

std::vector<HeaderRule> read_header_rules(const nlohmann::json& headers,
                                          const config::HeaderOpsSyntax& syntax) {
  std::vector<config::HeaderOp> ops;
  std::string field;
  const std::string why = config::read_header_ops(headers, syntax, ops, field);
  if (!why.empty()) throw std::invalid_argument("headers." + field + ": " + why);
  std::vector<HeaderRule> rules;
  rules.reserve(ops.size());
  for (config::HeaderOp& op : ops) {
    const HeaderEdit::Op kind = op.kind == config::HeaderOp::Kind::add   ? HeaderEdit::Op::add
                                : op.kind == config::HeaderOp::Kind::set ? HeaderEdit::Op::set
                                                                         : HeaderEdit::Op::remove;
    rules.push_back({kind, std::move(op.name), Template(std::move(op.pieces))});
  }
  return rules;
}

void apply_header_rules(std::span<const HeaderRule> rules, const RequestContext& ctx,
                        const Captures* captures, HeaderEdits& into) {
  for (const HeaderRule& h : rules) {
    thread_local std::string value;
    value.clear();
    if (h.op != HeaderEdit::Op::remove) {
      Expansion out(value, Escape::header);
      h.value.expand(ctx, captures, out);
    }
    into.push(h.op, h.name, value);
  }
}

}  // namespace portico::plugins
