// The JSON Schema engine for plugin configurations (config/schema.h): every keyword, APISIX's reasons at
// the field's path, default filling, combinator reporting, schema compile errors, and real APISIX plugin
// schemas validating sample configurations as APISIX does.
#include <gtest/gtest.h>

#include <cmath>
#include <nlohmann/json.hpp>
#include <stdexcept>
#include <string>
#include <vector>

#include "config/path.h"
#include "config/schema.h"
#include "config/validate.h"

namespace portico::config {
namespace {

using nlohmann::json;

struct Outcome {
  bool ok = false;
  std::vector<std::string> errors;  // "path: reason"
  json value;
};

Outcome run(const Schema& schema, json value, std::string_view prefix = "conf") {
  Errors errors;
  Outcome out;
  out.ok = schema.validate(value, prefix, errors);
  for (const FieldError& e : errors.list()) out.errors.push_back(e.path + ": " + e.reason);
  out.value = std::move(value);
  EXPECT_EQ(out.ok, out.errors.empty());
  return out;
}

Outcome run(std::string_view schema_text, std::string_view value_text, std::string_view prefix = "conf") {
  return run(*Schema::parse(schema_text), json::parse(value_text), prefix);
}

// The only error, or "" when valid; fails the test when there are several.
std::string error_of(std::string_view schema_text, std::string_view value_text) {
  Outcome out = run(schema_text, value_text);
  EXPECT_LE(out.errors.size(), 1u) << testing::PrintToString(out.errors);
  return out.errors.empty() ? "" : out.errors.front();
}

std::string parse_error(std::string_view schema_text) {
  try {
    Schema::parse(schema_text);
  } catch (const std::invalid_argument& e) {
    return e.what();
  }
  return "";
}

TEST(SchemaType, SingleNamesFollowLuaRules) {
  EXPECT_EQ(error_of(R"({"type": "string"})", "1"), "conf: wrong type: expected string, got number");
  EXPECT_EQ(error_of(R"({"type": "string"})", R"("a")"), "");
  EXPECT_EQ(error_of(R"({"type": "integer"})", "5"), "");
  EXPECT_EQ(error_of(R"({"type": "integer"})", "5.0"), "");  // APISIX/Lua: 5.0 is an integer
  EXPECT_EQ(error_of(R"({"type": "integer"})", "5.5"), "conf: wrong type: expected integer, got number");
  EXPECT_EQ(error_of(R"({"type": "number"})", "5.5"), "");
  EXPECT_EQ(error_of(R"({"type": "number"})", R"("5")"), "conf: wrong type: expected number, got string");
  EXPECT_EQ(error_of(R"({"type": "boolean"})", "0"), "conf: wrong type: expected boolean, got number");
  EXPECT_EQ(error_of(R"({"type": "object"})", "[]"), "conf: wrong type: expected object, got array");
  EXPECT_EQ(error_of(R"({"type": "array"})", "{}"), "conf: wrong type: expected array, got object");
  EXPECT_EQ(error_of(R"({"type": "null"})", "null"), "");
  EXPECT_EQ(error_of(R"({"type": "string"})", "null"), "conf: wrong type: expected string, got null");
  EXPECT_EQ(error_of(R"({"type": ["string", "integer"]})", "true"),
            "conf: wrong type: expected one of string, integer, got boolean");
  EXPECT_EQ(error_of(R"({"type": ["string", "integer"]})", "7"), "");
}

TEST(SchemaType, NumbersMustBeFinite) {
  // Only YAML (`.inf`) can produce these; they are not numbers to a schema.
  auto schema = Schema::parse(R"({"type": "number"})");
  EXPECT_EQ(run(*schema, json(INFINITY)).errors,
            std::vector<std::string>{"conf: wrong type: expected number, got inf"});
  EXPECT_FALSE(run(*schema, json(NAN)).ok);
  EXPECT_FALSE(run(*Schema::parse(R"({"type": "integer"})"), json(-INFINITY)).ok);
}

TEST(SchemaType, JsonTypeIs) {
  EXPECT_TRUE(json_type_is(json(5.0), "integer"));
  EXPECT_FALSE(json_type_is(json(5.5), "integer"));
  EXPECT_TRUE(json_type_is(json(5), "number"));
  EXPECT_FALSE(json_type_is(json(INFINITY), "number"));
  EXPECT_TRUE(json_type_is(json::object(), "object"));
  EXPECT_FALSE(json_type_is(json::array(), "object"));
  EXPECT_TRUE(json_type_is(json(nullptr), "null"));
  EXPECT_FALSE(json_type_is(json("x"), "str"));
}

TEST(SchemaObject, PropertiesAndRequiredAtTheFieldPath) {
  const char* schema = R"({"type": "object", "properties": {"key": {"type": "string"},
                           "n": {"type": "integer"}}, "required": ["key", "other"]})";
  Outcome out = run(schema, R"({"n": "x"})");
  EXPECT_EQ(out.errors, (std::vector<std::string>{"conf.n: wrong type: expected integer, got string",
                                                  "conf.key: property \"key\" is required",
                                                  "conf.other: property \"other\" is required"}));
  EXPECT_TRUE(run(schema, R"({"key": "k", "other": 1, "extra": true})").ok);  // additional allowed by default
}

