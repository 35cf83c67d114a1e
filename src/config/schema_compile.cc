// Compiles schema documents into Nodes (schema_node.h): every keyword is checked once here, so that a typo
// or an unsupported keyword in a plugin's schema fails its unit test instead of being ignored at run time.
#include <algorithm>
#include <cmath>
#include <stdexcept>

#include "config/path.h"
#include "config/schema_node.h"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

namespace portico::config::detail::schema {

namespace {

// Keys that carry no validation meaning. `encrypt_fields` is APISIX's list of fields to encrypt in etcd,
// written inside the schema table (key-auth's consumer_schema); keys starting with '_' are ours (or
// APISIX's) to annotate with. Anything else that is not a keyword below is refused: a misspelt keyword
// silently checking nothing is the failure this engine exists to prevent.
bool is_annotation(std::string_view key) {
  static constexpr std::string_view kAnnotations[] = {"title",      "description", "$comment",
                                                      "$schema",    "examples",    "encrypt_fields",
                                                      "deprecated", "readOnly",    "writeOnly"};
  if (!key.empty() && key.front() == '_') return true;
  return std::find(std::begin(kAnnotations), std::end(kAnnotations), key) != std::end(kAnnotations);
}

[[noreturn]] void bad(const std::string& where, const std::string& what) {
  throw std::invalid_argument(where.empty() ? "schema: " + what : "schema: " + where + ": " + what);
}

std::string at_key(const std::string& where, std::string_view key) {
  std::string out = where;
  append_key(out, key);
  return out;
}

std::string at_index(const std::string& where, size_t index) {
  std::string out = where;
  append_index(out, index);
  return out;
}

uint64_t read_count(const json& v, const std::string& where) {
  if (!integral(v) || v.get<double>() < 0 || v.get<double>() > 9007199254740992.0) {
    bad(where, "must be a non-negative integer, got " + v.dump());
  }
  return v.is_number_unsigned() ? v.get<uint64_t>() : static_cast<uint64_t>(v.get<double>());
}

double read_number(const json& v, const std::string& where) {
  if (!v.is_number() || !std::isfinite(v.get<double>())) bad(where, "must be a number, got " + v.dump());
  return v.get<double>();
}

uint8_t type_bit(const json& name, const std::string& where) {
  static constexpr std::pair<std::string_view, uint8_t> kTypes[] = {
      {"string", kString}, {"integer", kInteger}, {"number", kNumber}, {"boolean", kBoolean},
      {"object", kObject}, {"array", kArray},     {"null", kNull}};
  if (name.is_string()) {
    for (const auto& [text, bit] : kTypes) {
      if (name.get_ref<const std::string&>() == text) return bit;
    }
  }
  bad(where, "unknown type " + name.dump());
}

class Compiler {
 public:
  NodePtr compile(const json& s, const std::string& where);

