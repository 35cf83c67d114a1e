// The strict JSON entry point (config/json_input.h) and the nesting bound it shares with the file loader:
// duplicate keys, depth (parsed iteratively, never built deeper than kMaxNesting), YAML aliases, error paths.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "config/json_input.h"
#include "config/loader.h"

namespace portico::config {
namespace {

using nlohmann::json;

std::string nested_lists(size_t depth, std::string_view inner = "1") {
  return std::string(depth, '[') + std::string(inner) + std::string(depth, ']');
}

// An upstream whose node metadata nests so that the whole resource is `depth` levels deep: upstream (1),
// nodes (2), node (3), metadata (4), then lists.
std::string upstream_of_depth(size_t depth) {
  return R"({"id": "u1", "nodes": [{"host": "10.0.0.1", "port": 80, "weight": 1, "metadata": {"m": )" +
         nested_lists(depth - 4) + "}}]}";
}

TEST(ParseJson, AcceptsAValueAndKeepsItsShape) {
  Errors errors;
  std::optional<json> v =
      parse_json(R"({"uri": "/a", "labels": {"a": "1"}, "n": [1, 2.5, null, true]})", errors);
  ASSERT_TRUE(v) << errors.list().front().reason;
  EXPECT_EQ(errors.total(), 0u);
  EXPECT_EQ((*v)["labels"]["a"], "1");
  EXPECT_EQ((*v)["n"][1], 2.5);
  std::optional<json> scalar = parse_json("  42 ", errors);
  ASSERT_TRUE(scalar);
  EXPECT_EQ(*scalar, 42);
}

// nlohmann's lexer ends the input at a NUL byte: `{"uri":"/a"}<NUL>{...}` parsed as its prefix (found by
// fuzz_json_input with "3<NUL>...").
TEST(ParseJson, RefusesANulByteInsteadOfEndingThere) {
  for (std::string text : {std::string("3\0,{\"a\":1}", 9), std::string("{\"uri\":\"/a\"}\0junk", 17),
                           std::string("{\"uri\":\"/\0a\"}", 12)}) {
    Errors errors;
    EXPECT_FALSE(parse_json(text, errors, "routes/r1")) << text.size();
    ASSERT_EQ(errors.total(), 1u);
    EXPECT_EQ(errors.list().front().path, "routes/r1");
    EXPECT_NE(errors.list().front().reason.find("NUL byte"), std::string::npos)
        << errors.list().front().reason;
  }
}

TEST(ParseJson, RefusesDuplicateKeysAtTheirPath) {
  Errors errors;
  EXPECT_FALSE(parse_json(R"({"uri": "/a", "labels": {"a": "1", "a": "2"}})", errors));
  ASSERT_EQ(errors.list().size(), 1u);
  EXPECT_EQ(errors.list()[0].path, "labels.a");
  EXPECT_EQ(errors.list()[0].reason, "duplicate key \"a\"");
  Errors top;
  EXPECT_FALSE(parse_json(R"({"uri": "/a", "uri": "/b"})", top, "routes/r1"));
  ASSERT_EQ(top.list().size(), 1u);
  EXPECT_EQ(top.list()[0].path, "routes/r1.uri");
}

TEST(ParseJson, SyntaxErrorsGiveLineAndColumn) {
  Errors errors;
  EXPECT_FALSE(parse_json("{\"uri\": \"/a\",\n  }", errors));
  ASSERT_EQ(errors.list().size(), 1u);
  EXPECT_EQ(errors.list()[0].path, "");
  EXPECT_EQ(errors.list()[0].reason.rfind("invalid JSON at line 2, column 3", 0), 0u)
      << errors.list()[0].reason;
  Errors empty;
  EXPECT_FALSE(parse_json("", empty));
  EXPECT_EQ(empty.total(), 1u);
  Errors prefixed;
  EXPECT_FALSE(parse_json("[", prefixed, "routes/r1"));
  ASSERT_EQ(prefixed.list().size(), 1u);
  EXPECT_EQ(prefixed.list()[0].path, "routes/r1");
}

TEST(ParseJson, NestingUpToTheBoundIsAcceptedOneMoreIsRefused) {
  Errors ok;
  std::optional<json> at_bound = parse_json(nested_lists(kMaxNesting), ok);
  ASSERT_TRUE(at_bound);
  EXPECT_FALSE(nested_deeper_than(*at_bound, kMaxNesting));
  EXPECT_TRUE(nested_deeper_than(*at_bound, kMaxNesting - 1));

  Errors errors;
  EXPECT_FALSE(parse_json(R"({"labels": )" + nested_lists(kMaxNesting) + "}", errors));
  ASSERT_EQ(errors.list().size(), 1u);
  EXPECT_EQ(errors.list()[0].reason, "nested deeper than 64 levels");
  // The path names the slot of the first container too deep: labels, then 63 list levels.
  std::string path = "labels";
  for (size_t i = 0; i + 1 < kMaxNesting; ++i) path += "[0]";
  EXPECT_EQ(errors.list()[0].path, path);
}

// The issue's body: ~390 KiB nesting 200k arrays. Before the bound, the tree was built and copying or dumping
// it overflowed the stack (SIGSEGV). Now nothing deeper than the bound is built.
TEST(ParseJson, AdversarialDepthIsRefusedWithoutBuildingIt) {
  const size_t depth = 200000;
  for (const std::string& text :
       {R"({"uri":"/deep","labels":)" + nested_lists(depth) + "}",
        R"({"a":)" + std::string(depth, '{') + std::string(depth, '}') + "}", std::string(depth, '[')}) {
    Errors errors;
    EXPECT_FALSE(parse_json(text, errors));
    ASSERT_GE(errors.total(), 1u);
  }
  Errors objects;
  std::string deep_objects;
  for (size_t i = 0; i < depth; ++i) deep_objects += R"({"a":)";
  deep_objects += "1" + std::string(depth, '}');
  EXPECT_FALSE(parse_json(deep_objects, objects));
  ASSERT_EQ(objects.list().size(), 1u);
  EXPECT_EQ(objects.list()[0].reason, "nested deeper than 64 levels");
}

TEST(ParseJson, NestedDeeperThanCountsContainersOnly) {
  EXPECT_FALSE(nested_deeper_than(json(1), 0));
  EXPECT_TRUE(nested_deeper_than(json::array(), 0));
  EXPECT_FALSE(nested_deeper_than(json::parse(R"({"a": [1, {"b": 2}]})"), 3));
  EXPECT_TRUE(nested_deeper_than(json::parse(R"({"a": [1, {"b": []}]})"), 3));
}

// The file loader applies the bound to each resource, counting from the resource: a resource is accepted or
// refused the same way in a file (JSON or YAML) as in an Admin API body.
TEST(NestingBound, SameForTheLoaderAndTheAdminApi) {
  Errors errors;
  ASSERT_TRUE(parse_json(upstream_of_depth(kMaxNesting), errors));
  EXPECT_TRUE(validate_upstream(*parse_json(upstream_of_depth(kMaxNesting), errors), "", errors));
  EXPECT_EQ(errors.total(), 0u);
  EXPECT_FALSE(parse_json(upstream_of_depth(kMaxNesting + 1), errors));

  LoadResult at_bound =
      parse_text(R"({"upstreams": [)" + upstream_of_depth(kMaxNesting) + "]}", Format::json);
  EXPECT_TRUE(at_bound.ok) << at_bound.describe();
  LoadResult over =
      parse_text(R"({"upstreams": [)" + upstream_of_depth(kMaxNesting + 1) + "]}", Format::json);
  ASSERT_FALSE(over.ok);
  ASSERT_EQ(over.errors.size(), 1u) << over.describe();
  EXPECT_EQ(over.errors[0].reason, "nested deeper than 64 levels");
  EXPECT_EQ(over.errors[0].path.rfind("upstreams[0].nodes[0].metadata.m", 0), 0u) << over.errors[0].path;

  LoadResult yaml =
      parse_text("upstreams:\n  - " + upstream_of_depth(kMaxNesting + 1) + "\n#END\n", Format::yaml);
  ASSERT_FALSE(yaml.ok);
  EXPECT_EQ(yaml.errors[0].reason, "nested deeper than 64 levels") << yaml.describe();
  LoadResult yaml_ok =
      parse_text("upstreams:\n  - " + upstream_of_depth(kMaxNesting) + "\n#END\n", Format::yaml);
  EXPECT_TRUE(yaml_ok.ok) << yaml_ok.describe();
}

TEST(NestingBound, DeepFilesAreRefusedNotCrashed) {
  const std::string deep = nested_lists(200000);
  LoadResult json_file = parse_text(R"({"routes": [{"id": "r1", "labels": )" + deep + "}]}", Format::json);
  EXPECT_FALSE(json_file.ok);
  LoadResult yaml_file = parse_text("routes:\n  - id: r1\n    labels: " + deep + "\n#END\n", Format::yaml);
  EXPECT_FALSE(yaml_file.ok);
}

// Aliases copy finished trees: a chain of anchors, each nesting the previous one a few levels down, would
// build any depth from a small file unless the alias counts the aliased tree's height.
TEST(NestingBound, YamlAliasesCannotChainPastTheBound) {
  std::string text = "x0: &a0 [[[[[[[[[[1]]]]]]]]]]\n";
  for (int i = 1; i <= 20; ++i) {
    const std::string n = std::to_string(i), previous = std::to_string(i - 1);
    text.append("x").append(n).append(": &a").append(n).append(" [[[[[[[[[[*a").append(previous);
    text.append("]]]]]]]]]]\n");
  }
  text += "#END\n";
  LoadResult r = parse_text(text, Format::yaml);
  ASSERT_FALSE(r.ok);
  bool through_alias = false;
  for (const FieldError& e : r.errors) {
    through_alias = through_alias || e.reason == "nested deeper than 64 levels (through an alias)";
  }
  EXPECT_TRUE(through_alias) << r.describe();

  // Within the bound an alias is fine.
  LoadResult ok = parse_text(
      "upstreams:\n  - id: u1\n    nodes: &n {\"10.0.0.1:80\": 1}\n  - id: u2\n    nodes: *n\n#END\n",
      Format::yaml);
  EXPECT_TRUE(ok.ok) << ok.describe();
}

}  // namespace
}  // namespace portico::config