TEST(SchemaObject, AdditionalAndPatternProperties) {
  const char* closed = R"({"properties": {"a": {}}, "patternProperties": {"^x-": {"type": "string"}},
                           "additionalProperties": false})";
  EXPECT_EQ(run(closed, R"({"a": 1, "x-b": "ok", "foo": 1, "bar": 2})").errors,
            (std::vector<std::string>{"conf.bar: additional properties forbidden, found bar",
                                      "conf.foo: additional properties forbidden, found foo"}));
  EXPECT_EQ(error_of(closed, R"({"x-b": 1})"), "conf.x-b: wrong type: expected string, got number");
  // Patterns search (unanchored, as ngx.re.find): "^x-" is anchored by itself, "b" is not.
  EXPECT_EQ(error_of(R"({"patternProperties": {"b": {"type": "integer"}}})", R"({"abc": "s", "x": "s"})"),
            "conf.abc: wrong type: expected integer, got string");
  const char* typed_extras = R"({"properties": {"a": {}}, "additionalProperties": {"type": "integer"}})";
  EXPECT_EQ(error_of(typed_extras, R"({"a": "s", "b": "s"})"),
            "conf.b: wrong type: expected integer, got string");
  // A key that is not a plain identifier is quoted in the path.
  EXPECT_EQ(error_of(R"({"additionalProperties": false})", R"({"a b": 1})"),
            "conf[\"a b\"]: additional properties forbidden, found a b");
}

TEST(SchemaObject, PropertyCounts) {
  EXPECT_EQ(error_of(R"({"minProperties": 1})", "{}"), "conf: expect object to have at least 1 properties");
  EXPECT_EQ(error_of(R"({"maxProperties": 1})", R"({"a": 1, "b": 2})"),
            "conf: expect object to have at most 1 properties");
  EXPECT_EQ(error_of(R"({"minProperties": 1, "maxProperties": 2})", R"({"a": 1})"), "");
}

TEST(SchemaObject, Dependencies) {
  const char* list = R"({"dependencies": {"user": ["password", "realm"]}})";
  EXPECT_EQ(
      run(list, R"({"user": "u", "realm": "r"})").errors,
      std::vector<std::string>{"conf.password: property \"password\" is required when \"user\" is set"});
  EXPECT_TRUE(run(list, R"({"password": "p"})").ok);
  const char* schema_form = R"({"dependencies": {"ttl": {"required": ["key"],
                                "properties": {"key": {"minLength": 3}}}}})";
  EXPECT_EQ(error_of(schema_form, R"({"ttl": 1})"), "conf.key: property \"key\" is required");
  EXPECT_EQ(error_of(schema_form, R"({"ttl": 1, "key": "ab"})"),
            "conf.key: string too short, expected at least 3, got 2");
  EXPECT_EQ(error_of(schema_form, R"({"key": "ab"})"), "");
}

