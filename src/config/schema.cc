// Validation against a compiled schema (schema_node.h) in two passes over the value:
// 1. check: every keyword, reporting at the field's path. oneOf/anyOf/not/if branches are tried in dry runs
//    (no reporting, stop at the first failure) whose results are memoized per (schema node, value node),
//    so a branch is never evaluated twice however the combinators nest.
// 2. fill (only when pass 1 found nothing): defaults are inserted along the branches that matched, using the
//    memoized results. Pass 1 counts a default as present where APISIX does (minProperties, satisfying a
//    dependency), so both passes agree on what the filled value looks like.
#include "config/schema.h"

#include <cmath>
#include <functional>
#include <stdexcept>
#include <unordered_map>

#include "config/json_input.h"
#include "config/path.h"
#include "config/schema_node.h"
#include "config/validate.h"

namespace portico::config {

using detail::Path;
using json = nlohmann::json;
namespace sc = detail::schema;
using sc::code_points;
using sc::find_equal_items;
using sc::format_name;
using sc::kind_name;
using sc::lua_number;
using sc::lua_quote;
using sc::type_matches;
using sc::valid_format;

struct Schema::Impl {
  json document;
  sc::NodePtr root;
};

namespace {

class Run {
 public:
  // Pass 1. With `errors` null (a dry run) nothing is reported and the first failure ends the check.
  bool check(const sc::Node& n, const json& v, const Path& p, Errors* errors);
  // Pass 2: fills in defaults along the branches pass 1 found matching.
  void fill(const sc::Node& n, json& v);

 private:
  bool matches(const sc::Node& n, const json& v);
  bool check_object(const sc::Node& n, const json& v, const Path& p, Errors* errors);
  bool check_array(const sc::Node& n, const json& v, const Path& p, Errors* errors);
  bool check_scalar(const sc::Node& n, const json& v, const Path& p, Errors* errors);

