// Every validation error with its exact path (table-driven), plus the single-resource API of validate.h.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>

#include "config/loader.h"
#include "config/validate.h"

namespace portico::config {
namespace {

using nlohmann::json;

// Documents around one resource, with what it needs to be valid otherwise.
std::string route_doc(const std::string& route) {
  return R"({"upstreams": [{"id": "u1", "nodes": {"10.0.0.1:80": 1}}], "routes": [)" + route + "]}";
}
std::string upstream_doc(const std::string& upstream) {
  return R"({"upstreams": [)" + upstream + "]}";
}
std::string service_doc(const std::string& service) {
  return R"({"upstreams": [{"id": "u1", "nodes": {"10.0.0.1:80": 1}}], "services": [)" + service + "]}";
}
// A route with `fields` added to a valid base.
std::string route_with(const std::string& fields) {
  return route_doc(R"({"id": "r1", "uri": "/a", "upstream_id": "u1", )" + fields + "}");
}
std::string upstream_with(const std::string& fields) {
  return upstream_doc(R"({"id": "u1", "nodes": {"10.0.0.1:80": 1}, )" + fields + "}");
}
std::string checks_with(const std::string& checks) {
  return upstream_with(R"("checks": )" + checks);
}

struct Case {
  const char* name;
  std::string document;  // JSON
  std::string path;
  std::string reason;  // a substring of the expected reason
};

std::ostream& operator<<(std::ostream& os, const Case& c) {
  return os << c.name;
}

class ValidationError : public ::testing::TestWithParam<Case> {};

TEST_P(ValidationError, ReportsExactlyOneErrorAtThePath) {
  const Case& c = GetParam();
  LoadResult r = parse_text(c.document, Format::json);
  ASSERT_FALSE(r.ok) << c.document;
  ASSERT_EQ(r.errors.size(), 1u) << r.describe();
  EXPECT_EQ(r.errors[0].path, c.path) << r.describe();
  EXPECT_NE(r.errors[0].reason.find(c.reason), std::string::npos)
      << "reason: " << r.errors[0].reason << "\nexpected to contain: " << c.reason;
}

const Case kRouteCases[] = {
    {"route_not_mapping", route_doc(R"("r1")"), "routes[0]", "wrong type: expected object, got string"},
    {"id_missing", route_doc(R"({"uri": "/a", "upstream_id": "u1"})"), "routes[0].id", "is required"},
    {"id_bad_chars", route_doc(R"({"id": "a b", "uri": "/a", "upstream_id": "u1"})"), "routes[0].id",
     "failed to match pattern \"^(?!\\\\.\\\\.?\\\\z)[a-zA-Z0-9_.-]+\\\\z\" with \"a b\""},
    {"id_zero", route_doc(R"({"id": 0, "uri": "/a", "upstream_id": "u1"})"), "routes[0].id",
     "expected 0 to be at least 1"},
    {"id_float", route_doc(R"({"id": 1.5, "uri": "/a", "upstream_id": "u1"})"), "routes[0].id",
     "wrong type: expected one of string, integer, got number"},
    {"id_too_long",
     route_doc(R"({"id": ")" + std::string(65, 'a') + R"(", "uri": "/a", "upstream_id": "u1"})"),
     "routes[0].id", "string too long, expected at most 64, got 65"},
    {"uri_missing", route_doc(R"({"id": "r1", "upstream_id": "u1"})"), "routes[0].uri",
     "is required (set uri or uris)"},
    {"uri_and_uris", route_with(R"("uris": ["/b"])"), "routes[0].uris", "set either uri or uris, not both"},
    {"uri_no_slash", route_doc(R"({"id": "r1", "uri": "a", "upstream_id": "u1"})"), "routes[0].uri",
     "must start with '/'"},
    {"uri_not_string", route_doc(R"({"id": "r1", "uri": 5, "upstream_id": "u1"})"), "routes[0].uri",
     "wrong type: expected string, got number"},
    {"uri_empty", route_doc(R"({"id": "r1", "uri": "", "upstream_id": "u1"})"), "routes[0].uri",
     "string too short, expected at least 1, got 0"},
    {"uris_empty", route_doc(R"({"id": "r1", "uris": [], "upstream_id": "u1"})"), "routes[0].uris",
     "expect array to have at least 1 items"},
    {"uris_item", route_doc(R"({"id": "r1", "uris": ["/a", "b"], "upstream_id": "u1"})"), "routes[0].uris[1]",
     "must start with '/'"},
    {"uris_duplicate", route_doc(R"({"id": "r1", "uris": ["/a", "/a"], "upstream_id": "u1"})"),
     "routes[0].uris[1]", "duplicate \"/a\" (already at index 0)"},
    {"uri_star_middle", route_doc(R"({"id": "r1", "uri": "/a/*/b", "upstream_id": "u1"})"), "routes[0].uri",
     "'*' is only allowed as the last segment"},
    {"uri_star_suffix", route_doc(R"({"id": "r1", "uri": "/a*", "upstream_id": "u1"})"), "routes[0].uri",
     "'*' must be a whole segment"},
    {"uri_colon_mid_segment", route_doc(R"({"id": "r1", "uri": "/users/x:id", "upstream_id": "u1"})"),
     "routes[0].uri", "':' may only start a parameter segment"},
    {"uri_param_no_name", route_doc(R"({"id": "r1", "uri": "/users/:", "upstream_id": "u1"})"),
     "routes[0].uri", "a parameter must be a whole segment"},
    {"uri_param_partial", route_doc(R"({"id": "r1", "uri": "/users/:id.json", "upstream_id": "u1"})"),
     "routes[0].uri", "a parameter must be a whole segment \":name\""},
    {"uri_param_twice", route_doc(R"({"id": "r1", "uri": "/a/:id/b/:id", "upstream_id": "u1"})"),
     "routes[0].uri", "parameter \":id\" appears twice"},
    {"uri_dot_segment", route_doc(R"({"id": "r1", "uri": "/a/../b", "upstream_id": "u1"})"), "routes[0].uri",
     "'.' or '..' segments"},
    {"uri_query", route_doc(R"({"id": "r1", "uri": "/a?b=1", "upstream_id": "u1"})"), "routes[0].uri",
     "without a query"},
    {"uri_space", route_doc(R"({"id": "r1", "uri": "/a b", "upstream_id": "u1"})"), "routes[0].uri",
     "spaces or control characters"},
    {"host_bad", route_with(R"("host": "bad!host")"), "routes[0].host", "must be a host name"},
    {"host_port", route_with(R"("host": "a.com:8080")"), "routes[0].host", "must not contain a port"},
    {"host_star_middle", route_with(R"("host": "a.*.com")"), "routes[0].host",
     "'*' is only allowed as the leading label"},
    {"host_ipv6_bare", route_with(R"("host": "::1")"), "routes[0].host", "in brackets, e.g. \"[::1]\""},
    {"host_ipv6_bracket_bad", route_with(R"("host": "[zz]")"), "routes[0].host", "IPv6 address in brackets"},
    {"host_bad_ipv4", route_with(R"("host": "10.0.0.300")"), "routes[0].host", "is not a valid IPv4 address"},
    {"host_trailing_dot", route_with(R"("host": "a.com.")"), "routes[0].host", "must not end with '.'"},
    {"host_empty_label", route_with(R"("host": "a..com")"), "routes[0].host", "empty label"},
    {"host_dash", route_with(R"("host": "-a.com")"), "routes[0].host", "must not start or end with '-'"},
    {"host_and_hosts", route_with(R"("host": "a.com", "hosts": ["b.com"])"), "routes[0].hosts", "not both"},
    {"hosts_empty", route_with(R"("hosts": [])"), "routes[0].hosts", "expect array to have at least 1 items"},
    {"hosts_duplicate_case", route_with(R"("hosts": ["a.com", "A.COM"])"), "routes[0].hosts[1]",
     "duplicate \"a.com\""},
    {"hosts_not_list", route_with(R"("hosts": "a.com")"), "routes[0].hosts",
     "wrong type: expected array, got string"},
    {"methods_lower", route_with(R"("methods": ["get"])"), "routes[0].methods[0]",
     "matches none of the enum values"},
    {"methods_unknown", route_with(R"("methods": ["GET", "FETCH"])"), "routes[0].methods[1]",
     "matches none of the enum values"},
    {"methods_not_list", route_with(R"("methods": "GET")"), "routes[0].methods",
     "wrong type: expected array, got string"},
    {"methods_duplicate", route_with(R"("methods": ["GET", "GET"])"), "routes[0].methods[1]", "duplicate"},
    {"remote_addr_bad", route_with(R"("remote_addr": "10.0.0.300")"), "routes[0].remote_addr",
     "IPv4 or IPv6 address or CIDR"},
    {"remote_addrs_prefix_v4", route_with(R"("remote_addrs": ["10.0.0.0/33"])"), "routes[0].remote_addrs[0]",
     "prefix length must be from 0 to 32"},
    {"remote_addrs_prefix_v6", route_with(R"("remote_addrs": ["::1", "fd00::/129"])"),
     "routes[0].remote_addrs[1]", "from 0 to 128"},
    {"remote_addrs_prefix_text", route_with(R"("remote_addrs": ["10.0.0.0/x"])"), "routes[0].remote_addrs[0]",
     "prefix length"},
    {"remote_addr_and_addrs", route_with(R"("remote_addr": "::1", "remote_addrs": ["::1"])"),
     "routes[0].remote_addrs", "not both"},
    {"vars_not_list", route_with(R"("vars": {"a": 1})"), "routes[0].vars",
     "wrong type: expected array, got object"},
    {"vars_expr_not_list", route_with(R"("vars": ["arg_a"])"), "routes[0].vars[0]", "must be a list [var"},
    {"vars_bad_op", route_with(R"("vars": [["arg_a", "=", "b"]])"), "routes[0].vars[0][1]",
     "an operator: =="},
    {"vars_short", route_with(R"("vars": [["arg_a", "=="]])"), "routes[0].vars[0]", "must have 3 items"},
    {"vars_long", route_with(R"("vars": [["arg_a", "!", "==", "b", "c"]])"), "routes[0].vars[0]", "got 5"},
    {"vars_bad_negation", route_with(R"("vars": [["arg_a", "not", "==", "b"]])"), "routes[0].vars[0][1]",
     "\"!\" (negation)"},
    {"vars_var_not_string", route_with(R"("vars": [[1, "==", "b"]])"), "routes[0].vars[0][0]",
     "must be a string"},
    {"vars_in_needs_list", route_with(R"("vars": [["arg_a", "in", "b"]])"), "routes[0].vars[0][2]",
     "a non-empty list of strings or numbers"},
    {"vars_in_item", route_with(R"("vars": [["arg_a", "!", "in", ["b", {}]]])"), "routes[0].vars[0][3][1]",
     "a string or a number"},
    {"vars_regex_invalid", route_with(R"("vars": [["uri", "~~", "(unclosed"]])"), "routes[0].vars[0][2]",
     "invalid regular expression at offset 9"},
    {"vars_regex_nocase_invalid", route_with(R"("vars": [["uri", "~*", "[a-"]])"), "routes[0].vars[0][2]",
     "invalid regular expression"},
    {"vars_compare_not_number", route_with(R"("vars": [["arg_n", ">", "ten"]])"), "routes[0].vars[0][2]",
     "a number (the operator compares numerically)"},
    {"vars_bool_value", route_with(R"("vars": [["arg_n", "==", true]])"), "routes[0].vars[0][2]",
     "a string or a number, got a boolean (true)"},
    {"vars_logical", route_with(R"("vars": [["AND", ["arg_a", "==", "1"]]])"), "routes[0].vars[0]",
     "logical operators (AND, OR) in vars are not supported"},
    {"priority_string", route_with(R"("priority": "1")"), "routes[0].priority",
     "wrong type: expected integer, got string"},
    {"priority_fraction", route_with(R"("priority": 1.5)"), "routes[0].priority",
     "wrong type: expected integer, got number"},
    {"priority_range", route_with(R"("priority": 3000000000)"), "routes[0].priority",
     "expected 3000000000 to be at most 2147483647"},
    {"status_2", route_with(R"("status": 2)"), "routes[0].status", "matches none of the enum values"},
    {"status_bool", route_with(R"("status": true)"), "routes[0].status",
     "wrong type: expected integer, got boolean"},
    {"upstream_and_id", route_with(R"("upstream": {"nodes": {"a:1": 1}})"), "routes[0].upstream_id",
     "set either upstream or upstream_id, not both"},
    {"no_upstream", route_doc(R"({"id": "r1", "uri": "/a"})"), "routes[0]",
     "has no upstream: set upstream, upstream_id, or a service_id"},
    {"timeout_zero", route_with(R"("timeout": {"connect": 0})"), "routes[0].timeout.connect",
     "expected 0 to be greater than 0"},
    {"timeout_negative", route_with(R"("timeout": {"send": -1})"), "routes[0].timeout.send",
     "expected -1 to be greater than 0"},
    {"timeout_string", route_with(R"("timeout": {"read": "5"})"), "routes[0].timeout.read",
     "wrong type: expected number, got string"},
    {"timeout_unknown", route_with(R"("timeout": {"write": 5})"), "routes[0].timeout.write",
     "additional properties forbidden, found write"},
    {"timeout_not_mapping", route_with(R"("timeout": 5)"), "routes[0].timeout",
     "wrong type: expected object, got number"},
    {"plugins_not_mapping", route_with(R"("plugins": [])"), "routes[0].plugins",
     "wrong type: expected object, got array"},
    {"plugin_unsupported", route_with(R"("plugins": {"ua-restriction": {"count": 1}})"),
     "routes[0].plugins.ua-restriction", "plugin 'ua-restriction' is not supported by this version"},
    {"client_control_negative", route_with(R"("plugins": {"client-control": {"max_body_size": -1}})"),
     "routes[0].plugins.client-control.max_body_size", "expected -1 to be at least 0"},
    {"client_control_unknown", route_with(R"("plugins": {"client-control": {"max_size": 1}})"),
     "routes[0].plugins.client-control.max_size", "additional properties forbidden, found max_size"},
    {"client_control_meta", route_with(R"("plugins": {"client-control": {"_meta": {"filter": []}}})"),
     "routes[0].plugins.client-control._meta.filter", "additional properties forbidden, found filter"},
    {"client_control_not_mapping", route_with(R"("plugins": {"client-control": 5})"),
     "routes[0].plugins.client-control", "must be a mapping"},
    {"enable_websocket_string", route_with(R"("enable_websocket": "yes")"), "routes[0].enable_websocket",
     "wrong type: expected boolean, got string"},
    {"unknown_field_typo", route_with(R"("methdos": ["GET"])"), "routes[0].methdos",
     "additional properties forbidden, found methdos"},
    {"unknown_field_far", route_with(R"("strip_path": true)"), "routes[0].strip_path",
     "additional properties forbidden, found strip_path"},
    {"uri_too_long",
     route_doc(R"({"id": "r1", "uri": "/)" + std::string(4096, 'a') + R"(", "upstream_id": "u1"})"),
     "routes[0].uri", "string too long, expected at most 4096, got 4097"},
    {"service_id_float", route_doc(R"({"id": "r1", "uri": "/a", "service_id": 2.0})"), "routes[0].service_id",
     "an integer id must be written without a fraction or an exponent, got 2.0"},
    {"script_id", route_with(R"("script_id": "s")"), "routes[0].script_id",
     "'script_id' is not supported by this version"},
    {"filter_func", route_with(R"("filter_func": "function() end")"), "routes[0].filter_func",
     "'filter_func' is not supported by this version"},
    {"plugin_config_id_dangling", route_with(R"("plugin_config_id": 1)"), "routes[0].plugin_config_id",
     "plugin config \"1\" is not defined in plugin_configs"},
    {"plugin_config_id_bad", route_with(R"("plugin_config_id": "a b")"), "routes[0].plugin_config_id",
     "failed to match pattern \"^(?!\\\\.\\\\.?\\\\z)[a-zA-Z0-9_.-]+\\\\z\" with \"a b\""},
    {"labels_value_empty", route_with(R"("labels": {"team": ""})"), "routes[0].labels.team",
     "string too short, expected at least 1, got 0"},
    {"labels_value_space", route_with(R"("labels": {"team": "a b"})"), "routes[0].labels.team",
     "failed to match pattern \"^\\\\S+\\\\z\" with \"a b\""},
    {"update_time_negative", route_with(R"("update_time": -1)"), "routes[0].update_time",
     "expected -1 to be at least 0"},
    {"name_not_string", route_with(R"("name": 5)"), "routes[0].name",
     "wrong type: expected string, got number"},
    {"desc_not_string", route_with(R"("desc": [])"), "routes[0].desc",
     "wrong type: expected string, got array"},
    {"labels_value", route_with(R"("labels": {"team": 1})"), "routes[0].labels.team",
     "wrong type: expected string, got number"},
    {"labels_not_mapping", route_with(R"("labels": "x")"), "routes[0].labels",
     "wrong type: expected object, got string"},
    {"create_time_string", route_with(R"("create_time": "now")"), "routes[0].create_time",
     "wrong type: expected integer, got string"},
    {"upstream_id_bad", route_doc(R"({"id": "r1", "uri": "/a", "upstream_id": ""})"), "routes[0].upstream_id",
     "string too short, expected at least 1, got 0"},
    {"service_id_bad", route_doc(R"({"id": "r1", "uri": "/a", "service_id": true})"), "routes[0].service_id",
     "wrong type: expected one of string, integer, got boolean"},
    {"inline_upstream_id",
     route_doc(R"({"id": "r1", "uri": "/a", "upstream": {"id": "x", "nodes": {"a:1": 1}}})"),
     "routes[0].upstream.id", "an upstream written inline has no id"},
    {"inline_upstream_node_port",
     route_doc(R"({"id": "r1", "uri": "/a", "upstream": {"nodes": [{"host": "a", "port": 1, "weight": 1},
                                                                   {"host": "b", "port": 0, "weight": 1}]}})"),
     "routes[0].upstream.nodes[1].port", "expected 0 to be at least 1"},
    {"inline_upstream_not_mapping", route_doc(R"({"id": "r1", "uri": "/a", "upstream": "u1"})"),
     "routes[0].upstream", "wrong type: expected object, got string"},
    {"second_route", route_doc(R"({"id": "r1", "uri": "/a", "upstream_id": "u1"},
                                 {"id": "r2", "uri": "/b", "upstream_id": "u1", "hosts": ["x y"]})"),
     "routes[1].hosts[0]", "must be a host name"},
};
INSTANTIATE_TEST_SUITE_P(Routes, ValidationError, ::testing::ValuesIn(kRouteCases),
                         [](const auto& info) { return std::string(info.param.name); });

const Case kUpstreamCases[] = {
    {"not_mapping", upstream_doc("[]"), "upstreams[0]", "wrong type: expected object, got array"},
    {"id_missing", upstream_doc(R"({"nodes": {"a:1": 1}})"), "upstreams[0].id", "is required"},
    {"nodes_missing", upstream_doc(R"({"id": "u1"})"), "upstreams[0].nodes", "is required"},
    {"nodes_empty_map", upstream_doc(R"({"id": "u1", "nodes": {}})"), "upstreams[0].nodes",
     "must contain at least one node"},
    {"nodes_empty_list", upstream_doc(R"({"id": "u1", "nodes": []})"), "upstreams[0].nodes",
     "must contain at least one node"},
    {"nodes_wrong_type", upstream_doc(R"({"id": "u1", "nodes": "a:1"})"), "upstreams[0].nodes",
     "wrong type: expected one of object, array, got string"},
    {"node_port_zero", upstream_doc(R"({"id": "u1", "nodes": {"10.0.0.1:0": 1}})"),
     R"(upstreams[0].nodes["10.0.0.1:0"])", "the port must be an integer from 1 to 65535"},
    {"node_port_big", upstream_doc(R"({"id": "u1", "nodes": {"10.0.0.1:99999": 1}})"),
     R"(upstreams[0].nodes["10.0.0.1:99999"])", "from 1 to 65535"},
    {"node_port_text", upstream_doc(R"({"id": "u1", "nodes": {"a:http": 1}})"),
     R"(upstreams[0].nodes["a:http"])", "the port must be"},
    {"node_ipv6_bare", upstream_doc(R"({"id": "u1", "nodes": {"::1": 1}})"), R"(upstreams[0].nodes["::1"])",
     "write IPv6 addresses in brackets, as in \"[::1]:80\""},
    {"node_bracket_open", upstream_doc(R"({"id": "u1", "nodes": {"[::1:80": 1}})"),
     R"(upstreams[0].nodes["[::1:80"])", "a '[' must enclose an IPv6 address"},
    {"node_bracket_v4", upstream_doc(R"({"id": "u1", "nodes": {"[10.0.0.1]:80": 1}})"),
     R"(upstreams[0].nodes["[10.0.0.1]:80"])", "must be an IPv6 address in brackets"},
    {"node_bracket_junk", upstream_doc(R"({"id": "u1", "nodes": {"[::1]x": 1}})"),
     R"(upstreams[0].nodes["[::1]x"])", "expected ':port' after ']'"},
    {"node_host_bad", upstream_doc(R"({"id": "u1", "nodes": {"bad host:80": 1}})"),
     R"(upstreams[0].nodes["bad host:80"])", "host must be a host name"},
    {"node_weight_negative", upstream_doc(R"({"id": "u1", "nodes": {"a:80": -1}})"),
     R"(upstreams[0].nodes["a:80"])", "expected -1 to be at least 0"},
    {"node_weight_string", upstream_doc(R"({"id": "u1", "nodes": {"a:80": "1"}})"),
     R"(upstreams[0].nodes["a:80"])", "wrong type: expected integer, got string"},
    {"list_node_not_mapping", upstream_doc(R"({"id": "u1", "nodes": ["a:80"]})"), "upstreams[0].nodes[0]",
     "wrong type: expected object, got string"},
    {"list_node_weight_missing", upstream_doc(R"({"id": "u1", "nodes": [{"host": "a", "port": 80}]})"),
     "upstreams[0].nodes[0].weight", "is required"},
    {"list_node_host_missing", upstream_doc(R"({"id": "u1", "nodes": [{"port": 80, "weight": 1}]})"),
     "upstreams[0].nodes[0].host", "is required"},
    {"list_node_host_bad", upstream_doc(R"({"id": "u1", "nodes": [{"host": "a/b", "weight": 1}]})"),
     "upstreams[0].nodes[0].host", "must be a host name"},
    {"list_node_host_with_port", upstream_doc(R"({"id": "u1", "nodes": [{"host": "a:80", "weight": 1}]})"),
     "upstreams[0].nodes[0].host", "without a port"},
    {"list_node_port_string",
     upstream_doc(R"({"id": "u1", "nodes": [{"host": "a", "port": "80", "weight": 1}]})"),
     "upstreams[0].nodes[0].port", "wrong type: expected integer, got string"},
    {"list_node_priority",
     upstream_doc(R"({"id": "u1", "nodes": [{"host": "a", "weight": 1, "priority": "hi"}]})"),
     "upstreams[0].nodes[0].priority", "wrong type: expected integer, got string"},
    {"list_node_unknown", upstream_doc(R"({"id": "u1", "nodes": [{"host": "a", "weight": 1, "wieght": 1}]})"),
     "upstreams[0].nodes[0].wieght", "additional properties forbidden, found wieght"},
    {"list_node_metadata",
     upstream_doc(R"({"id": "u1", "nodes": [{"host": "a", "weight": 1, "metadata": 1}]})"),
     "upstreams[0].nodes[0].metadata", "wrong type: expected object, got number"},
    {"node_duplicate_default_port", upstream_doc(R"({"id": "u1", "nodes": {"a": 1, "a:80": 2}})"),
     R"(upstreams[0].nodes["a:80"])", "duplicate node a:80 (the same address as node 0)"},
    {"node_duplicate_v6", upstream_doc(R"({"id": "u1", "nodes": [{"host": "[::1]", "port": 8080, "weight": 1},
                                           {"host": "::1", "port": 8080, "weight": 1}]})"),
     "upstreams[0].nodes[1]", "duplicate node [::1]:8080"},
    {"type_unknown", upstream_with(R"("type": "random")"), "upstreams[0].type",
     "matches none of the enum values"},
    {"chash_no_key", upstream_with(R"("type": "chash")"), "upstreams[0].key",
     "is required when type is chash"},
    {"chash_bad_var", upstream_with(R"("type": "chash", "key": "http_x_user")"), "upstreams[0].key",
     "with hash_on vars, must be one of uri"},
    {"chash_header_bad", upstream_with(R"("type": "chash", "hash_on": "header", "key": "X User")"),
     "upstreams[0].key", "must be a header or cookie name"},
    {"chash_cookie_empty", upstream_with(R"("type": "chash", "hash_on": "cookie", "key": "")"),
     "upstreams[0].key", "string too short, expected at least 1, got 0"},
    {"chash_combinations", upstream_with(R"("type": "chash", "hash_on": "vars_combinations", "key": "host")"),
     "upstreams[0].key", "like \"$host$request_uri\""},
    {"hash_on_unknown", upstream_with(R"("hash_on": "ip")"), "upstreams[0].hash_on",
     "matches none of the enum values"},
    {"checks_empty", checks_with("{}"), "upstreams[0].checks",
     "object matches none of the required: [\"active\"] or [\"passive\"]"},
    {"checks_not_mapping", checks_with("[]"), "upstreams[0].checks",
     "wrong type: expected object, got array"},
    {"checks_unknown", checks_with(R"({"active": {}, "passiv": {}})"), "upstreams[0].checks.passiv",
     "additional properties forbidden, found passiv"},
    {"active_https_verify", checks_with(R"({"active": {"type": "https", "https_verify_certificate": 1}})"),
     "upstreams[0].checks.active.https_verify_certificate", "wrong type: expected boolean, got number"},
    {"active_type_udp", checks_with(R"({"active": {"type": "udp"}})"), "upstreams[0].checks.active.type",
     "matches none of the enum values"},
    {"active_timeout", checks_with(R"({"active": {"timeout": 0}})"), "upstreams[0].checks.active.timeout",
     "expected 0 to be greater than 0"},
    {"active_concurrency", checks_with(R"({"active": {"concurrency": 0}})"),
     "upstreams[0].checks.active.concurrency", "expected 0 to be at least 1"},
    {"active_http_path", checks_with(R"({"active": {"http_path": "health"}})"),
     "upstreams[0].checks.active.http_path", "must start with '/'"},
    {"active_host", checks_with(R"({"active": {"host": "a b"}})"), "upstreams[0].checks.active.host",
     "must be a host name"},
    {"active_port", checks_with(R"({"active": {"port": 0}})"), "upstreams[0].checks.active.port",
     "expected 0 to be at least 1"},
    {"active_req_headers_format", checks_with(R"({"active": {"req_headers": ["NoColon"]}})"),
     "upstreams[0].checks.active.req_headers[0]", "must be \"Name: value\""},
    {"active_req_headers_dup", checks_with(R"({"active": {"req_headers": ["A: 1", "B: 2", "A: 1"]}})"),
     "upstreams[0].checks.active.req_headers[2]", "duplicate \"A: 1\" (already at index 0)"},
    {"integer_id_float", upstream_doc(R"({"id": 5.0, "nodes": {"a:1": 1}})"), "upstreams[0].id",
     "an integer id must be written without a fraction or an exponent, got 5.0"},
    {"active_req_headers_empty", checks_with(R"({"active": {"req_headers": []}})"),
     "upstreams[0].checks.active.req_headers", "expect array to have at least 1 items"},
    {"active_unknown", checks_with(R"({"active": {"interval": 1}})"), "upstreams[0].checks.active.interval",
     "additional properties forbidden, found interval"},
    {"active_healthy_interval", checks_with(R"({"active": {"healthy": {"interval": 0}}})"),
     "upstreams[0].checks.active.healthy.interval", "expected 0 to be at least 0.1"},
    {"active_healthy_successes_low", checks_with(R"({"active": {"healthy": {"successes": 0}}})"),
     "upstreams[0].checks.active.healthy.successes", "expected 0 to be at least 1"},
    {"active_healthy_successes_high", checks_with(R"({"active": {"healthy": {"successes": 255}}})"),
     "upstreams[0].checks.active.healthy.successes", "expected 255 to be at most 254"},
    {"active_healthy_statuses_range",
     checks_with(R"({"active": {"healthy": {"http_statuses": [200, 600]}}})"),
     "upstreams[0].checks.active.healthy.http_statuses[1]", "expected 600 to be at most 599"},
    {"active_healthy_unknown", checks_with(R"({"active": {"healthy": {"timeouts": 1}}})"),
     "upstreams[0].checks.active.healthy.timeouts", "additional properties forbidden, found timeouts"},
    {"active_healthy_not_mapping", checks_with(R"({"active": {"healthy": 1}})"),
     "upstreams[0].checks.active.healthy", "wrong type: expected object, got number"},
    {"active_unhealthy_interval", checks_with(R"({"active": {"unhealthy": {"interval": -1}}})"),
     "upstreams[0].checks.active.unhealthy.interval", "expected -1 to be at least 0.1"},
    {"active_unhealthy_http_failures", checks_with(R"({"active": {"unhealthy": {"http_failures": 0}}})"),
     "upstreams[0].checks.active.unhealthy.http_failures", "expected 0 to be at least 1"},
    {"active_unhealthy_tcp_failures", checks_with(R"({"active": {"unhealthy": {"tcp_failures": 300}}})"),
     "upstreams[0].checks.active.unhealthy.tcp_failures", "expected 300 to be at most 254"},
    {"active_unhealthy_timeouts", checks_with(R"({"active": {"unhealthy": {"timeouts": 0}}})"),
     "upstreams[0].checks.active.unhealthy.timeouts", "expected 0 to be at least 1"},
    {"active_unhealthy_statuses_empty", checks_with(R"({"active": {"unhealthy": {"http_statuses": []}}})"),
     "upstreams[0].checks.active.unhealthy.http_statuses", "expect array to have at least 1 items"},
    {"active_unhealthy_statuses_dup",
     checks_with(R"({"active": {"unhealthy": {"http_statuses": [500, 500]}}})"),
     "upstreams[0].checks.active.unhealthy.http_statuses[1]", "duplicate status 500"},
    {"active_unhealthy_unknown", checks_with(R"({"active": {"unhealthy": {"successes": 1}}})"),
     "upstreams[0].checks.active.unhealthy.successes", "additional properties forbidden, found successes"},
    {"passive_healthy_successes", checks_with(R"({"passive": {"healthy": {"successes": -1}}})"),
     "upstreams[0].checks.passive.healthy.successes", "expected -1 to be at least 0"},
    {"passive_healthy_statuses", checks_with(R"({"passive": {"healthy": {"http_statuses": [199]}}})"),
     "upstreams[0].checks.passive.healthy.http_statuses[0]", "expected 199 to be at least 200"},
    {"passive_unhealthy_tcp", checks_with(R"({"passive": {"unhealthy": {"tcp_failures": 255}}})"),
     "upstreams[0].checks.passive.unhealthy.tcp_failures", "expected 255 to be at most 254"},
    {"passive_unhealthy_timeouts", checks_with(R"({"passive": {"unhealthy": {"timeouts": "3"}}})"),
     "upstreams[0].checks.passive.unhealthy.timeouts", "wrong type: expected integer, got string"},
    {"passive_unhealthy_http", checks_with(R"({"passive": {"unhealthy": {"http_failures": 1000}}})"),
     "upstreams[0].checks.passive.unhealthy.http_failures", "expected 1000 to be at most 254"},
    {"passive_unhealthy_statuses", checks_with(R"({"passive": {"unhealthy": {"http_statuses": "500"}}})"),
     "upstreams[0].checks.passive.unhealthy.http_statuses", "wrong type: expected array, got string"},
    {"passive_unknown", checks_with(R"({"passive": {"interval": 1}})"),
     "upstreams[0].checks.passive.interval", "additional properties forbidden, found interval"},
    {"retries_negative", upstream_with(R"("retries": -1)"), "upstreams[0].retries",
     "expected -1 to be at least 0"},
    {"retry_timeout_negative", upstream_with(R"("retry_timeout": -0.5)"), "upstreams[0].retry_timeout",
     "expected -0.5 to be at least 0"},
    {"timeout_read", upstream_with(R"("timeout": {"connect": 1, "send": 1, "read": 0})"),
     "upstreams[0].timeout.read", "expected 0 to be greater than 0"},
    {"tls_cert_without_key", upstream_with(R"("scheme": "https", "tls": {"client_cert": "x"})"),
     "upstreams[0].tls.client_key", "is required with client_cert"},
    {"tls_cert_id_and_cert",
     upstream_with(
         R"("scheme": "https", "tls": {"client_cert_id": "1", "client_cert": "x", "client_key": "y"})"),
     "upstreams[0].tls.client_cert_id", "set either client_cert_id or client_cert and client_key, not both"},
    {"tls_bad_pem", upstream_with(R"("scheme": "https", "tls": {"client_cert": "x", "client_key": "y"})"),
     "upstreams[0].tls.client_cert", "client certificate:"},
    {"tls_verify_type", upstream_with(R"("scheme": "https", "tls": {"verify": "yes"})"),
     "upstreams[0].tls.verify", "wrong type: expected boolean, got string"},
    {"tls_unknown", upstream_with(R"("tls": {"sni": "a"})"), "upstreams[0].tls.sni",
     "additional properties forbidden, found sni"},
    {"tls_cert_id_missing",
     upstream_doc(
         R"({"id": "u1", "nodes": {"10.0.0.1:80": 1}, "scheme": "https", "tls": {"client_cert_id": "c9"}})"),
     "upstreams[0].tls.client_cert_id", "ssl \"c9\" is not defined in ssls"},
    {"scheme_other", upstream_with(R"("scheme": "tcp")"), "upstreams[0].scheme",
     "scheme \"tcp\" is not supported by this version (only \"http\", \"https\", \"grpc\" and \"grpcs\")"},
    {"pass_host_unknown", upstream_with(R"("pass_host": "keep")"), "upstreams[0].pass_host",
     "matches none of the enum values"},
    {"rewrite_without_host", upstream_with(R"("pass_host": "rewrite")"), "upstreams[0].upstream_host",
     "is required when pass_host is \"rewrite\""},
    {"upstream_host_bad", upstream_with(R"("pass_host": "rewrite", "upstream_host": "a b")"),
     "upstreams[0].upstream_host", "host must be a host name"},
    {"upstream_host_port", upstream_with(R"("pass_host": "rewrite", "upstream_host": "a.com:0")"),
     "upstreams[0].upstream_host", "the port must be"},
    {"keepalive_size", upstream_with(R"("keepalive_pool": {"size": 0})"), "upstreams[0].keepalive_pool.size",
     "expected 0 to be at least 1"},
    {"keepalive_idle", upstream_with(R"("keepalive_pool": {"idle_timeout": -1})"),
     "upstreams[0].keepalive_pool.idle_timeout", "expected -1 to be at least 0"},
    {"keepalive_requests", upstream_with(R"("keepalive_pool": {"requests": 0})"),
     "upstreams[0].keepalive_pool.requests", "expected 0 to be at least 1"},
    {"keepalive_unknown", upstream_with(R"("keepalive_pool": {"max": 1})"), "upstreams[0].keepalive_pool.max",
     "additional properties forbidden, found max"},
    {"discovery", upstream_doc(R"({"id": "u1", "service_name": "orders", "discovery_type": "dns"})"),
     "upstreams[0].discovery_type", "service discovery is not supported by this version"},
    {"unknown", upstream_with(R"("weight": 1)"), "upstreams[0].weight",
     "additional properties forbidden, found weight"},
    {"name_empty", upstream_with(R"("name": "")"), "upstreams[0].name",
     "string too short, expected at least 1, got 0"},
};
INSTANTIATE_TEST_SUITE_P(Upstreams, ValidationError, ::testing::ValuesIn(kUpstreamCases),
                         [](const auto& info) { return std::string(info.param.name); });

// Numbers where APISIX sets no upper bound: every duration is at most a year (nanosecond deadlines cannot
// overflow), intervals cannot spin, counts stay far from integer overflow, ports are written as integers.
const Case kBoundCases[] = {
    {"route_timeout_1e10", route_with(R"("timeout": {"connect": 1, "send": 1, "read": 1e10})"),
     "routes[0].timeout.read", "expected 10000000000 to be at most 31536000"},
    {"route_timeout_connect_huge", route_with(R"("timeout": {"connect": 31536000.5})"),
     "routes[0].timeout.connect", "expected 31536000.5 to be at most 31536000"},
    {"upstream_timeout_send", upstream_with(R"("timeout": {"send": 1e300})"), "upstreams[0].timeout.send",
     "expected 1e+300 to be at most 31536000"},
    {"retry_timeout_huge", upstream_with(R"("retry_timeout": 1e10)"), "upstreams[0].retry_timeout",
     "expected 10000000000 to be at most 31536000"},
    {"idle_timeout_huge", upstream_with(R"("keepalive_pool": {"idle_timeout": 1e10})"),
     "upstreams[0].keepalive_pool.idle_timeout", "expected 10000000000 to be at most 31536000"},
    {"pool_size_huge", upstream_with(R"("keepalive_pool": {"size": 65536})"),
     "upstreams[0].keepalive_pool.size", "expected 65536 to be at most 65535"},
    {"retries_huge", upstream_with(R"("retries": 2147483647)"), "upstreams[0].retries",
     "expected 2147483647 to be at most 65535"},
    {"active_timeout_huge", checks_with(R"({"active": {"timeout": 1e10}})"),
     "upstreams[0].checks.active.timeout", "expected 10000000000 to be at most 31536000"},
    {"active_concurrency_huge", checks_with(R"({"active": {"concurrency": 100000}})"),
     "upstreams[0].checks.active.concurrency", "expected 100000 to be at most 65535"},
    {"healthy_interval_1e10", checks_with(R"({"active": {"healthy": {"interval": 1e10}}})"),
     "upstreams[0].checks.active.healthy.interval", "expected 10000000000 to be at most 31536000"},
    {"unhealthy_interval_tiny", checks_with(R"({"active": {"unhealthy": {"interval": 1e-9}}})"),
     "upstreams[0].checks.active.unhealthy.interval", "expected 1e-09 to be at least 0.1"},
    {"node_port_float",
     upstream_doc(R"({"id": "u1", "nodes": [{"host": "10.0.0.1", "port": 80.0, "weight": 1}]})"),
     "upstreams[0].nodes[0].port",
     "an integer from 1 to 65535 (written without a fraction), got a number (80)"},
    {"node_key_port_float", upstream_doc(R"({"id": "u1", "nodes": {"127.0.0.1:80.0": 1}})"),
     "upstreams[0].nodes[\"127.0.0.1:80.0\"]", "the port must be an integer from 1 to 65535"},
    {"active_port_float", checks_with(R"({"active": {"port": 8080.0}})"), "upstreams[0].checks.active.port",
     "written without a fraction"},
    {"id_dot", upstream_doc(R"({"id": ".", "nodes": {"10.0.0.1:80": 1}})"), "upstreams[0].id",
     "failed to match pattern \"^(?!\\\\.\\\\.?\\\\z)[a-zA-Z0-9_.-]+\\\\z\" with \".\""},
    {"id_dotdot", route_doc(R"({"id": "..", "uri": "/a", "upstream_id": "u1"})"), "routes[0].id",
     "failed to match pattern \"^(?!\\\\.\\\\.?\\\\z)[a-zA-Z0-9_.-]+\\\\z\" with \"..\""},
};
INSTANTIATE_TEST_SUITE_P(Bounds, ValidationError, ::testing::ValuesIn(kBoundCases),
                         [](const auto& info) { return std::string(info.param.name); });

const Case kServiceCases[] = {
    {"not_mapping", service_doc("1"), "services[0]", "wrong type: expected object, got number"},
    {"id_missing", service_doc(R"({"upstream_id": "u1"})"), "services[0].id", "is required"},
    {"hosts_empty", service_doc(R"({"id": "s1", "hosts": []})"), "services[0].hosts",
     "expect array to have at least 1 items"},
    {"hosts_bad", service_doc(R"({"id": "s1", "hosts": ["a_b.com", "a b"]})"), "services[0].hosts[1]",
     "must be a host name"},
    {"upstream_and_id",
     service_doc(R"({"id": "s1", "upstream_id": "u1", "upstream": {"nodes": {"a:1": 1}}})"),
     "services[0].upstream_id", "not both"},
    {"inline_upstream", service_doc(R"({"id": "s1", "upstream": {"nodes": {"a:1": 1}, "type": "x"}})"),
     "services[0].upstream.type", "matches none of the enum values"},
    {"plugin_unsupported", service_doc(R"({"id": "s1", "plugins": {"serverless-pre-function": {}}})"),
     "services[0].plugins.serverless-pre-function",
     "plugin 'serverless-pre-function' is not supported by this version"},
    {"enable_websocket", service_doc(R"({"id": "s1", "enable_websocket": 1})"),
     "services[0].enable_websocket", "wrong type: expected boolean, got number"},
    {"unknown", service_doc(R"({"id": "s1", "uri": "/a"})"), "services[0].uri",
     "additional properties forbidden, found uri"},
    {"script", service_doc(R"({"id": "s1", "script": "x"})"), "services[0].script", "not supported"},
    {"plugin_config_id", service_doc(R"({"id": "s1", "plugin_config_id": "p1"})"),
     "services[0].plugin_config_id", "'plugin_config_id' is not supported by this version"},
    {"hosts_duplicate", service_doc(R"({"id": "s1", "hosts": ["a.com", "b.com", "A.com"]})"),
     "services[0].hosts[2]", "duplicate \"a.com\" (already at index 0)"},
    {"upstream_id_float", service_doc(R"({"id": "s1", "upstream_id": 7.0})"), "services[0].upstream_id",
     "an integer id must be written without a fraction or an exponent, got 7.0"},
    {"name_too_long", service_doc(R"({"id": "s1", "name": ")" + std::string(257, 'n') + R"("})"),
     "services[0].name", "string too long, expected at most 256, got 257"},
};
INSTANTIATE_TEST_SUITE_P(Services, ValidationError, ::testing::ValuesIn(kServiceCases),
                         [](const auto& info) { return std::string(info.param.name); });

const Case kDocumentCases[] = {
    {"root_list", "[]", "",
     "must be a mapping of resource lists (`routes`, `services`, `upstreams`, ...), got a list"},
    {"root_null", "null", "", "got null"},
    {"routes_mapping", R"({"routes": {"r1": {}}})", "routes", "must be a list, got a mapping"},
    {"upstreams_string", R"({"upstreams": "x"})", "upstreams", "must be a list"},
    {"unsupported_section", R"({"consumer_groups": []})", "consumer_groups",
     "'consumer_groups' is not supported by this version"},
    {"plugin_metadata", R"({"plugin_metadata": []})", "plugin_metadata", "not supported"},
    {"credential_dangling_consumer",
     R"({"credentials": [{"id": "jack/credentials/c1", "plugins": {"key-auth": {"key": "k1"}}}]})",
     "credentials[0].id", "consumer \"jack\" is not defined in consumers"},
    {"credential_short_id", R"({"consumers": [{"username": "jack"}], "credentials": [{"id": "c1"}]})",
     "credentials[0].id", R"(failed to match pattern "^[a-zA-Z0-9_-]{1,256}/credentials/)"},
    {"credential_not_auth",
     R"({"consumers": [{"username": "jack"}],
         "credentials": [{"id": "jack/credentials/c1", "plugins": {"client-control": {}}}]})",
     "credentials[0].plugins.client-control",
     "only authentication plugins can be configured in a credential"},
    {"credential_two_plugins",
     R"({"consumers": [{"username": "jack"}],
         "credentials": [{"id": "jack/credentials/c1",
                          "plugins": {"key-auth": {"key": "k1"}, "client-control": {}}}]})",
     "credentials[0].plugins", "expect object to have at most 1 properties"},
    {"duplicate_credential_id",
     R"({"consumers": [{"username": "jack"}],
         "credentials": [{"id": "jack/credentials/c1"}, {"id": "jack/credentials/c1"}]})",
     "credentials[1].id", "duplicate credential id \"jack/credentials/c1\""},
    {"consumers_mapping", R"({"consumers": {"jack": {}}})", "consumers", "must be a list, got a mapping"},
    {"unknown_section_typo", R"({"global_rule": []})", "global_rule",
     "unknown field 'global_rule' (did you mean 'global_rules'?)"},
    {"unknown_section", R"({"route": []})", "route", "unknown field 'route' (did you mean 'routes'?)"},
    {"conf_version_bad", R"({"routes_conf_version": "x"})", "routes_conf_version", "an integer >= 0"},
    {"duplicate_route_id",
     route_doc(
         R"({"id": "r1", "uri": "/a", "upstream_id": "u1"}, {"id": "r1", "uri": "/b", "upstream_id": "u1"})"),
     "routes[1].id", "duplicate route id \"r1\" (first defined at routes[0])"},
    {"duplicate_id_int_and_string",
     route_doc(
         R"({"id": 7, "uri": "/a", "upstream_id": "u1"}, {"id": "7", "uri": "/b", "upstream_id": "u1"})"),
     "routes[1].id", "duplicate route id \"7\""},
    {"duplicate_upstream_id",
     R"({"upstreams": [{"id": "u1", "nodes": {"a:1": 1}}, {"id": "u2", "nodes": {"a:1": 1}},
                       {"id": "u1", "nodes": {"a:2": 1}}]})",
     "upstreams[2].id", "duplicate upstream id \"u1\" (first defined at upstreams[0])"},
    {"duplicate_service_id", service_doc(R"({"id": "s1"}, {"id": "s1"})"), "services[1].id",
     "duplicate service id \"s1\""},
    {"route_dangling_upstream", route_doc(R"({"id": "r1", "uri": "/a", "upstream_id": "nope"})"),
     "routes[0].upstream_id", "upstream \"nope\" is not defined in upstreams"},
    {"route_dangling_service", route_doc(R"({"id": "r1", "uri": "/a", "service_id": 9})"),
     "routes[0].service_id", "service \"9\" is not defined in services"},
    {"service_dangling_upstream", service_doc(R"({"id": "s1", "upstream_id": "u2"})"),
     "services[0].upstream_id", "upstream \"u2\" is not defined in upstreams"},
    {"route_service_without_upstream",
     R"({"services": [{"id": "s1", "hosts": ["a.com"]}], "routes": [{"id": "r1", "uri": "/a", "service_id": "s1"}]})",
     "routes[0].service_id", "service \"s1\" has no upstream and the route sets none"},
    // A reference to a resource that exists but is invalid reports only the resource's own error.
    {"reference_to_invalid_upstream",
     R"({"upstreams": [{"id": "u1", "nodes": {}}], "routes": [{"id": "r1", "uri": "/a", "upstream_id": "u1"}]})",
     "upstreams[0].nodes", "must contain at least one node"},
    {"reference_to_invalid_service",
     R"({"services": [{"id": "s1", "hosts": []}], "routes": [{"id": "r1", "uri": "/a", "service_id": "s1"}]})",
     "services[0].hosts", "expect array to have at least 1 items"},
};
INSTANTIATE_TEST_SUITE_P(Document, ValidationError, ::testing::ValuesIn(kDocumentCases),
                         [](const auto& info) { return std::string(info.param.name); });

TEST(ValidationErrors, SeveralErrorsInDocumentOrder) {
  LoadResult r = parse_text(route_doc(R"({"id": "r1", "uri": "a", "methods": ["get"], "upstream_id": "zz"},
                                         {"id": "r2", "uri": "/b", "upstream_id": "u1", "priority": "x"})"),
                            Format::json);
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.errors.size(), 3u) << r.describe();
  // Per-resource errors first (in field-check order within a resource), cross-resource ones after.
  EXPECT_EQ(r.errors[0].path, "routes[0].methods[0]");
  EXPECT_EQ(r.errors[1].path, "routes[0].uri");
  EXPECT_EQ(r.errors[2].path, "routes[1].priority");
}

TEST(ValidationErrors, ReferencesAreCheckedOnlyForValidResources) {
  // routes[0] is invalid, so its dangling upstream_id is not reported as well (it might be a typo'd id).
  LoadResult r = parse_text(route_doc(R"({"id": "r1", "uri": "a", "upstream_id": "zz"})"), Format::json);
  ASSERT_EQ(r.errors.size(), 1u) << r.describe();
  EXPECT_EQ(r.errors[0].path, "routes[0].uri");
}

TEST(ValidationErrors, LimitCountGroupsMustShareOneConfiguration) {
  const std::string same = R"("limit-count": {"count": 2, "time_window": 60, "group": "g"})";
  LoadResult ok = parse_text(
      route_doc(R"({"id": "r1", "uri": "/a", "upstream_id": "u1", "plugins": {)" + same +
                R"(}}, {"id": "r2", "uri": "/b", "upstream_id": "u1", "plugins": {)" + same + "}}"),
      Format::json);
  EXPECT_TRUE(ok.ok) << ok.describe();
  LoadResult r =
      parse_text(route_doc(R"({"id": "r1", "uri": "/a", "upstream_id": "u1", "plugins": {)" + same +
                           R"(}}, {"id": "r2", "uri": "/b", "upstream_id": "u1",
                   "plugins": {"limit-count": {"count": 3, "time_window": 60, "group": "g"}}})"),
                 Format::json);
  ASSERT_EQ(r.errors.size(), 1u) << r.describe();
  EXPECT_EQ(r.errors[0].path, "routes[1].plugins.limit-count");
  EXPECT_EQ(r.errors[0].reason, "group conf mismatched");
}

TEST(ValidationErrors, LimitCountGroupsCompareApisixsFieldsAndConsumersToo) {
  // APISIX compares its schema's fields and the policy's Redis fields: under the local policy a Redis field
  // given by one member and not another is not part of the group's configuration.
  const std::string a = R"("limit-count": {"count": 2, "time_window": 60, "group": "g"})";
  const std::string b = R"("limit-count": {"count": 2, "time_window": 60, "group": "g", "redis_host": "xx"})";
  LoadResult ok =
      parse_text(route_doc(R"({"id": "r1", "uri": "/a", "upstream_id": "u1", "plugins": {)" + a +
                           R"(}}, {"id": "r2", "uri": "/b", "upstream_id": "u1", "plugins": {)" + b + "}}"),
                 Format::json);
  EXPECT_TRUE(ok.ok) << ok.describe();
  // A consumer's limit-count is a member of the group as well.
  LoadResult r = parse_text(
      R"({"upstreams": [{"id": "u1", "nodes": {"10.0.0.1:80": 1}}],
          "routes": [{"id": "r1", "uri": "/a", "upstream_id": "u1", "plugins": {)" +
          a + R"(}}],
          "consumers": [{"username": "jack",
                         "plugins": {"limit-count": {"count": 2, "time_window": 61, "group": "g"}}}]})",
      Format::json);
  ASSERT_EQ(r.errors.size(), 1u) << r.describe();
  EXPECT_EQ(r.errors[0].path, "consumers[0].plugins.limit-count");
  EXPECT_EQ(r.errors[0].reason, "group conf mismatched");
}

TEST(ValidationErrors, YamlPathsAreTheSame) {
  LoadResult r = parse_text(R"(upstreams:
  - id: u1
    nodes:
      - {host: 10.0.0.1, port: 80, weight: 1}
      - {host: 10.0.0.2, port: "8080", weight: 1}
    checks:
      active:
        healthy: {interval: 0}
#END
)",
                            Format::yaml);
  ASSERT_EQ(r.errors.size(), 2u) << r.describe();
  // Within one resource, fields are checked in key order (the tree keeps mappings sorted).
  EXPECT_EQ(r.errors[0].path, "upstreams[0].checks.active.healthy.interval");
  EXPECT_EQ(r.errors[1].path, "upstreams[0].nodes[1].port");
  EXPECT_EQ(r.errors[1].reason, "wrong type: expected integer, got string");
}

// --- validate.h used directly, as the Admin API will ---

TEST(ValidateApi, RouteWithPrefixAndOptionalId) {
  Errors errors;
  json body = json::parse(R"({"uri": "/a", "upstream": {"nodes": [{"host": "b", "port": 0, "weight": 1}]}})");
  EXPECT_FALSE(validate_route(body, "", errors));
  ASSERT_EQ(errors.list().size(), 2u);
  EXPECT_EQ(errors.list()[0].path, "id");
  EXPECT_EQ(errors.list()[1].path, "upstream.nodes[0].port");

  Errors relaxed;
  ValidateOptions options;
  options.id_required = false;
  body["upstream"]["nodes"][0]["port"] = 8080;
  std::optional<Route> route = validate_route(body, "", relaxed, options);
  ASSERT_TRUE(route.has_value());
  EXPECT_EQ(route->id, "");
  EXPECT_TRUE(relaxed.list().empty());

  Errors prefixed;
  EXPECT_FALSE(validate_route(json::parse(R"({"id": 1, "uri": "x", "upstream_id": 2})"), "body", prefixed));
  ASSERT_EQ(prefixed.list().size(), 1u);
  EXPECT_EQ(prefixed.list()[0].path, "body.uri");
}

TEST(ValidateApi, ServiceAndUpstream) {
  Errors errors;
  std::optional<Service> s =
      validate_service(json::parse(R"({"id": "s", "hosts": ["A.example.com"], "plugins": {"client-control":
                                     {"max_body_size": 10}}})"),
                       "services[0]", errors);
  ASSERT_TRUE(s.has_value());
  EXPECT_EQ(s->hosts, std::vector<std::string>{"a.example.com"});
  EXPECT_EQ(s->max_body_size, 10);
  std::optional<Upstream> u = validate_upstream(json::parse(R"({"id": 3, "nodes": {"a": 1}})"), "", errors);
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->id, "3");
  EXPECT_TRUE(errors.list().empty());
  EXPECT_FALSE(validate_upstream(json::parse(R"({"nodes": {"a": 1}})"), "", errors));
  EXPECT_EQ(errors.list().back().path, "id");
}

TEST(ValidateApi, GrpcSchemes) {
  for (const char* scheme : {"grpc", "grpcs"}) {
    Errors errors;
    std::optional<Upstream> u = validate_upstream(
        json::parse(std::string(R"({"id": 1, "nodes": {"10.0.0.1:50051": 1}, "scheme": ")") + scheme +
                    R"(", "tls": {"verify": true}})"),
        "", errors);
    ASSERT_TRUE(u.has_value()) << scheme;
    EXPECT_EQ(u->scheme, scheme);
    EXPECT_TRUE(errors.list().empty());
  }
}

TEST(ValidateApi, ErrorsKeepTheFirstN) {
  Errors errors(2);
  errors.add("a", "1");
  EXPECT_FALSE(errors.full());
  errors.add("b", "2");
  EXPECT_TRUE(errors.full());
  EXPECT_FALSE(errors.truncated());
  errors.add("c", "3");
  EXPECT_TRUE(errors.truncated());
  EXPECT_EQ(errors.total(), 3u);
  ASSERT_EQ(errors.list().size(), 2u);
  EXPECT_EQ(errors.list()[1].path, "b");
}

TEST(ValidateApi, CheckConfig) {
  Config config;
  Route r;
  r.id = "r1";
  r.uris = {"/a"};
  r.service_id = "s1";
  config.routes.push_back(r);
  r.id = "r2";
  r.service_id.clear();
  r.upstream_id = "u9";
  config.routes.push_back(r);
  Service s;
  s.id = "s1";
  s.upstream_id = "u1";
  s.max_body_size = 100;
  config.services.push_back(s);
  Upstream u;
  u.id = "u1";
  u.nodes = {Node{"a", 80, 1, 0}};
  config.upstreams.push_back(u);

  Errors errors;
  EXPECT_FALSE(check_config(config, errors));
  ASSERT_EQ(errors.list().size(), 1u);
  EXPECT_EQ(errors.list()[0].path, "routes[1].upstream_id");
  ASSERT_EQ(config.routes.size(), 2u);            // the config is handed back whole
  EXPECT_EQ(config.routes[0].max_body_size, -1);  // nothing folded on failure

  config.routes[1].upstream_id = "u1";
  Errors ok;
  EXPECT_TRUE(check_config(config, ok));
  EXPECT_EQ(config.routes[0].max_body_size, 100);  // inherited from s1
  EXPECT_EQ(config.routes[1].max_body_size, -1);
}

TEST(ValidateApi, ValidateConfigDocument) {
  Errors errors;
  std::optional<Config> c =
      validate_config(json::parse(route_doc(R"({"id": 1, "uri": "/a", "upstream_id": "u1"})")), errors);
  ASSERT_TRUE(c.has_value());
  EXPECT_EQ(c->routes[0].id, "1");
  Errors bad;
  EXPECT_FALSE(
      validate_config(json::parse(route_doc(R"({"id": 1, "uri": "/a", "upstream_id": "u2"})")), bad));
  EXPECT_EQ(bad.list().at(0).path, "routes[0].upstream_id");
}

}  // namespace
}  // namespace portico::config