TEST(SchemaNumber, Bounds) {
  EXPECT_EQ(error_of(R"({"minimum": 1})", "0"), "conf: expected 0 to be at least 1");
  EXPECT_EQ(error_of(R"({"maximum": 5})", "10"), "conf: expected 10 to be at most 5");
  EXPECT_EQ(error_of(R"({"exclusiveMinimum": 1})", "1"), "conf: expected 1 to be greater than 1");
  EXPECT_EQ(error_of(R"({"exclusiveMaximum": 5})", "5.0"), "conf: expected 5 to be smaller than 5");
  EXPECT_EQ(error_of(R"({"minimum": 0.5})", "0.25"), "conf: expected 0.25 to be at least 0.5");
  EXPECT_EQ(error_of(R"({"minimum": 1, "maximum": 5, "exclusiveMaximum": 6})", "5"), "");
  EXPECT_EQ(error_of(R"({"multipleOf": 2})", "3"), "conf: expected 3 to be a multiple of 2");
  EXPECT_EQ(error_of(R"({"multipleOf": 0.5})", "2.5"), "");
  // Bounds concern numbers only.
  EXPECT_EQ(error_of(R"({"minimum": 1})", R"("0")"), "");
}

TEST(SchemaString, LengthsCountCodePoints) {
  EXPECT_EQ(error_of(R"({"minLength": 1})", R"("")"), "conf: string too short, expected at least 1, got 0");
  EXPECT_EQ(error_of(R"({"maxLength": 3})", R"("abcde")"),
            "conf: string too long, expected at most 3, got 5");
  EXPECT_EQ(error_of(R"({"maxLength": 2})", "\"\xc3\xa9\xc3\xa9\""), "");  // "éé": 4 bytes, 2 code points
  EXPECT_EQ(error_of(R"({"minLength": 3})", "\"\xc3\xa9\xc3\xa9\""),
            "conf: string too short, expected at least 3, got 2");
}

TEST(SchemaString, PatternIsAnUnanchoredPcreSearch) {
  EXPECT_EQ(error_of(R"({"pattern": "^a"})", R"("b")"), "conf: failed to match pattern \"^a\" with \"b\"");
  EXPECT_EQ(error_of(R"({"pattern": "b"})", R"("abc")"), "");
  // Lua's %q doubles backslashes and escapes quotes, in the pattern and in the value.
  EXPECT_EQ(error_of(R"({"pattern": "^\\d+$"})", R"("1\"x")"),
            R"(conf: failed to match pattern "^\\d+$" with "1\"x")");
  EXPECT_EQ(error_of(R"({"pattern": "^[^:]+$"})", R"("a:b")"),
            "conf: failed to match pattern \"^[^:]+$\" with \"a:b\"");
}

TEST(SchemaString, Formats) {
  EXPECT_EQ(error_of(R"({"format": "ipv4"})", R"("10.0.0.1")"), "");
  EXPECT_EQ(error_of(R"({"format": "ipv4"})", R"("10.0.0.256")"),
            "conf: expect valid ipv4 address but got: 10.0.0.256");
  EXPECT_EQ(error_of(R"({"format": "ipv6"})", R"("fe80::1")"), "");
  EXPECT_EQ(error_of(R"({"format": "ipv6"})", R"("10.0.0.1")"),
            "conf: expect valid ipv6 address but got: 10.0.0.1");
  EXPECT_EQ(error_of(R"({"format": "email"})", R"("a.b@example.com")"), "");
  EXPECT_EQ(error_of(R"({"format": "email"})", R"("a@b")"), "conf: expect valid email address but got: a@b");
  EXPECT_EQ(error_of(R"({"format": "hostname"})", R"("a_b")"), "conf: expect valid hostname but got: a_b");
  // APISIX ignores formats it does not know, and so does this engine.
  EXPECT_EQ(error_of(R"({"format": "uri"})", R"("not a uri")"), "");
  EXPECT_EQ(error_of(R"({"format": "ipv4"})", "4"), "");  // formats concern strings only
}