  struct Key {
    const sc::Node* node;
    const json* value;
    bool operator==(const Key&) const = default;
  };
  struct KeyHash {
    size_t operator()(const Key& k) const {
      return std::hash<const void*>()(k.node) * 31 + std::hash<const void*>()(k.value);
    }
  };
  std::unordered_map<Key, bool, KeyHash> memo_;
};

// Adds `reason` (built only when reporting) at `at`; returns false for the caller to propagate.
template <typename Reason>
bool fail(Errors* errors, const Path& at, Reason&& reason) {
  if (errors != nullptr) errors->add(at.str(), reason());
  return false;
}

bool Run::matches(const sc::Node& n, const json& v) {
  const Key key{&n, &v};
  if (auto it = memo_.find(key); it != memo_.end()) return it->second;
  const Path unused("");
  const bool result = check(n, v, unused, nullptr);
  memo_.emplace(key, result);
  return result;
}

bool Run::check(const sc::Node& n, const json& v, const Path& p, Errors* errors) {
  if (n.always_false) return fail(errors, p, [] { return std::string("expect false always"); });
  if (n.types != 0 && !type_matches(n.types, v)) {
    return fail(errors, p, [&] { return "wrong type: expected " + n.type_text + ", got " + kind_name(v); });
  }
  bool ok = true;
  if (v.is_object()) {
    ok = check_object(n, v, p, errors);
  } else if (v.is_array()) {
    ok = check_array(n, v, p, errors);
  } else {
    ok = check_scalar(n, v, p, errors);
  }
  // What follows judges the value as a whole: once it has an error of its own, one more reason for the
  // same value ("matches none of the enum values" after "string too short") would only be noise.
  if (!ok) return false;

  if (n.enum_values != nullptr) {
    bool found = false;
    for (const json& candidate : *n.enum_values) found = found || candidate == v;
    if (!found) return fail(errors, p, [] { return std::string("matches none of the enum values"); });
  }
  if (n.const_value != nullptr && *n.const_value != v) {
    return fail(errors, p, [] { return std::string("failed to check const value"); });
  }
  for (const sc::NodePtr& branch : n.all_of) {
    if (!check(*branch, v, p, errors)) {
      ok = false;
      if (errors == nullptr) return false;
    }
  }
  if (!ok) return false;
  if (!n.any_of.empty()) {
    bool any = false;
    for (const sc::NodePtr& branch : n.any_of) {
      if ((any = matches(*branch, v))) break;
    }
    if (!any) {
      return fail(errors, p, [&] { return "object matches none of the required" + n.any_of_required; });
    }
  }
  if (!n.one_of.empty()) {
    size_t matched = 0;
    for (size_t i = 0; i < n.one_of.size(); ++i) {
      if (!matches(*n.one_of[i], v)) continue;
      if (matched != 0) {
        return fail(errors, p, [&] {
          return "value should match only one schema, but matches both schemas " + std::to_string(matched) +
                 " and " + std::to_string(i + 1);
        });
      }
      matched = i + 1;
    }
    if (matched == 0) {
      return fail(errors, p,
                  [] { return std::string("value should match only one schema, but matches none"); });
    }
  }
  if (n.if_ != nullptr) {
    // The branch taken reports its own errors at their fields (APISIX only says "then clause did not
    // match", which names neither the field nor the rule).
    const sc::Node* branch = matches(*n.if_, v) ? n.then_.get() : n.else_.get();
    if (branch != nullptr && !check(*branch, v, p, errors)) return false;
  }
  if (n.not_ != nullptr && matches(*n.not_, v)) {
    return fail(errors, p, [] { return std::string("value wasn't supposed to match schema"); });
  }
  return true;
}

bool Run::check_object(const sc::Node& n, const json& v, const Path& p, Errors* errors) {
  bool ok = true;
  const auto failed = [&] {
    ok = false;
    return errors == nullptr;  // a dry run stops here
  };
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& key = it.key();
    const Path at = p.key(key);
    bool known = false;
    if (const sc::Node* prop = n.property(key)) {
      known = true;
      if (!check(*prop, it.value(), at, errors) && failed()) return false;
    }
    for (const sc::PatternProperty& pp : n.pattern_properties) {
      if (!pp.regex->search(key)) continue;
      known = true;
      if (!check(*pp.schema, it.value(), at, errors) && failed()) return false;
    }
    if (known) continue;
    if (n.additional == sc::Node::Additional::forbidden) {
      fail(errors, at, [&] { return "additional properties forbidden, found " + key; });
      if (failed()) return false;
    } else if (n.additional == sc::Node::Additional::schema) {
      if (!check(*n.additional_schema, it.value(), at, errors) && failed()) return false;
    }
  }
  for (const std::string& name : n.required) {
    if (v.contains(name)) continue;
    fail(errors, p.key(name), [&] { return "property " + lua_quote(name) + " is required"; });
    if (failed()) return false;
  }
  // A dependency is triggered by what the user wrote (APISIX checks it before filling that property's
  // default) and satisfied by what the value will hold after filling.
  const auto present = [&](const std::string& name) {
    if (v.contains(name)) return true;
    const sc::Node* prop = n.any_property_default ? n.property(name) : nullptr;
    return prop != nullptr && prop->default_value != nullptr;
  };
  for (const sc::Dependency& d : n.dependencies) {
    if (!v.contains(d.property)) continue;
    if (d.schema != nullptr) {
      if (!check(*d.schema, v, p, errors) && failed()) return false;
      continue;
    }
    for (const std::string& name : d.required) {
      if (present(name)) continue;
      fail(errors, p.key(name), [&] {
        return "property " + lua_quote(name) + " is required when " + lua_quote(d.property) + " is set";
      });
      if (failed()) return false;
    }
  }
  if (n.min_properties || n.max_properties) {
    size_t count = v.size();
    if (n.any_property_default) {
      for (const auto& [name, prop] : n.properties)
        count += prop->default_value != nullptr && !v.contains(name);
    }
    if (n.min_properties && count < *n.min_properties) {
      fail(errors, p, [&] {
        return "expect object to have at least " + std::to_string(*n.min_properties) + " properties";
      });
      if (failed()) return false;
    }
    if (n.max_properties && count > *n.max_properties) {
      fail(errors, p, [&] {
        return "expect object to have at most " + std::to_string(*n.max_properties) + " properties";
      });
      if (failed()) return false;
    }
  }
  return ok;
}

bool Run::check_array(const sc::Node& n, const json& v, const Path& p, Errors* errors) {
  bool ok = true;
  const auto failed = [&] {
    ok = false;
    return errors == nullptr;
  };
  if (n.min_items && v.size() < *n.min_items) {
    fail(errors, p,
         [&] { return "expect array to have at least " + std::to_string(*n.min_items) + " items"; });
    if (failed()) return false;
  }
  if (n.max_items && v.size() > *n.max_items) {
    fail(errors, p,
         [&] { return "expect array to have at most " + std::to_string(*n.max_items) + " items"; });
    if (failed()) return false;
  }
  for (size_t i = 0; i < v.size(); ++i) {
    const sc::Node* item =
        !n.tuple.empty() ? (i < n.tuple.size() ? n.tuple[i].get() : nullptr) : n.items.get();
    if (item == nullptr) break;
    if (!check(*item, v[i], p.index(i), errors) && failed()) return false;
  }
  if (n.unique_items && ok) {
    const auto [first, second] = find_equal_items(v);
    if (first != second) {
      // 1-based, as APISIX (Lua) numbers them.
      return fail(errors, p, [&] {
        return "expected unique items but items " + std::to_string(first + 1) + " and " +
               std::to_string(second + 1) + " are equal";
      });
    }
  }
  return ok;
}

bool Run::check_scalar(const sc::Node& n, const json& v, const Path& p, Errors* errors) {
  if (v.is_string()) {
    const std::string& s = v.get_ref<const std::string&>();
    if (n.min_length || n.max_length) {
      const size_t length = code_points(s);
      if (n.min_length && length < *n.min_length) {
        return fail(errors, p, [&] {
          return "string too short, expected at least " + std::to_string(*n.min_length) + ", got " +
                 std::to_string(length);
        });
      }
      if (n.max_length && length > *n.max_length) {
        return fail(errors, p, [&] {
          return "string too long, expected at most " + std::to_string(*n.max_length) + ", got " +
                 std::to_string(length);
        });
      }
    }
    if (n.pattern != nullptr && !n.pattern->search(s)) {
      return fail(errors, p, [&] {
        return "failed to match pattern " + lua_quote(n.pattern->text()) + " with " + lua_quote(s);
      });
    }
    if (!valid_format(n.format, s)) {
      return fail(errors, p,
                  [&] { return std::string("expect valid ") + format_name(n.format) + " but got: " + s; });
    }
  } else if (v.is_number()) {
    const double d = v.get<double>();
    const auto bound = [&](const std::optional<double>& limit, bool broken, const char* relation) {
      return !broken || fail(errors, p, [&] {
        return "expected " + lua_number(d) + " to be " + relation + " " + lua_number(*limit);
      });
    };
    if (n.minimum && !bound(n.minimum, d < *n.minimum, "at least")) return false;
    if (n.exclusive_minimum && !bound(n.exclusive_minimum, d <= *n.exclusive_minimum, "greater than")) {
      return false;
    }
    if (n.maximum && !bound(n.maximum, d > *n.maximum, "at most")) return false;
    if (n.exclusive_maximum && !bound(n.exclusive_maximum, d >= *n.exclusive_maximum, "smaller than")) {
      return false;
    }
    if (n.multiple_of) {
      const double q = d / *n.multiple_of;
      if (!std::isfinite(q) || std::trunc(q) != q) {
        return fail(errors, p, [&] {
          return "expected " + lua_number(d) + " to be a multiple of " + lua_number(*n.multiple_of);
        });
      }
    }
  }
  return true;
}

void Run::fill(const sc::Node& n, json& v) {
  if (v.is_object()) {
    for (auto it = v.begin(); it != v.end(); ++it) {
      bool known = false;
      if (const sc::Node* prop = n.property(it.key())) {
        known = true;
        fill(*prop, it.value());
      }
      for (const sc::PatternProperty& pp : n.pattern_properties) {
        if (!pp.regex->search(it.key())) continue;
        known = true;
        fill(*pp.schema, it.value());
      }
      if (!known && n.additional_schema != nullptr) fill(*n.additional_schema, it.value());
    }
    // Before this object's own defaults, which must not trigger a dependency pass 1 did not check.
    for (const sc::Dependency& d : n.dependencies) {
      if (d.schema != nullptr && v.contains(d.property)) fill(*d.schema, v);
    }
    // A default is inserted as written, not filled further: APISIX does the same.
    if (n.any_property_default) {
      for (const auto& [name, prop] : n.properties) {
        if (prop->default_value != nullptr && !v.contains(name)) v[name] = *prop->default_value;
      }
    }
  } else if (v.is_array()) {
    for (size_t i = 0; i < v.size(); ++i) {
      const sc::Node* item =
          !n.tuple.empty() ? (i < n.tuple.size() ? n.tuple[i].get() : nullptr) : n.items.get();
      if (item == nullptr) break;
      fill(*item, v[i]);
    }
  }
  for (const sc::NodePtr& branch : n.all_of) fill(*branch, v);
  for (const sc::NodePtr& branch : n.any_of) {
    if (matches(*branch, v)) {
      fill(*branch, v);
      break;
    }
  }
  for (const sc::NodePtr& branch : n.one_of) {
    if (matches(*branch, v)) {
      fill(*branch, v);
      break;
    }
  }
  if (n.if_ != nullptr) {
    const sc::Node* branch = matches(*n.if_, v) ? n.then_.get() : n.else_.get();
    if (branch != nullptr) fill(*branch, v);
  }
}

}  // namespace

