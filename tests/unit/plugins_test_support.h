// Shared by the plugin unit tests: a request as the session hands it to the plugins (parsed head, router
// view, client address), and a plugin built from a configuration validated by the catalog.
#pragma once

#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "config/plugin_catalog.h"
#include "config/schema.h"
#include "config/validate.h"
#include "http/parser.h"
#include "plugins/plugin.h"
#include "router/router.h"

namespace portico::plugins::test {

using json = nlohmann::json;

// One request: `head_text` is the request line and header fields ("GET /a?x=1 HTTP/1.1\r\nOrigin: o\r\n").
class Request {
 public:
  explicit Request(std::string head_text, std::string_view client = "127.0.0.1")
      : raw_(std::move(head_text)) {
    raw_ += "\r\n\r\n";
    http::ParseLimits limits;
    EXPECT_EQ(http::parse_request(raw_.data(), raw_.size(), limits, head_).status,
              http::ParseStatus::complete)
        << raw_;
    EXPECT_TRUE(router::IpAddress::parse(client, match_.client)) << client;
    client_text_ = std::string(client);
    match_.method = head_.method;
    match_.method_text = head_.method_text;
    match_.host = head_.host;
    match_.path = head_.path;
    match_.query = head_.query;
    match_.target = head_.target;
    match_.head = &head_;
    ctx.request = &head_;
    ctx.path = head_.path;
    ctx.client_ip = match_.client;
    ctx.client_ip_text = client_text_;
    ctx.route_id = "r1";
    ctx.match = &match_;
  }
  Request(const Request&) = delete;
  Request& operator=(const Request&) = delete;

  // The value of the last edit setting or adding response header `name` (case-insensitive); "" if none.
  std::string response_header(std::string_view name) const {
    std::string out;
    for (const HeaderEdit& e : ctx.response.headers) {
      if (e.name.size() == name.size() &&
          std::equal(e.name.begin(), e.name.end(), name.begin(),
                     [](char a, char b) { return (a | 0x20) == (b | 0x20); })) {
        out = e.op == HeaderEdit::Op::remove ? "" : e.value;
      }
    }
    return out;
  }
  // The value of reply header `name` (exact case); "" if none.
  std::string reply_header(std::string_view name) const {
    for (const auto& [n, v] : ctx.reply.headers) {
      if (n == name) return v;
    }
    return {};
  }

  RequestContext ctx;

 private:
  std::string raw_;
  std::string client_text_;
  http::RequestHead head_;
  router::MatchRequest match_;
};

// `conf` validated as the catalog validates a route's plugin (schema, defaults, check); "" when accepted,
// else "<field>: <reason>" of the first problem.
inline std::string refusal(std::string_view name, json& conf) {
  const config::PluginDef* def = config::find_plugin(name);
  if (def == nullptr) return "unknown plugin";
  config::Errors errors;
  if (!config::plugin_schema(*def, false).validate(conf, "", errors)) {
    return errors.list().front().path + ": " + errors.list().front().reason;
  }
  if (def->check != nullptr) {
    std::string field;
    std::string why = def->check(conf, false, field);
    if (!why.empty()) return field + ": " + why;
  }
  return {};
}

// The runtime plugin for an accepted `conf` (the test fails when it is refused).
inline std::shared_ptr<const Plugin> build(std::string_view name, json conf) {
  const std::string why = refusal(name, conf);
  EXPECT_EQ(why, "") << conf.dump();
  if (!why.empty()) return nullptr;
  std::string error;
  auto plugin = create_plugin(name, conf, config::find_plugin(name)->priority, BuildEnv{}, &error);
  EXPECT_TRUE(plugin) << error;
  return plugin;
}

}  // namespace portico::plugins::test