TEST(SchemaArray, ItemsCountsAndUniqueness) {
  EXPECT_EQ(error_of(R"({"items": {"type": "string"}})", R"(["a", 1])"),
            "conf[1]: wrong type: expected string, got number");
  EXPECT_EQ(error_of(R"({"items": [{"type": "string"}, {"type": "integer"}]})", R"(["a", 1, true])"), "");
  EXPECT_EQ(error_of(R"({"items": [{"type": "string"}, {"type": "integer"}]})", R"([1])"),
            "conf[0]: wrong type: expected string, got number");
  EXPECT_EQ(error_of(R"({"minItems": 1})", "[]"), "conf: expect array to have at least 1 items");
  EXPECT_EQ(error_of(R"({"maxItems": 1})", "[1, 2]"), "conf: expect array to have at most 1 items");
  // Item numbers are 1-based, as APISIX prints them.
  EXPECT_EQ(error_of(R"({"uniqueItems": true})", R"(["a", "a"])"),
            "conf: expected unique items but items 1 and 2 are equal");
  EXPECT_EQ(error_of(R"({"uniqueItems": true})", R"([1, 2, 3, 2.0])"),
            "conf: expected unique items but items 2 and 4 are equal");
  EXPECT_EQ(error_of(R"({"uniqueItems": true})", R"([{"a": 1, "b": [1]}, {"b": [1], "a": 1}])"),
            "conf: expected unique items but items 1 and 2 are equal");
  EXPECT_EQ(error_of(R"({"uniqueItems": true})", R"([1, "1", [1], {"1": 1}, true, null])"), "");
}

TEST(SchemaValue, EnumAndConst) {
  EXPECT_EQ(error_of(R"({"enum": ["http", "https"]})", R"("ftp")"), "conf: matches none of the enum values");
  EXPECT_EQ(error_of(R"({"enum": ["http", 1, {"a": 1}]})", R"({"a": 1.0})"), "");
  EXPECT_EQ(error_of(R"({"const": "x"})", R"("y")"), "conf: failed to check const value");
  EXPECT_EQ(error_of(R"({"const": [1, 2]})", "[1, 2]"), "");
}

TEST(SchemaCombinators, OneOfReportsOneErrorAtTheValue) {
  const char* schema = R"({"properties": {"v": {"oneOf": [{"type": "string", "minLength": 5},
                                                          {"type": "integer", "minimum": 10}]}}})";
  EXPECT_EQ(error_of(schema, R"({"v": "abc"})"),
            "conf.v: value should match only one schema, but matches none");
  EXPECT_EQ(error_of(schema, R"({"v": 12})"), "");
  EXPECT_EQ(error_of(R"({"oneOf": [{"type": "integer"}, {"minimum": 1}]})", "3"),
            "conf: value should match only one schema, but matches both schemas 1 and 2");
  // A failure inside a branch that is an object is not reported either: only the value's.
  EXPECT_EQ(error_of(R"({"oneOf": [{"required": ["a"]}, {"required": ["b"]}]})", R"({"a": 1, "b": 2})"),
            "conf: value should match only one schema, but matches both schemas 1 and 2");
}

TEST(SchemaCombinators, AnyOfNamesTheRequiredLists) {
  const char* schema = R"({"anyOf": [{"required": ["key"]}, {"required": ["secret", "user"]}]})";
  EXPECT_EQ(error_of(schema, R"({"other": 1})"),
            R"(conf: object matches none of the required: ["key"] or ["secret","user"])");
  EXPECT_EQ(error_of(schema, R"({"key": 1})"), "");
  EXPECT_EQ(error_of(R"({"anyOf": [{"type": "string"}, {"type": "integer"}]})", "true"),
            "conf: object matches none of the required");
}

