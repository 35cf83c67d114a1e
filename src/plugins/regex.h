// A regular expression from a plugin's configuration (cors's allow_origins_by_regex, ...), compiled once with
// PCRE2 (JIT when available) when the plugin is built, searched per request against client-controlled text.
// A search is bounded: it gives up after kMatchLimit backtracking steps and counts as no match, so a
// pathological pattern costs bounded CPU per request (as the router's `vars` regexes, router/vars.cc).
//
// Immutable after compile(); search() may run on any thread concurrently and allocates nothing once the
// thread is warm (one match block per thread, shared by every Regex).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace portico::plugins {

class Regex {
 public:
  static constexpr uint32_t kMatchLimit = 100000;

  Regex();
  ~Regex();
  Regex(Regex&&) noexcept;
  Regex& operator=(Regex&&) noexcept;

  // Compiles `pattern` (PCRE2 syntax, byte mode; `caseless` for APISIX's "i" flag). False with `error` set
  // to PCRE2's message and the offset.
  bool compile(std::string_view pattern, bool caseless, std::string* error);
  // True when the pattern matches anywhere in `subject` (ngx.re.find semantics: unanchored).
  bool search(std::string_view subject) const;

 private:
  struct Code;
  std::unique_ptr<Code> code_;
};

}  // namespace portico::plugins
