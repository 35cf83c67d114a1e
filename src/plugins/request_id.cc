// request-id (APISIX 3.x): gives each request an id in `header_name` (X-Request-Id), sent upstream and, with
// `include_in_response`, to the client when the response does not carry that header already. A non-empty id
// the client sent (or an earlier plugin set, e.g. a global rule's request-id) is kept, as in APISIX. The id
// is also ctx.request_id, for the access log and the `$request_id` template variable. Generators:
// request_ids.h.
#include <chrono>

#include <nlohmann/json.hpp>

#include "base/ascii.h"
#include "plugins/factories.h"
#include "plugins/request_ids.h"

namespace portico::plugins {

namespace {

enum class Algorithm : uint8_t { uuid, nanoid, range_id, ksuid };

class RequestId final : public Plugin {
 public:
  RequestId(const nlohmann::json& conf, int priority)
      : Plugin("request-id", priority,
               conf.at("include_in_response").get<bool>() ? kRewrite | kResponse : kRewrite),
        header_(conf.at("header_name").get<std::string>()) {
    const std::string algorithm = conf.at("algorithm").get<std::string>();
    algorithm_ = algorithm == "nanoid"     ? Algorithm::nanoid
                 : algorithm == "range_id" ? Algorithm::range_id
                 : algorithm == "ksuid"    ? Algorithm::ksuid
                                           : Algorithm::uuid;
    const nlohmann::json& range = conf.at("range_id");
    range_length_ = range.at("length").get<size_t>();
    char_set_ = range.at("char_set").get<std::string>();
  }

  void rewrite(RequestContext& ctx) const override {
    std::string_view sent = current(ctx);
    if (!sent.empty()) {
      ctx.request_id.assign(sent);
      return;
    }
    ctx.request_id.clear();
    switch (algorithm_) {
      case Algorithm::uuid:
        ids::uuid_v4(ctx.request_id);
        break;
      case Algorithm::nanoid:
        ids::nanoid(ctx.request_id);
        break;
      case Algorithm::range_id:
        ids::range_id(char_set_, range_length_, ctx.request_id);
        break;
      case Algorithm::ksuid: {
        const auto now = std::chrono::system_clock::now().time_since_epoch();
        ids::ksuid(static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::seconds>(now).count()),
                   ctx.request_id);
        break;
      }
    }
    ctx.set_upstream_header(header_, ctx.request_id);
  }

  void on_response(RequestContext& ctx, const ResponseInfo& info) const override {
    if (ctx.request_id.empty()) return;  // the request phases did not reach this plugin
    if (info.upstream != nullptr && !info.upstream->find(header_).empty()) return;
    ctx.response.headers.push(HeaderEdit::Op::set, header_, ctx.request_id);
  }

 private:
  // The id the request carries so far: the last value an earlier plugin set, else the client's.
  std::string_view current(const RequestContext& ctx) const {
    const auto& edits = ctx.upstream.headers;
    for (size_t i = edits.size(); i-- > 0;) {
      if (edits[i].op != HeaderEdit::Op::add && base::iequals(edits[i].name, header_)) return edits[i].value;
    }
    return ctx.header(header_);
  }

  std::string header_;
  Algorithm algorithm_ = Algorithm::uuid;
  size_t range_length_ = 16;
  std::string char_set_;
};

}  // namespace

constinit const detail::Factory detail::make_request_id = detail::construct<RequestId>;

}  // namespace portico::plugins