TEST(SchemaCombinators, AllOfNotIfThenElse) {
  const char* all = R"({"allOf": [{"properties": {"a": {"type": "string"}}}, {"required": ["b"]}]})";
  EXPECT_EQ(run(all, R"({"a": 1})").errors,
            (std::vector<std::string>{"conf.a: wrong type: expected string, got number",
                                      "conf.b: property \"b\" is required"}));
  EXPECT_EQ(error_of(R"({"not": {"type": "string"}})", R"("s")"),
            "conf: value wasn't supposed to match schema");
  EXPECT_EQ(error_of(R"({"not": {"type": "string"}})", "1"), "");
  const char* cond = R"({"if": {"properties": {"type": {"const": "redis"}}},
                         "then": {"required": ["host"]}, "else": {"required": ["path"]}})";
  EXPECT_EQ(error_of(cond, R"({"type": "redis"})"), "conf.host: property \"host\" is required");
  EXPECT_EQ(error_of(cond, R"({"type": "local"})"), "conf.path: property \"path\" is required");
  EXPECT_EQ(error_of(cond, R"({"type": "redis", "host": "h"})"), "");
}

TEST(SchemaCombinators, AValueWithItsOwnErrorsIsNotJudgedAsAWhole) {
  // "wrong type" at conf.a already explains the failure; "matches none" for conf would add nothing.
  EXPECT_EQ(run(R"({"properties": {"a": {"type": "string"}}, "anyOf": [{"required": ["b"]}]})", R"({"a": 1})")
                .errors,
            std::vector<std::string>{"conf.a: wrong type: expected string, got number"});
}

TEST(SchemaDefaults, FilledInPresentObjectsAtEveryDepth) {
  const char* schema = R"({"type": "object", "properties": {
      "header": {"type": "string", "default": "apikey"},
      "hide": {"type": "boolean", "default": false},
      "none": {"type": "string", "default": null},
      "policy": {"type": "object", "properties": {"ttl": {"type": "integer", "default": 60},
                                                  "redis": {"type": "object", "default": {"port": 6379},
                                                            "properties": {"db": {"default": 0}}}}},
      "absent": {"type": "object", "properties": {"x": {"default": 1}}},
      "list": {"type": "array", "items": {"type": "object", "properties": {"w": {"default": 1}}}}}})";
  Outcome out = run(schema, R"({"header": "X-Key", "policy": {}, "list": [{}, {"w": 5}]})");
  ASSERT_TRUE(out.ok);
  EXPECT_EQ(out.value, json::parse(R"({"header": "X-Key", "hide": false,
                                       "policy": {"ttl": 60, "redis": {"port": 6379}},
                                       "list": [{"w": 1}, {"w": 5}]})"));
  // A null default is never filled (APISIX's validator skips it), an absent object gets no defaults, and an
  // inserted default is taken as written ("redis" above has no "db").
}

TEST(SchemaDefaults, RequiredWinsOverDefaultAndInvalidValuesAreLeftAlone) {
  EXPECT_EQ(error_of(R"({"properties": {"k": {"default": "x"}}, "required": ["k"]})", "{}"),
            "conf.k: property \"k\" is required");
  Outcome out = run(R"({"properties": {"a": {"default": 1}, "b": {"type": "string"}}})", R"({"b": 2})");
  EXPECT_FALSE(out.ok);
  EXPECT_EQ(out.value, json::parse(R"({"b": 2})"));
}

TEST(SchemaDefaults, OnlyTheMatchingBranchFills) {
  const char* schema = R"({"oneOf": [
      {"properties": {"mode": {"const": "a"}, "x": {"default": "from a"}}, "required": ["mode"]},
      {"properties": {"mode": {"const": "b"}, "y": {"default": "from b"}}, "required": ["mode"]}]})";
  EXPECT_EQ(run(schema, R"({"mode": "b"})").value, json::parse(R"({"mode": "b", "y": "from b"})"));
  const char* any = R"({"anyOf": [{"required": ["k"], "properties": {"p": {"default": 1}}},
                                  {"properties": {"q": {"default": 2}}}]})";
  EXPECT_EQ(run(any, R"({"k": 0})").value, json::parse(R"({"k": 0, "p": 1})"));
  EXPECT_EQ(run(any, R"({})").value, json::parse(R"({"q": 2})"));
  const char* cond = R"({"if": {"required": ["redis"]}, "then": {"properties": {"port": {"default": 6379}}},
                         "else": {"properties": {"path": {"default": "/tmp"}}}})";
  EXPECT_EQ(run(cond, R"({"redis": true})").value, json::parse(R"({"redis": true, "port": 6379})"));
  EXPECT_EQ(run(cond, R"({})").value, json::parse(R"({"path": "/tmp"})"));
}

