// Regex (regex.h): PCRE2 with a per-thread match block and a bounded match limit.
#include "plugins/regex.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace portico::plugins {

namespace {

struct ThreadMatch {
  pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
  pcre2_match_context* context = make_context();
  ~ThreadMatch() {
    pcre2_match_data_free(data);
    pcre2_match_context_free(context);
  }
  static pcre2_match_context* make_context() {
    pcre2_match_context* c = pcre2_match_context_create(nullptr);
    if (c != nullptr) pcre2_set_match_limit(c, Regex::kMatchLimit);
    return c;
  }
};

}  // namespace

struct Regex::Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

Regex::Regex() = default;
Regex::~Regex() = default;
Regex::Regex(Regex&&) noexcept = default;
Regex& Regex::operator=(Regex&&) noexcept = default;

bool Regex::compile(std::string_view pattern, bool caseless, std::string* error) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   caseless ? PCRE2_CASELESS : 0, &err, &offset, nullptr);
  if (code == nullptr) {
    if (error != nullptr) {
      PCRE2_UCHAR message[256];
      pcre2_get_error_message(err, message, sizeof message);
      *error = std::string(reinterpret_cast<const char*>(message)) + " at offset " + std::to_string(offset);
    }
    return false;
  }
  // Without JIT support pcre2_match interprets: slower, still correct.
  pcre2_jit_compile(code, PCRE2_JIT_COMPLETE);
  code_ = std::make_unique<Code>();
  code_->code = code;
  return true;
}

bool Regex::search(std::string_view subject) const {
  if (!code_) return false;
  thread_local ThreadMatch match;
  if (match.data == nullptr) return false;
  const char* text = subject.data() != nullptr ? subject.data() : "";
  return pcre2_match(code_->code, reinterpret_cast<PCRE2_SPTR>(text), subject.size(), 0, 0, match.data,
                     match.context) >= 0;
}

}  // namespace portico::plugins
