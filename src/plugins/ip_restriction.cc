// ip-restriction (APISIX 3.x, access phase): the client address against a whitelist or a blacklist of
// addresses and CIDR blocks, IPv4 and IPv6. A refused client gets `response_code` (403) with
// {"message": <message>}. The list is parsed and merged into an IpSet when the plugin is built, so a request
// costs one binary search whatever the list's length.
#include <nlohmann/json.hpp>

#include "plugins/factories.h"
#include "plugins/ip_set.h"

namespace portico::plugins {

namespace {

class IpRestriction final : public Plugin {
 public:
  IpRestriction(IpSet set, bool whitelist, std::string message, int status, int priority)
      : Plugin("ip-restriction", priority, kAccess),
        set_(std::move(set)),
        whitelist_(whitelist),
        message_(std::move(message)),
        status_(status) {}

  void access(RequestContext& ctx) const override {
    if (set_.contains(ctx.client_ip) != whitelist_) ctx.respond_message(status_, message_);
  }

 private:
  IpSet set_;
  bool whitelist_;
  std::string message_;
  int status_;
};

std::shared_ptr<const Plugin> build(const nlohmann::json& conf, int priority, const BuildEnv&,
                                    std::string* error) {
  const bool whitelist = conf.contains("whitelist");
  const nlohmann::json& list = conf.at(whitelist ? "whitelist" : "blacklist");
  std::vector<router::Cidr> blocks(list.size());
  for (size_t i = 0; i < list.size(); ++i) {
    const std::string& text = list[i].get_ref<const std::string&>();
    if (!router::Cidr::parse(text, blocks[i])) return detail::refuse(error, "invalid ip address: " + text);
  }
  return std::make_shared<IpRestriction>(IpSet(blocks), whitelist, conf.at("message").get<std::string>(),
                                         conf.at("response_code").get<int>(), priority);
}

}  // namespace

constinit const detail::Factory detail::make_ip_restriction = build;

}  // namespace portico::plugins
