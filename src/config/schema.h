// A JSON Schema validator for plugin configurations, which plugins declare as JSON Schema text exactly as
// APISIX's plugins do (e.g. key-auth's `schema` and `consumer_schema`), so one engine checks all of them.
// It supports the subset of draft 4/6/7 that APISIX plugin schemas use and behaves like the validator APISIX
// embeds (api7's lua-resty-jsonschema): the same acceptance rules, the same default filling and the same
// error reasons, with the location carried by the error path instead of by nested "property ... validation
// failed:" prefixes. src/config/README.md ("Plugin schemas") lists the keywords and the few deliberate
// differences.
//
// Contract:
// - Schemas are constants compiled once at start-up. A malformed schema, or a keyword this engine does not
//   implement, makes parse() throw std::invalid_argument naming the keyword and where it is: that is a
//   programming error, caught by unit tests, never a user error.
// - A compiled Schema is immutable: any thread may call validate() concurrently (each with its own value and
//   Errors). The Schema owns its document; keep the shared_ptr alive while validating.
// - validate() reports every problem at the offending field's path (path.h rules: prefix
//   "routes[2].plugins.jwt-auth" + ".algorithm") and, when the value is valid, fills in the defaults the
//   way APISIX does: a property absent from an object that is present gets its `default`, at every depth.
//   It returns true when it added no error; an invalid value is left unchanged.
// - Cost: linear in (schema nodes x value nodes) for any nesting the strict JSON input allows (64 levels):
//   oneOf/anyOf/not/if branches are tried without reporting, each (branch, value) pair at most once per
//   call, and only the branch that matched fills in defaults.
#pragma once

#include <memory>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

namespace portico::config {

class Errors;
namespace detail {
class Path;  // config/path.h, private to src/config
}

class Schema {
 public:
  // Compiles a schema given as JSON text (duplicate keys are refused, as everywhere in this module). Throws
  // std::invalid_argument ("schema: properties.key.type: unknown type \"str\"") on any problem.
  static std::shared_ptr<const Schema> parse(std::string_view json_text);

  ~Schema();
  Schema(const Schema&) = delete;
  Schema& operator=(const Schema&) = delete;

  // Checks `value`, adding one error per problem to `errors`, and fills in defaults when it is valid.
  // Returns true when it added no error.
  bool validate(nlohmann::json& value, std::string_view path_prefix, Errors& errors) const;
  // The same, for validators inside src/config that already hold the value's Path.
  bool validate(nlohmann::json& value, const detail::Path& path, Errors& errors) const;
  // Checks `value` and reports as validate() does, but fills nothing: for schemas that declare no default
  // (the resource schemas, config/resource_schemas.h), whose values the caller holds const and need not copy.
  bool check(const nlohmann::json& value, const detail::Path& path, Errors& errors) const;

  // The schema as given (what GET /apisix/admin/plugins/<name> serves).
  const nlohmann::json& document() const;

 private:
  struct Impl;
  explicit Schema(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// Whether `value` is of the JSON Schema type `type` ("string", "integer", "number", "boolean", "object",
// "array", "null"; false for any other name). As in APISIX, an integer is any finite number with an integral
// value (5.0 is one); numbers are finite.
bool json_type_is(const nlohmann::json& value, std::string_view type);

}  // namespace portico::config
