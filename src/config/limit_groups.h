// limit-count's `group`: the resources naming one group share one counter, so they must agree on what it
// counts. APISIX refuses a configuration that differs from its group's ("group conf mismatched",
// apisix/plugins/limit-count/init.lua check_schema) on the fields of its schema and of its policy's Redis
// fields; this is that comparison, used by the file loader (whole document) and the Admin API (at write
// time, against every stored resource).
//
// Pure functions; any thread.
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "config/model.h"

namespace portico::config {

inline constexpr std::string_view kGroupConfMismatched = "group conf mismatched";

// What a member of a group must share with the others: the validated configuration (defaults applied,
// secrets decrypted) reduced to the fields APISIX compares (its schema's, Portico's window_type, and the
// policy's Redis fields), as canonical text. Empty when `conf` names no group.
std::string limit_group_view(const nlohmann::json& conf);

struct LimitGroup {
  std::string name;
  std::string digest;  // SHA-256 of limit_group_view: two members agree iff their digests do
};
// The limit-count groups of a resource's plugins (disabled ones too, as APISIX checks them), at most one.
std::vector<LimitGroup> limit_groups(const PluginMap& plugins);

}  // namespace portico::config
