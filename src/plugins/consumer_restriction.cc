// consumer-restriction (APISIX 3.x, access phase): who may use a route, by the authenticated consumer's name
// (type consumer_name, the default), the route's service id (service_id) or the route id (route_id), against
// a blacklist, a whitelist and per-value allowed methods (allowed_by_methods), in that order of precedence:
//   - no value (no consumer authenticated, a route without service): 401 "The request is rejected, please
//     check the <type> for this request";
//   - a blacklisted value: rejected;
//   - a whitelist that does not hold the value: rejected;
//   - otherwise, unless whitelisted, the first allowed_by_methods entry whose `user` is the value must list
//     the request's method (no entry for the value: allowed).
// Rejected: `rejected_code` (403) with {"message": rejected_msg or "The <type> is forbidden."}.
// The lists are sorted when the plugin is built; a request costs binary searches, no allocation.
#include <algorithm>
#include <nlohmann/json.hpp>

#include "plugins/consumers.h"
#include "plugins/factories.h"

namespace portico::plugins {

namespace {

enum class Type { consumer_name, service_id, route_id };

std::vector<std::string> sorted_list(const nlohmann::json& conf, const char* key) {
  std::vector<std::string> out;
  if (auto it = conf.find(key); it != conf.end()) out = it->get<std::vector<std::string>>();
  std::sort(out.begin(), out.end());
  return out;
}

bool has(const std::vector<std::string>& sorted, std::string_view value) {
  auto it = std::lower_bound(sorted.begin(), sorted.end(), value,
                             [](const std::string& a, std::string_view b) { return a < b; });
  return it != sorted.end() && *it == value;
}

struct UserMethods {
  std::string user;
  std::vector<std::string> methods;
};

class ConsumerRestriction final : public Plugin {
 public:
  ConsumerRestriction(const nlohmann::json& conf, int priority)
      : Plugin("consumer-restriction", priority, kAccess),
        has_whitelist_(conf.contains("whitelist")),
        whitelist_(sorted_list(conf, "whitelist")),
        blacklist_(sorted_list(conf, "blacklist")),
        rejected_code_(conf.at("rejected_code").get<int>()) {
    const std::string type = conf.at("type").get<std::string>();
    type_ = type == "service_id" ? Type::service_id
            : type == "route_id" ? Type::route_id
                                 : Type::consumer_name;
    missing_message_ = "The request is rejected, please check the " + type + " for this request";
    rejected_message_ = conf.contains("rejected_msg") ? conf.at("rejected_msg").get<std::string>()
                                                      : "The " + type + " is forbidden.";
    if (auto it = conf.find("allowed_by_methods"); it != conf.end()) {
      for (const nlohmann::json& entry : *it) {
        auto user = entry.find("user");
        if (user == entry.end()) continue;  // names nobody
        UserMethods m;
        m.user = user->get<std::string>();
        if (auto methods = entry.find("methods"); methods != entry.end()) {
          m.methods = methods->get<std::vector<std::string>>();
        }
        by_methods_.push_back(std::move(m));
      }
      // The first entry of a user decides (APISIX stops at it): keep it alone, in a sorted vector.
      std::stable_sort(by_methods_.begin(), by_methods_.end(),
                       [](const UserMethods& a, const UserMethods& b) { return a.user < b.user; });
      by_methods_.erase(
          std::unique(by_methods_.begin(), by_methods_.end(),
                      [](const UserMethods& a, const UserMethods& b) { return a.user == b.user; }),
          by_methods_.end());
      has_by_methods_ = !it->empty();
    }
  }

  void access(RequestContext& ctx) const override {
    std::string_view value;
    switch (type_) {
      case Type::consumer_name:
        if (ctx.consumer != nullptr) value = ctx.consumer->username;
        break;
      case Type::service_id:
        value = ctx.service_id;
        break;
      case Type::route_id:
        value = ctx.route_id;
        break;
    }
    if (value.empty()) {
      ctx.respond_message(401, missing_message_);
      return;
    }
    if (has(blacklist_, value)) {
      ctx.respond_message(rejected_code_, rejected_message_);
      return;
    }
    const bool whitelisted = has_whitelist_ && has(whitelist_, value);
    bool block = has_whitelist_ && !whitelisted;
    if (!block && has_by_methods_ && !whitelisted) block = !method_allowed(value, ctx.request->method_text);
    if (block) ctx.respond_message(rejected_code_, rejected_message_);
  }

 private:
  bool method_allowed(std::string_view user, std::string_view method) const {
    auto it = std::lower_bound(by_methods_.begin(), by_methods_.end(), user,
                               [](const UserMethods& m, std::string_view u) { return m.user < u; });
    if (it == by_methods_.end() || it->user != user) return true;
    return std::find(it->methods.begin(), it->methods.end(), method) != it->methods.end();
  }

  Type type_ = Type::consumer_name;
  bool has_whitelist_;
  std::vector<std::string> whitelist_;
  std::vector<std::string> blacklist_;
  std::vector<UserMethods> by_methods_;  // sorted by user, one entry per user
  bool has_by_methods_ = false;
  int rejected_code_;
  std::string missing_message_;
  std::string rejected_message_;
};

}  // namespace

constinit const detail::Factory detail::make_consumer_restriction = detail::construct<ConsumerRestriction>;

}  // namespace portico::plugins