TEST(SchemaDefaults, CountAsPresentForCountsAndDependencies) {
  // APISIX fills defaults before counting properties: proxy-rewrite accepts {} (its default makes one).
  EXPECT_TRUE(run(R"({"properties": {"flag": {"default": false}}, "minProperties": 1})", "{}").ok);
  // A dependency is triggered by what was written, and satisfied by a default.
  const char* triggered = R"({"properties": {"a": {"default": 1}}, "dependencies": {"a": ["b"]}})";
  EXPECT_EQ(error_of(triggered, "{}"), "");
  EXPECT_EQ(error_of(triggered, R"({"a": 2})"), "conf.b: property \"b\" is required when \"a\" is set");
  EXPECT_EQ(error_of(R"({"properties": {"b": {"default": 1}}, "dependencies": {"a": ["b"]}})", R"({"a": 2})"),
            "");
}

TEST(SchemaPaths, PrefixesAndThePathOverload) {
  auto schema = Schema::parse(R"({"properties": {"algorithm": {"enum": ["HS256"]}}})");
  json value = json::parse(R"({"algorithm": "none"})");
  Errors errors;
  const detail::Path root("routes[2]");
  const detail::Path plugins = root.key("plugins");
  const detail::Path jwt = plugins.key("jwt-auth");
  EXPECT_FALSE(schema->validate(value, jwt, errors));
  ASSERT_EQ(errors.list().size(), 1u);
  EXPECT_EQ(errors.list()[0].path, "routes[2].plugins.jwt-auth.algorithm");
  EXPECT_EQ(run(*schema, value, "").errors,
            std::vector<std::string>{"algorithm: matches none of the enum values"});
  EXPECT_EQ(run(*schema, json::parse(R"({"algorithm": 1})"), "").errors.size(), 1u);
}

TEST(SchemaParse, RejectsUnsupportedKeywordsNamingThem) {
  EXPECT_EQ(parse_error(R"({"properties": {"a": {"$ref": "#/definitions/x"}}})"),
            "schema: properties.a: unsupported keyword \"$ref\"");
  EXPECT_EQ(parse_error(R"({"oneOf": [{"contains": {}}]})"),
            "schema: oneOf[0]: unsupported keyword \"contains\"");
  EXPECT_EQ(parse_error(R"({"typo": 1})"), "schema: unsupported keyword \"typo\"");
}

TEST(SchemaParse, RejectsMalformedSchemas) {
  EXPECT_EQ(parse_error(R"({"type": "str"})"), "schema: type: unknown type \"str\"");
  EXPECT_EQ(parse_error(R"({"properties": {"a": {"minLength": -1}}})"),
            "schema: properties.a.minLength: must be a non-negative integer, got -1");
  EXPECT_NE(parse_error(R"({"exclusiveMinimum": true})").find("draft-4 boolean form"), std::string::npos);
  EXPECT_NE(parse_error(R"({"pattern": "(a"})").find("schema: pattern: invalid regular expression \"(a\""),
            std::string::npos);
  EXPECT_NE(parse_error(R"({"patternProperties": {"[": {}}})"), "");
  EXPECT_EQ(parse_error(R"({"then": {}})"), "schema: \"then\" or \"else\" without \"if\"");
  EXPECT_EQ(parse_error(R"({"oneOf": []})"), "schema: oneOf: must be a non-empty list of schemas");
  EXPECT_EQ(parse_error(R"({"properties": {"a": 1}})"),
            "schema: properties.a: a schema must be an object or a boolean, got 1");
  EXPECT_NE(parse_error(R"({"type": "string", "type": "integer"})").find("duplicate key"), std::string::npos);
  EXPECT_NE(parse_error(R"({"type": )"), "");
}

TEST(SchemaParse, IgnoresAnnotationsAndKeepsTheDocument) {
  const char* text = R"({"type": "object", "title": "t", "description": "d", "$comment": "c",
                         "encrypt_fields": ["key"], "_meta": {"x": 1}, "examples": [1],
                         "properties": {"key": {"type": "string", "description": "the key"}}})";
  auto schema = Schema::parse(text);
  EXPECT_EQ(schema->document(), json::parse(text));
  EXPECT_TRUE(run(*schema, json::parse(R"({"key": "k"})")).ok);
  EXPECT_FALSE(run(*Schema::parse("false"), json(1)).ok);
  EXPECT_TRUE(run(*Schema::parse("true"), json(1)).ok);
  EXPECT_EQ(error_of(R"({"properties": {"a": false}})", R"({"a": 1})"), "conf.a: expect false always");
}

// apisix/plugins/key-auth.lua (3.x), as JSON.
constexpr const char* kKeyAuthSchema = R"({"type": "object", "properties": {
    "header": {"type": "string", "default": "apikey"},
    "query": {"type": "string", "default": "apikey"},
    "hide_credentials": {"type": "boolean", "default": false}}})";
