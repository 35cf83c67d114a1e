// APISIX variables written in configuration text (fault-injection's abort body and headers, mocking's
// response_example), in the syntax of APISIX's core.utils.resolve_var: "$name" (name: letters, digits, '_'
// and '.') or "${name}" / "${ name ?? default }"; a '$' right after a backslash is no reference (the text
// keeps both characters). One scanner serves the validator, which refuses names Portico cannot resolve, and
// the plugins that render the text per request (plugins/var_template.h).
//
// Pure functions; any thread.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace portico::config {

struct VarRef {
  size_t begin = 0;  // offset of the '$'
  size_t end = 0;    // one past the reference
  std::string_view name;
  std::string_view fallback;  // the `??` default of "${name ?? default}"; empty when none
};

// The references of `text`, in order (views into `text`).
std::vector<VarRef> find_var_refs(std::string_view text);

// The variables such text may name: uri, request_uri, host, remote_addr, request_method, scheme, args,
// query_string, http_<header>, arg_<name>, cookie_<name> (router::RequestVar's), route_id, route_name,
// service_id, consumer_name. APISIX resolves any nginx variable and renders an unknown name empty, which
// silently eats text such as "$5" or "$ref"; Portico refuses the configuration instead.
bool known_template_var(std::string_view name);

// Empty when every reference of `text` names a known variable; otherwise why not ("unknown variable $x
// (supported: ...)").
std::string check_var_refs(std::string_view text);

}  // namespace portico::config
