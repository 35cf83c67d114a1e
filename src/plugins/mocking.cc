// mocking (APISIX 3.x, access phase, priority 10900): answers the request itself with `response_status`,
// `content_type` and `response_example` (APISIX variables resolved), plus `response_headers` and, with
// with_mock_header, "x-mock-by: Portico/<version>" (APISIX sends "APISIX/<version>"). `delay` seconds are
// waited on the session's timer before the answer is sent (RequestContext::delay), never on the worker.
// response_schema (random bodies generated from a JSON schema) is refused by the catalog.
#include <nlohmann/json.hpp>

#include "base/ascii.h"
#include "plugins/factories.h"
#include "plugins/template.h"

namespace portico::plugins {

namespace {

class Mocking final : public Plugin {
 public:
  // `conf` as the catalog's check accepted it: Template::parse throws on anything else.
  Mocking(const nlohmann::json& conf, int priority) : Plugin("mocking", priority, kAccess) {
    status_ = conf.at("response_status").get<int>();
    content_type_ = conf.at("content_type").get<std::string>();
    delay_ = conf.at("delay").get<double>();
    body_ = Template::parse(conf.at("response_example").get<std::string>(), config::TemplateSyntax::vars);
    if (conf.at("with_mock_header").get<bool>())
      headers_.emplace_back("x-mock-by", "Portico/" PORTICO_VERSION);
    if (auto h = conf.find("response_headers"); h != conf.end()) {
      for (auto it = h->begin(); it != h->end(); ++it) {
        std::string value = it->is_string() ? it->get<std::string>() : it->dump();
        if (base::iequals(it.key(), "content-type")) {
          content_type_ = std::move(value);  // replaces content_type rather than adding a second field
        } else {
          headers_.emplace_back(it.key(), std::move(value));
        }
      }
    }
  }

  void access(RequestContext& ctx) const override {
    std::string body;
    Expansion out(body, Escape::body);
    body_.expand(ctx, nullptr, out);
    ctx.respond(status_, std::move(body), content_type_);
    ctx.reply.headers.insert(ctx.reply.headers.end(), headers_.begin(), headers_.end());
    ctx.delay(delay_);
  }

 private:
  int status_ = 200;
  std::string content_type_;
  double delay_ = 0;
  Template body_;
  std::vector<std::pair<std::string, std::string>> headers_;
};

}  // namespace

constinit const detail::Factory detail::make_mocking = detail::construct<Mocking>;

}  // namespace portico::plugins
