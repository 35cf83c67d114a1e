// Query-string arguments (`a=1&b=x+y`), as APISIX's $arg_<name> and the Admin API read them: the first
// argument named exactly `name` wins, "?a" gives `a` an empty value. Shared by the router's `vars`, the
// plugins' templates and the control plane's endpoints so that they cannot disagree on what an argument is.
// Pure functions; any thread.
#pragma once

#include <string>
#include <string_view>

namespace portico::http {

// The value of the first argument named `name` in `query` (without '?'), as written (still encoded), into
// `raw`; false when there is none.
bool find_query_arg(std::string_view query, std::string_view name, std::string_view& raw);

// Appends `raw` percent-decoded, '+' as a space, to `out`; an invalid escape is kept as written.
void decode_query_value(std::string_view raw, std::string& out);

}  // namespace portico::http
