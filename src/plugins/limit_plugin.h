// Private to src/plugins: the parts limit-count, limit-req and limit-conn share around their backends
// (limits.h): the configuration every one of them has (key, rejected_code/_msg, allow_degradation), the
// counters' namespace, and APISIX's answers. Immutable; any thread.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/json_escape.h"
#include "plugins/limits.h"
#include "plugins/plugin.h"

namespace portico::plugins::detail {

struct LimitCommon {
  LimitCommon(std::string_view plugin, const nlohmann::json& conf, const BuildEnv& env, bool group_key)
      : key(conf.value("key_type", std::string("var")), conf.at("key").get<std::string>()),
        rejected_code(conf.at("rejected_code").get<int>()),
        allow_degradation(conf.value("allow_degradation", false)) {
    if (conf.contains("rejected_msg")) {
      rejected_body =
          "{\"error_msg\":\"" + base::json_escape(conf.at("rejected_msg").get<std::string>()) + "\"}\n";
    }
    if (env.limits == nullptr) own = std::make_unique<LimitStores>(512);
    stores = env.limits != nullptr ? env.limits : own.get();
    // A group's counters belong to the group, whichever route and configuration reach them (APISIX keys
    // them by the group's name alone); otherwise to this configuration on the request's route.
    if (group_key && conf.contains("group")) {
      group = true;
      ns = conf_namespace(plugin, nlohmann::json("group:" + conf.at("group").get<std::string>()));
    } else {
      ns = conf_namespace(plugin, conf);
    }
  }

  // The table key of this request: "<route or global rule>\n<key>" (the group's: "<key>"), in a per-thread
  // buffer valid until the next call on this thread.
  std::string_view table_key(const RequestContext& ctx) const {
    thread_local std::string buffer;
    buffer.clear();
    if (!group) {
      // A global rule's limit counts every route's requests together (APISIX: conf_type global_rule).
      if (!ctx.global_rule) buffer += ctx.route_id;
      buffer += '\n';
    }
    key.resolve(ctx, buffer);
    return buffer;
  }

  void reject(RequestContext& ctx) const {
    ctx.reply.status = rejected_code;
    if (rejected_body.empty()) {
      // APISIX answers nginx's HTML page for the status; Portico an empty body (docs/plugins/limits.md).
      ctx.reply.body.clear();
      ctx.reply.content_type.clear();
    } else {
      ctx.reply.body.assign(rejected_body);
      ctx.reply.content_type.assign("application/json");
    }
  }

  LimitKey key;
  int rejected_code;
  bool allow_degradation;
  std::string rejected_body;  // {"error_msg":"<rejected_msg>"}; empty: none
  bool group = false;
  uint64_t ns = 0;
  std::unique_ptr<LimitStores> own;
  LimitStores* stores = nullptr;
};

}  // namespace portico::plugins::detail
