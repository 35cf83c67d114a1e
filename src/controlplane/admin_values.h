// Private to src/controlplane: what AdminService's verbs (admin_service.cc: routing, writes, deletes;
// admin_reads.cc: reads) share. Answers: errors in APISIX's shapes, an etcd failure told apart by what the
// client can do about it, an item as listed. Values: as read from etcd (strict parse), as shown (an SSL's
// private keys dropped, plugin secrets as tokens only, a credential's own id), as written (secrets
// encrypted, merge patches, generated ids).
//
// Pure functions over their arguments (generate_id draws from OpenSSL's RNG); any thread.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "admin/admin_server.h"
#include "config/validate.h"
#include "controlplane/admin_service.h"
#include "controlplane/resources.h"
#include "store/etcd_client.h"

namespace portico::controlplane {

// What a request names: /<kind>[/<id>[<sub_path>]], or /consumers/<owner>/credentials[/<id>].
struct AdminService::Target {
  Kind kind = Kind::routes;
  std::string id;        // empty: the collection; a credential's own id ("key-1")
  std::string sub_path;  // PATCH only: "/upstream/nodes"
  std::string owner;     // credentials: the consumer's username

  // The id in the copy: a credential's full id "<owner>/credentials/<id>".
  std::string copy_id() const {
    return kind == Kind::credentials ? owner + std::string(config::kCredentialsInfix) + id : id;
  }
};

namespace detail {

admin::AdminResponse not_found();
// An etcd failure as an answer. Only Code::unavailable means "no quorum"; a request etcd refused (too large,
// invalid) is the client's to fix, and an unknown outcome must not be reported as "nothing was written".
admin::AdminResponse store_failure(const store::Status& s);
// 400 with every error, summed up in error_msg and listed under "errors".
admin::AdminResponse invalid(const config::Errors& errors, std::string_view what = "invalid configuration: ");

// `s` as a JSON string.
std::string quote(std::string_view s);
// "If-Match: 12", "If-Match: \"12\"" or "W/\"12\"" -> 12; false when unparsable.
bool parse_revision_tag(std::string_view text, int64_t& out);
// ETag (the resource's modifiedIndex) and X-Portico-Revision (the store's), each when known (> 0).
void add_revision_headers(admin::AdminResponse& r, int64_t revision, int64_t modified);

// A value read from etcd, through the strict reader: a value written by hand may be anything, and a tree too
// deep to copy or dump safely is never built. Null when it is not acceptable JSON.
std::optional<nlohmann::json> parse_stored(const std::string& text);
// {"key", "value", "createdIndex", "modifiedIndex"}, the value as shown to clients.
std::string item_json(Kind kind, const std::string& key, const std::string& value, int64_t created,
                      int64_t modified);

// 20 decimal digits, like the ids APISIX generates: time-ordered, with random low digits so two replicas
// creating at the same moment do not collide (the create transaction would refuse a collision anyway).
std::string generate_id();
// A JSON merge patch (RFC 7396) at `sub_path` ("" = the whole value, which merges; a sub-path replaces).
bool apply_patch(nlohmann::json& value, const std::string& sub_path, const nlohmann::json& patch,
                 std::string& why);
// A resource's plugin secrets encrypted in place (config/plugin_secrets.h); a token sent back
// is kept only if this keyring reads it. False with `errors` set ("plugins.<field>") otherwise.
bool encrypt_secrets(Kind kind, nlohmann::json& value, config::Errors& errors);

}  // namespace detail

}  // namespace portico::controlplane