Schema::Schema(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Schema::~Schema() = default;

std::shared_ptr<const Schema> Schema::parse(std::string_view json_text) {
  Errors errors;
  std::optional<json> document = parse_json(json_text, errors);
  if (!document) {
    const FieldError& e = errors.list().front();
    throw std::invalid_argument("schema: " + (e.path.empty() ? e.reason : e.path + ": " + e.reason));
  }
  auto impl = std::make_unique<Impl>();
  impl->document = std::move(*document);
  impl->root = sc::compile_schema(impl->document);
  return std::shared_ptr<const Schema>(new Schema(std::move(impl)));
}

bool Schema::validate(json& value, const Path& path, Errors& errors) const {
  const size_t before = errors.total();
  Run run;
  run.check(*impl_->root, value, path, &errors);
  if (errors.total() != before) return false;
  run.fill(*impl_->root, value);
  return true;
}

bool Schema::check(const json& value, const Path& path, Errors& errors) const {
  const size_t before = errors.total();
  Run run;
  run.check(*impl_->root, value, path, &errors);
  return errors.total() == before;
}

bool Schema::validate(json& value, std::string_view path_prefix, Errors& errors) const {
  return validate(value, Path(path_prefix), errors);
}

const json& Schema::document() const {
  return impl_->document;
}

bool json_type_is(const json& value, std::string_view type) {
  static constexpr std::pair<std::string_view, uint8_t> kTypes[] = {
      {"string", sc::kString}, {"integer", sc::kInteger}, {"number", sc::kNumber}, {"boolean", sc::kBoolean},
      {"object", sc::kObject}, {"array", sc::kArray},     {"null", sc::kNull}};
  for (const auto& [name, bit] : kTypes) {
    if (name == type) return type_matches(bit, value);
  }
  return false;
}

}  // namespace portico::config