constexpr const char* kKeyAuthConsumerSchema =
    R"({"type": "object", "properties": {"key": {"type": "string"}},
    "encrypt_fields": ["key"], "required": ["key"]})";

TEST(SchemaApisix, KeyAuth) {
  Outcome route = run(kKeyAuthSchema, "{}", "routes[0].plugins.key-auth");
  EXPECT_EQ(route.value,
            json::parse(R"({"header": "apikey", "query": "apikey", "hide_credentials": false})"));
  EXPECT_EQ(
      run(kKeyAuthSchema, R"({"header": 1})", "routes[0].plugins.key-auth").errors,
      std::vector<std::string>{"routes[0].plugins.key-auth.header: wrong type: expected string, got number"});
  EXPECT_EQ(run(kKeyAuthConsumerSchema, "{}", "consumers[0].plugins.key-auth").errors,
            std::vector<std::string>{"consumers[0].plugins.key-auth.key: property \"key\" is required"});
  EXPECT_TRUE(run(kKeyAuthConsumerSchema, R"({"key": "auth-one"})").ok);
}

// apisix/plugins/proxy-rewrite.lua (3.x), as JSON. The method enum is APISIX's list.
constexpr const char* kProxyRewriteSchema = R"({
  "type": "object",
  "properties": {
    "uri": {"description": "new uri for upstream", "type": "string", "minLength": 1, "maxLength": 4096,
            "pattern": "^\\/.*"},
    "method": {"description": "proxy route method", "type": "string",
               "enum": ["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE",
                        "PROPFIND", "LOCK", "UNLOCK", "PATCH", "TRACE"]},
    "regex_uri": {"type": "array", "minItems": 2, "items": {"description": "regex uri", "type": "string"}},
    "host": {"type": "string", "pattern": "^[0-9a-zA-Z-.]+(:\\d{1,5})?$"},
    "headers": {
      "description": "new headers for request",
      "oneOf": [
        {"type": "object", "minProperties": 1, "additionalProperties": false,
         "properties": {
           "add": {"type": "object", "minProperties": 1,
                   "patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}}},
           "set": {"type": "object", "minProperties": 1,
                   "patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}}},
           "remove": {"type": "array", "minItems": 1, "items": {"type": "string", "pattern": "^[^:]+$"}}}},
        {"type": "object", "minProperties": 1,
         "patternProperties": {"^[^:]+$": {"oneOf": [{"type": "string"}, {"type": "number"}]}}}]},
    "use_real_request_uri_unsafe": {"type": "boolean", "default": false}
  },
  "minProperties": 1
})";

