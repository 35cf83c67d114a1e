// Private to src/config. A compiled JSON Schema (config/schema.h): one Node per schema object, keywords
// already checked and converted (numbers parsed, patterns compiled with PCRE2, property lists sorted), so
// validation never looks at the schema text again. Nodes are immutable after compile_schema() returns and
// point into the document they were compiled from, which must outlive them (Schema::Impl owns both).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

struct pcre2_real_code_8;

namespace portico::config::detail::schema {

using json = nlohmann::json;

// A PCRE2 pattern compiled once. search() is an unanchored search in byte mode, as ngx.re.find(s, p, "jo")
// in APISIX; any thread may call it (the match data is per thread).
class Regex {
 public:
  // Throws std::invalid_argument with PCRE2's message and offset when `pattern` does not compile.
  explicit Regex(std::string pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  bool search(std::string_view subject) const;
  const std::string& text() const { return text_; }

 private:
  std::string text_;
  pcre2_real_code_8* code_ = nullptr;
};

enum TypeBits : uint8_t {
  kString = 1,
  kInteger = 2,
  kNumber = 4,
  kBoolean = 8,
  kObject = 16,
  kArray = 32,
  kNull = 64,
};

enum class Format { none, email, ipv4, ipv6, hostname };

struct Node;
using NodePtr = std::unique_ptr<Node>;

struct PatternProperty {
  std::unique_ptr<Regex> regex;
  NodePtr schema;
};

// `dependencies`: when `property` is present, either the `required` names must be present too (list form)
// or the object must match `schema` (schema form).
struct Dependency {
  std::string property;
  std::vector<std::string> required;
  NodePtr schema;
};

struct Node {
  bool always_false = false;  // the boolean schema `false`; `true` is a Node with no keyword
  uint8_t types = 0;          // TypeBits; 0: any type
  std::string type_text;      // "string" or "one of string, number" (for "wrong type: expected ...")

  // Object keywords. `properties` is sorted by name (binary search).
  std::vector<std::pair<std::string, NodePtr>> properties;
  std::vector<std::string> required;
  enum class Additional { allowed, forbidden, schema } additional = Additional::allowed;
  NodePtr additional_schema;
  std::vector<PatternProperty> pattern_properties;
  std::optional<uint64_t> min_properties, max_properties;
  std::vector<Dependency> dependencies;
  bool any_property_default = false;  // some property has a default (minProperties/dependencies count it)

  // Array keywords: `items` is one schema for every item, or `tuple` one per position.
  NodePtr items;
  std::vector<NodePtr> tuple;
  std::optional<uint64_t> min_items, max_items;
  bool unique_items = false;

  // String keywords. Lengths count code points.
  std::optional<uint64_t> min_length, max_length;
  std::unique_ptr<Regex> pattern;
  Format format = Format::none;

  // Number keywords (draft 6+ exclusive bounds).
  std::optional<double> minimum, maximum, exclusive_minimum, exclusive_maximum, multiple_of;

  // Any type. Pointers into the compiled document.
  const json* enum_values = nullptr;
  const json* const_value = nullptr;
  const json* default_value = nullptr;  // null when absent or `null` (APISIX never fills a null default)

  std::vector<NodePtr> all_of, any_of, one_of;
  std::string any_of_required;  // `: ["a"] or ["b"]`, from the branches' `required`, for anyOf's message
  NodePtr not_, if_, then_, else_;

  // The property schema for `name`, or null.
  const Node* property(std::string_view name) const;
};

// ---- Value helpers (schema_values.cc) ----

// An integer is any finite number with an integral value (5.0 is one), as in Lua.
bool integral(const json& v);
bool type_matches(uint8_t types, const json& v);  // `types`: TypeBits
// The type named in "wrong type: ..., got X": JSON's names; "inf"/"nan" for non-finite numbers.
std::string kind_name(const json& v);
size_t code_points(const std::string& s);
// Whether `s` has `format` (Format::none accepts anything), and the format's name for the reason.
bool valid_format(Format format, const std::string& s);
const char* format_name(Format format);
// The first item equal to an earlier one, as (earlier, later) 0-based indexes; {0, 0} when all differ.
// Expected linear time (items are hashed consistently with json's operator==).
std::pair<size_t, size_t> find_equal_items(const json& array);
// Lua's tostring of a number ("%.14g") and Lua's %q quoting of a string, as APISIX's reasons print them.
std::string lua_number(double d);
std::string lua_quote(std::string_view s);

// Compiles `document` (which must outlive the result). Throws std::invalid_argument
// ("schema: properties.key: unsupported keyword \"$ref\"").
NodePtr compile_schema(const json& document);

}  // namespace portico::config::detail::schema