 private:
  // `parent` locates the schema object holding `key`.
  void keyword(Node& n, const std::string& key, const json& v, const std::string& parent);
  void compile_list(std::vector<NodePtr>& out, const json& v, const std::string& where);
};

NodePtr Compiler::compile(const json& s, const std::string& where) {
  auto n = std::make_unique<Node>();
  if (s.is_boolean()) {
    n->always_false = !s.get<bool>();
    return n;
  }
  if (!s.is_object()) bad(where, "a schema must be an object or a boolean, got " + s.dump());
  for (auto it = s.begin(); it != s.end(); ++it) {
    if (is_annotation(it.key())) continue;
    keyword(*n, it.key(), it.value(), where);
  }
  if ((n->then_ || n->else_) && !n->if_) bad(where, "\"then\" or \"else\" without \"if\"");
  for (const auto& [name, prop] : n->properties) {
    if (prop->default_value != nullptr) n->any_property_default = true;
  }
  return n;
}

void Compiler::compile_list(std::vector<NodePtr>& out, const json& v, const std::string& where) {
  if (!v.is_array() || v.empty()) bad(where, "must be a non-empty list of schemas");
  for (size_t i = 0; i < v.size(); ++i) out.push_back(compile(v[i], at_index(where, i)));
}

void Compiler::keyword(Node& n, const std::string& key, const json& v, const std::string& parent) {
  const std::string where = at_key(parent, key);
  if (key == "type") {
    const auto add = [&](const json& name, const std::string& at) {
      const uint8_t bit = type_bit(name, at);
      if (n.types & bit) bad(at, "duplicate type " + name.dump());
      n.types |= bit;
    };
    if (v.is_array() && !v.empty()) {
      n.type_text = "one of ";
      for (size_t i = 0; i < v.size(); ++i) {
        add(v[i], at_index(where, i));
        n.type_text += (i == 0 ? "" : ", ") + v[i].get<std::string>();
      }
    } else {
      add(v, where);
      n.type_text = v.get<std::string>();
    }
  } else if (key == "properties") {
    if (!v.is_object()) bad(where, "must be a mapping of property names to schemas");
    for (auto it = v.begin(); it != v.end(); ++it) {
      n.properties.emplace_back(it.key(), compile(it.value(), at_key(where, it.key())));
    }
    std::sort(n.properties.begin(), n.properties.end(),
              [](const auto& a, const auto& b) { return a.first < b.first; });
  } else if (key == "required") {
    if (!v.is_array()) bad(where, "must be a list of property names");
    for (const json& name : v) {
      if (!name.is_string()) bad(where, "must be a list of property names");
      n.required.push_back(name.get<std::string>());
    }
  } else if (key == "additionalProperties") {
    if (v.is_boolean()) {
      n.additional = v.get<bool>() ? Node::Additional::allowed : Node::Additional::forbidden;
    } else {
      n.additional = Node::Additional::schema;
      n.additional_schema = compile(v, where);
    }
  } else if (key == "patternProperties") {
    if (!v.is_object()) bad(where, "must be a mapping of patterns to schemas");
    for (auto it = v.begin(); it != v.end(); ++it) {
      PatternProperty pp;
      try {
        pp.regex = std::make_unique<Regex>(it.key());
      } catch (const std::invalid_argument& e) {
        bad(where, e.what());
      }
      pp.schema = compile(it.value(), at_key(where, it.key()));
      n.pattern_properties.push_back(std::move(pp));
    }
  } else if (key == "minProperties") {
    n.min_properties = read_count(v, where);
  } else if (key == "maxProperties") {
    n.max_properties = read_count(v, where);
  } else if (key == "dependencies") {
    if (!v.is_object()) bad(where, "must be a mapping of property names to lists or schemas");
    for (auto it = v.begin(); it != v.end(); ++it) {
      Dependency d{it.key(), {}, nullptr};
      if (it.value().is_array()) {
        for (const json& name : it.value()) {
          if (!name.is_string()) bad(at_key(where, it.key()), "must be a list of property names");
          d.required.push_back(name.get<std::string>());
        }
      } else {
        d.schema = compile(it.value(), at_key(where, it.key()));
      }
      n.dependencies.push_back(std::move(d));
    }
  } else if (key == "items") {
    if (v.is_array()) {
      for (size_t i = 0; i < v.size(); ++i) n.tuple.push_back(compile(v[i], at_index(where, i)));
    } else {
      n.items = compile(v, where);
    }
  } else if (key == "minItems") {
    n.min_items = read_count(v, where);
  } else if (key == "maxItems") {
    n.max_items = read_count(v, where);
  } else if (key == "uniqueItems") {
    if (!v.is_boolean()) bad(where, "must be a boolean");
    n.unique_items = v.get<bool>();
  } else if (key == "minLength") {
    n.min_length = read_count(v, where);
  } else if (key == "maxLength") {
    n.max_length = read_count(v, where);
  } else if (key == "pattern") {
    if (!v.is_string()) bad(where, "must be a string");
    try {
      n.pattern = std::make_unique<Regex>(v.get<std::string>());
    } catch (const std::invalid_argument& e) {
      bad(where, e.what());
    }
  } else if (key == "format") {
    if (!v.is_string()) bad(where, "must be a string");
    // APISIX's validator checks these four and ignores every other format ("uri", "date-time", ...);
    // checking more would refuse configurations APISIX accepts.
    const std::string& f = v.get_ref<const std::string&>();
    n.format = f == "email"      ? Format::email
               : f == "ipv4"     ? Format::ipv4
               : f == "ipv6"     ? Format::ipv6
               : f == "hostname" ? Format::hostname
                                 : Format::none;
  } else if (key == "minimum") {
    n.minimum = read_number(v, where);
  } else if (key == "maximum") {
    n.maximum = read_number(v, where);
  } else if (key == "exclusiveMinimum" || key == "exclusiveMaximum") {
    if (v.is_boolean()) bad(where, "the draft-4 boolean form is not supported; give the bound as a number");
    (key == "exclusiveMinimum" ? n.exclusive_minimum : n.exclusive_maximum) = read_number(v, where);
  } else if (key == "multipleOf") {
    n.multiple_of = read_number(v, where);
    if (*n.multiple_of <= 0) bad(where, "must be greater than 0");
  } else if (key == "enum") {
    if (!v.is_array() || v.empty()) bad(where, "must be a non-empty list");
    n.enum_values = &v;
  } else if (key == "const") {
    n.const_value = &v;
  } else if (key == "default") {
    n.default_value = v.is_null() ? nullptr : &v;
  } else if (key == "allOf") {
    compile_list(n.all_of, v, where);
  } else if (key == "anyOf") {
    compile_list(n.any_of, v, where);
    for (const json& branch : v) {
      if (!branch.is_object()) continue;
      auto required = branch.find("required");
      if (required == branch.end()) continue;
      n.any_of_required += (n.any_of_required.empty() ? ": " : " or ") + required->dump();
    }
  } else if (key == "oneOf") {
    compile_list(n.one_of, v, where);
  } else if (key == "not") {
    n.not_ = compile(v, where);
  } else if (key == "if") {
    n.if_ = compile(v, where);
  } else if (key == "then") {
    n.then_ = compile(v, where);
  } else if (key == "else") {
    n.else_ = compile(v, where);
  } else {
    bad(parent, "unsupported keyword \"" + key + "\"");
  }
}

}  // namespace

Regex::Regex(std::string pattern) : text_(std::move(pattern)) {
  int error_code = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(text_.data()), text_.size(), 0, &error_code, &offset,
                        nullptr);
  if (code_ == nullptr) {
    PCRE2_UCHAR message[256];
    const int n = pcre2_get_error_message(error_code, message, sizeof message);
    throw std::invalid_argument(
        "invalid regular expression \"" + text_ + "\" at offset " + std::to_string(offset) + ": " +
        (n > 0 ? std::string(reinterpret_cast<const char*>(message), static_cast<size_t>(n)) : "?"));
  }
  // Optional: without JIT support pcre2_match interprets the pattern, with the same results.
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);
}

Regex::~Regex() {
  pcre2_code_free(code_);
}

bool Regex::search(std::string_view subject) const {
  // One ovector pair is enough to learn whether there is a match (rc 0 then means "matched, captures not
  // stored"), so one scratch block per thread serves every pattern.
  struct Scratch {
    pcre2_match_data* data = pcre2_match_data_create(1, nullptr);
    ~Scratch() { pcre2_match_data_free(data); }
  };
  thread_local Scratch scratch;
  const int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0, 0,
                             scratch.data, nullptr);
  return rc >= 0;
}

const Node* Node::property(std::string_view name) const {
  auto it = std::lower_bound(properties.begin(), properties.end(), name,
                             [](const auto& entry, std::string_view n) { return entry.first < n; });
  return it != properties.end() && it->first == name ? it->second.get() : nullptr;
}

NodePtr compile_schema(const json& document) {
  return Compiler().compile(document, "");
}

}  // namespace portico::config::detail::schema