TEST(SchemaApisix, ProxyRewriteAcceptsWhatApisixAccepts) {
  auto schema = Schema::parse(kProxyRewriteSchema);
  Outcome out = run(*schema, json::parse(R"({"uri": "/test/home.html", "host": "iresty.com:8080",
                                             "headers": {"X-Api-Version": "v2", "X-Retry": 3}})"));
  ASSERT_TRUE(out.ok) << testing::PrintToString(out.errors);
  EXPECT_EQ(out.value["use_real_request_uri_unsafe"], false);
  EXPECT_TRUE(run(*schema, json::parse(R"j({"headers": {"add": {"X-A": "1"}, "remove": ["X-B"]},
                                             "method": "POST", "regex_uri": ["^/a/(.*)", "/b/$1"]})j"))
                  .ok);
  EXPECT_TRUE(run(*schema, json::parse("{}")).ok);  // the default counts for minProperties, as in APISIX
}

TEST(SchemaApisix, ProxyRewriteRefusesWhatApisixRefuses) {
  auto schema = Schema::parse(kProxyRewriteSchema);
  const std::string p = "routes[1].plugins.proxy-rewrite";
  const auto error = [&](const char* conf) {
    Outcome out = run(*schema, json::parse(conf), p);
    return out.errors.size() == 1 ? out.errors[0] : testing::PrintToString(out.errors);
  };
  EXPECT_EQ(error(R"({"uri": "test"})"), p + ".uri: failed to match pattern \"^\\\\/.*\" with \"test\"");
  EXPECT_EQ(error(R"({"uri": ""})"), p + ".uri: string too short, expected at least 1, got 0");
  EXPECT_EQ(error(R"({"method": "FOO"})"), p + ".method: matches none of the enum values");
  EXPECT_EQ(error(R"({"regex_uri": ["^/a"]})"), p + ".regex_uri: expect array to have at least 2 items");
  EXPECT_EQ(error(R"({"host": "a b"})"),
            p + ".host: failed to match pattern \"^[0-9a-zA-Z-.]+(:\\\\d{1,5})?$\" with \"a b\"");
  EXPECT_EQ(error(R"({"headers": {"X-Api": {}}})"),
            p + ".headers: value should match only one schema, but matches none");
  EXPECT_EQ(error(R"({"headers": {}})"),
            p + ".headers: value should match only one schema, but matches none");
  EXPECT_EQ(error(R"({"use_real_request_uri_unsafe": "yes"})"),
            p + ".use_real_request_uri_unsafe: wrong type: expected boolean, got string");
}

// oneOf nested as deep as a schema can nest (64 JSON levels, 4 per oneOf level), each level filling a
// default under the branch that matched and reporting one error for a failure at the bottom.
TEST(SchemaCost, NestedOneOfAsDeepAsASchemaCanNest) {
  constexpr int kDepth = 15;
  std::string schema = R"({"type": "object", "properties": {"leaf": {"default": "filled"}}})";
  for (int i = 0; i < kDepth; ++i) {
    schema = R"({"oneOf": [{"type": "object", "required": ["n"], "properties": {"n": )" + schema +
             R"(}}, {"type": "string"}, {"type": "integer"}]})";
  }
  json value = json::object();
  for (int i = 0; i < kDepth; ++i) value = json{{"n", std::move(value)}};
  auto compiled = Schema::parse(schema);
  Outcome out = run(*compiled, value);
  ASSERT_TRUE(out.ok) << testing::PrintToString(out.errors);
  const json* leaf = &out.value;
  for (int i = 0; i < kDepth; ++i) leaf = &(*leaf)["n"];
  EXPECT_EQ(*leaf, json::parse(R"({"leaf": "filled"})"));
  // The failure deep down is reported once, at the outermost value whose oneOf no branch matches.
  json bad = value;
  json* inner = &bad;
  for (int i = 0; i < kDepth; ++i) inner = &(*inner)["n"];
  *inner = true;
  EXPECT_EQ(run(*compiled, bad).errors,
            std::vector<std::string>{"conf: value should match only one schema, but matches none"});
}

}  // namespace
}  // namespace portico::config
