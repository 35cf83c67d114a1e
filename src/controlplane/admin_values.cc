// Answers and values shared by the Admin API's verbs (admin_values.h).
#include "controlplane/admin_values.h"

#include <openssl/rand.h>

#include <chrono>
#include <cstdio>

#include "config/json_input.h"
#include "config/plugin_secrets.h"

namespace portico::controlplane::detail {

using admin::AdminResponse;
using admin::error_response;
using nlohmann::json;

namespace {

json errors_json(const config::Errors& errors) {
  json list = json::array();
  for (const config::FieldError& e : errors.list()) list.push_back({{"path", e.path}, {"reason", e.reason}});
  return list;
}

// The value as shown to clients: an SSL's private keys never leave the control plane, an upstream's
// tls.client_key is shown as a token (or left out without a keyring), and plugin secrets
// (a consumer's credentials, a limit plugin's redis_password) are shown as tokens only. A credential shows
// its own id, as APISIX stores it (the copy holds the full one, "<username>/credentials/<id>", which is the
// key's tail).
std::string presentable(Kind kind, const std::string& key, const std::string& raw) {
  std::optional<json> parsed = parse_stored(raw);
  if (!parsed) return quote(raw);  // written into etcd by hand; shown as a string
  json& v = *parsed;
  if (!v.is_object()) return v.dump();
  if (kind == Kind::ssls) {
    v.erase("key");
    v.erase("keys");
  }
  if (kind == Kind::upstreams) config::conceal_upstream_client_key(v);
  if (kind == Kind::routes || kind == Kind::services) {
    if (auto upstream = v.find("upstream"); upstream != v.end())
      config::conceal_upstream_client_key(*upstream);
  }
  if (auto plugins = v.find("plugins"); plugins != v.end()) {
    config::conceal_secret_fields(*plugins, kind == Kind::consumers || kind == Kind::credentials);
  }
  if (kind == Kind::credentials) v["id"] = key.substr(key.rfind('/') + 1);
  return v.dump();
}

}  // namespace

AdminResponse not_found() {
  return AdminResponse{404, R"({"message":"Key not found"})", {}};
}

AdminResponse store_failure(const store::Status& s) {
  switch (s.code) {
    case store::Code::invalid:
      return error_response(s.message.find("too large") != std::string::npos ? 413 : 400,
                            "etcd refused the request: " + s.message);
    case store::Code::unavailable:
      if (s.maybe_applied) {
        return error_response(503, "etcd did not confirm the write in time (" + s.message +
                                       "): it may still be applied; read the resource before retrying");
      }
      return error_response(503,
                            "etcd unavailable (" + s.message +
                                "): nothing was written; writes are refused until etcd has a quorum again");
    default:
      return error_response(500, "etcd answered unexpectedly: " + s.message);
  }
}

AdminResponse invalid(const config::Errors& errors, std::string_view what) {
  std::string summary;
  for (const config::FieldError& e : errors.list()) {
    if (!summary.empty()) summary += "; ";
    summary += e.path.empty() ? e.reason : e.path + ": " + e.reason;
  }
  if (errors.truncated()) summary += "; ...";
  json body = {{"error_msg", std::string(what) + summary}, {"errors", errors_json(errors)}};
  return AdminResponse{400, body.dump(), {}};
}

std::string quote(std::string_view s) {
  return json(std::string(s)).dump();
}

bool parse_revision_tag(std::string_view text, int64_t& out) {
  if (text.starts_with("W/")) text.remove_prefix(2);
  if (text.size() >= 2 && text.front() == '"' && text.back() == '"') text = text.substr(1, text.size() - 2);
  return parse_decimal(text, out);
}

void add_revision_headers(AdminResponse& r, int64_t revision, int64_t modified) {
  if (modified > 0) r.headers.emplace_back("ETag", "\"" + std::to_string(modified) + "\"");
  if (revision > 0) r.headers.emplace_back("X-Portico-Revision", std::to_string(revision));
}

std::optional<json> parse_stored(const std::string& text) {
  config::Errors ignored(1);
  return config::parse_json(text, ignored);
}

std::string item_json(Kind kind, const std::string& key, const std::string& value, int64_t created,
                      int64_t modified) {
  return "{\"key\":" + quote(key) + ",\"value\":" + presentable(kind, key, value) +
         ",\"createdIndex\":" + std::to_string(created) + ",\"modifiedIndex\":" + std::to_string(modified) +
         "}";
}

std::string generate_id() {
  uint32_t random = 0;
  RAND_bytes(reinterpret_cast<unsigned char*>(&random), sizeof random);
  auto micros = std::chrono::duration_cast<std::chrono::microseconds>(
                    std::chrono::system_clock::now().time_since_epoch())
                    .count();
  char buf[32];
  std::snprintf(buf, sizeof buf, "%016lld%04u", static_cast<long long>(micros), random % 10000);
  return buf;
}

bool apply_patch(json& value, const std::string& sub_path, const json& patch, std::string& why) {
  if (sub_path.empty()) {
    if (!patch.is_object()) {
      why = "a PATCH body must be a JSON object (a merge patch); to replace a field, PATCH its sub-path";
      return false;
    }
    value.merge_patch(patch);
    return true;
  }
  try {
    json::json_pointer pointer(sub_path);
    if (patch.is_null()) {
      json& parent = value.at(pointer.parent_pointer());
      if (parent.is_object()) parent.erase(pointer.back());
    } else {
      value[pointer] = patch;
    }
  } catch (const json::exception& e) {
    why = "cannot apply the PATCH at '" + sub_path + "': " + e.what();
    return false;
  }
  return true;
}

bool encrypt_secrets(Kind kind, json& value, config::Errors& errors) {
  std::string field, why;
  if (kind == Kind::upstreams && !config::encrypt_upstream_client_key(value, why)) {
    errors.add("tls.client_key", why);
    return false;
  }
  if (kind == Kind::routes || kind == Kind::services) {
    auto upstream = value.find("upstream");
    if (upstream != value.end() && !config::encrypt_upstream_client_key(*upstream, why)) {
      errors.add("upstream.tls.client_key", why);
      return false;
    }
  }
  auto plugins = value.find("plugins");
  if (plugins == value.end()) return true;
  if (config::encrypt_secret_fields(*plugins, kind == Kind::consumers || kind == Kind::credentials, field,
                                    why))
    return true;
  errors.add("plugins." + field, why);
  return false;
}

}  // namespace portico::controlplane::detail
