// Private to src/config. The resource validators behind validate.h, taking a Path so that callers walking a
// whole document (validate_config, the streaming loader) build no prefix strings for valid resources.
#pragma once

#include <optional>

#include "config/fields.h"
#include "config/model.h"
#include "config/validate.h"

namespace portico::config::detail {

std::optional<Route> route_at(const json& v, const Path& p, Errors& e, const ValidateOptions& options);
std::optional<Service> service_at(const json& v, const Path& p, Errors& e, const ValidateOptions& options);
// `inline_upstream`: written inside a route or service (no id allowed) rather than in `upstreams`.
std::optional<Upstream> upstream_at(const json& v, const Path& p, Errors& e, bool inline_upstream,
                                    const ValidateOptions& options);

// {connect, send, read}: seconds > 0; a missing one keeps the model default (60).
bool read_timeout(const json& v, const Path& p, Errors& e, Timeout& out);

}  // namespace portico::config::detail
