// JSON front-end over nlohmann's SAX parser (no DOM: events go straight to the TreeBuilder).
#include "config/readers.h"

namespace portico::config::detail {
namespace {

using json = nlohmann::json;

class Sax : public nlohmann::json_sax<json> {
 public:
  Sax(TreeBuilder& builder, Errors& errors) : b_(builder), errors_(errors) {}

  bool null() override { return value(nullptr); }
  bool boolean(bool v) override { return value(v); }
  bool number_integer(number_integer_t v) override { return value(v); }
  bool number_unsigned(number_unsigned_t v) override { return value(v); }
  bool number_float(number_float_t v, const string_t&) override { return value(v); }
  bool string(string_t& v) override { return value(std::move(v)); }
  bool binary(binary_t&) override { return false; }  // not produced by the JSON parser
  bool start_object(std::size_t) override {
    b_.begin_map();
    return true;
  }
  bool key(string_t& k) override {
    b_.key(std::move(k));
    return !b_.stopped();
  }
  bool end_object() override {
    b_.end();
    return !b_.stopped();
  }
  bool start_array(std::size_t) override {
    b_.begin_list();
    return true;
  }
  bool end_array() override {
    b_.end();
    return !b_.stopped();
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception& ex) override {
    // "[json.exception.parse_error.101] parse error at line 3, column 5: syntax error while parsing ..."
    std::string message = ex.what();
    size_t at = message.find("at line");
    message = at == std::string::npos ? message : message.substr(at);
    std::string reason = "invalid JSON ";
    for (char c : message) {
      if (c == '\n') {
        reason += "\\n";
      } else if (static_cast<unsigned char>(c) >= 0x20) {
        reason += c;
      }
    }
    errors_.add(std::string(b_.path_prefix()), std::move(reason));
    syntax_error_ = true;
    return false;
  }

  bool syntax_error() const { return syntax_error_; }

 private:
  bool value(json v) {
    b_.value(std::move(v));
    return !b_.stopped();
  }

  TreeBuilder& b_;
  Errors& errors_;
  bool syntax_error_ = false;
};

}  // namespace

bool read_json(std::string_view text, TreeBuilder& builder, Errors& errors) {
  // nlohmann's lexer takes a NUL byte for the end of input, so `{"a":1}<NUL>anything` would parse as its
  // prefix. JSON has no raw NUL anywhere (control characters in strings must be escaped): refuse it.
  if (size_t nul = text.find('\0'); nul != std::string_view::npos) {
    errors.add(std::string(builder.path_prefix()),
               "invalid JSON: a NUL byte at offset " + std::to_string(nul));
    return false;
  }
  Sax sax(builder, errors);
  json::sax_parse(text.data(), text.data() + text.size(), &sax);
  return !sax.syntax_error();
}

}  // namespace portico::config::detail
