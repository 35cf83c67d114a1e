// Consumers, global rules and plugin configs: the resources made of descriptive fields and plugins. SSLs live
// in validate_ssl.cc, routes and services in validate_route.cc.
#include <algorithm>
#include <cctype>
#include <limits>

#include "config/resources.h"

namespace portico::config {
namespace detail {
namespace {

bool is_username_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

// APISIX 3.13+: ^[a-zA-Z0-9_\-]+$, 1 to 256 characters (earlier 3.x releases do not allow '-').
bool read_username(const json& v, const Path& p, Errors& e, std::string& out) {
  if (!read_string(v, p, e, out)) return false;
  if (out.size() > 256) {
    fail(e, p, "must be at most 256 characters long");
    return false;
  }
  for (char c : out) {
    if (!is_username_char(c)) {
      fail(e, p, std::string("must be made of letters, digits, '_' and '-', found '") + c + "'");
      return false;
    }
  }
  return true;
}

bool is_timestamp(std::string_view key) {
  return key == "create_time" || key == "update_time";
}

}  // namespace

std::string peek_username(const json& v) {
  if (!v.is_string()) return {};
  const std::string& s = v.get_ref<const std::string&>();
  if (s.empty() || s.size() > 256 || !std::all_of(s.begin(), s.end(), is_username_char)) return {};
  return s;
}

std::optional<Consumer> consumer_at(const json& v, const Path& p, Errors& e, const ValidateOptions& options) {
  if (!v.is_object()) {
    fail_type(e, p, "a mapping (a consumer)", v);
    return std::nullopt;
  }
  const size_t before = e.total();
  Consumer consumer;
  bool has_username = false;
  PluginSettings plugins;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    const json& f = it.value();
    const Path fp = p.key(k);
    if (k == "username") {
      has_username = true;
      read_username(f, fp, e, consumer.username);
    } else if (k == "id") {
      std::string ignored;  // APISIX's schema has it; consumers are keyed by username
      read_id(f, fp, e, ignored);
    } else if (k == "plugins") {
      read_plugins(f, fp, e, plugins, PluginScope::consumer);
    } else if (k == "desc") {
      read_desc(f, fp, e, &consumer.desc);
    } else if (k == "labels") {
      read_labels(f, fp, e, &consumer.labels);
    } else if (is_timestamp(k)) {
      check_meta_field(k, f, fp, e);
    } else if (k == "group_id") {
      fail(e, fp, "'group_id' is not supported by this version (consumer groups are not supported)");
    } else {
      fail_unknown(e, p, k, {"username", "id", "plugins", "desc", "labels", "create_time", "update_time"});
    }
  }
  if (!has_username && options.id_required) fail(e, p.key("username"), "is required");
  consumer.max_body_size = plugins.max_body_size;
  consumer.plugins = std::move(plugins.plugins);
  if (e.total() != before) return std::nullopt;
  return consumer;
}

bool split_credential_id(std::string_view id, std::string_view& username, std::string_view& credential_id) {
  const size_t at = id.find(kCredentialsInfix);
  if (at == std::string_view::npos) return false;
  username = id.substr(0, at);
  credential_id = id.substr(at + kCredentialsInfix.size());
  return !peek_username(json(std::string(username))).empty() && valid_id_text(credential_id);
}

std::optional<Credential> credential_at(const json& v, const Path& p, Errors& e,
                                        const ValidateOptions& options) {
  if (!v.is_object()) {
    fail_type(e, p, "a mapping (a credential)", v);
    return std::nullopt;
  }
  const size_t before = e.total();
  Credential credential;
  bool has_id = false;
  PluginSettings plugins;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    const json& f = it.value();
    const Path fp = p.key(k);
    if (k == "id") {
      has_id = true;
      std::string_view username, own_id;
      if (!f.is_string() || !split_credential_id(f.get_ref<const std::string&>(), username, own_id)) {
        fail_type(e, fp,
                  "a credential's full id \"<username>/credentials/<id>\" (a consumer's username, then an "
                  "id: 1 to 64 of letters, digits, '_', '-' or '.')",
                  f);
        continue;
      }
      credential.id = f.get<std::string>();
      credential.username = std::string(username);
      credential.credential_id = std::string(own_id);
    } else if (k == "plugins") {
      // APISIX's credential schema: `plugins` has at most one property (one credential, one plugin).
      if (f.is_object() && f.size() > 1) {
        fail(e, fp, "expect object to have at most 1 properties");
        continue;
      }
      read_plugins(f, fp, e, plugins, PluginScope::credential);
    } else if (k == "name") {
      read_name(f, fp, e, credential.name);
    } else if (k == "desc") {
      read_desc(f, fp, e, &credential.desc);
    } else if (k == "labels") {
      read_labels(f, fp, e, &credential.labels);
    } else if (is_timestamp(k)) {
      check_meta_field(k, f, fp, e);
    } else {
      fail_unknown(e, p, k, {"id", "plugins", "name", "desc", "labels", "create_time", "update_time"});
    }
  }
  if (!has_id && options.id_required) fail(e, p.key("id"), "is required");
  credential.plugins = std::move(plugins.plugins);
  if (e.total() != before) return std::nullopt;
  return credential;
}

namespace {

// What global rules and plugin configs share: an id and `plugins` (both required), and, for a plugin config
// (`described`), a `name`, a `desc` and `labels`.
struct PluginsResource {
  std::string id, name, desc;
  Labels labels;
  int64_t max_body_size = -1;
  PluginMap plugins;
};

std::optional<PluginsResource> plugins_resource_at(const json& v, const Path& p, Errors& e,
                                                   const ValidateOptions& options, std::string_view what,
                                                   bool described) {
  if (!v.is_object()) {
    fail_type(e, p, what, v);
    return std::nullopt;
  }
  const size_t before = e.total();
  PluginsResource out;
  bool has_id = false, has_plugins = false;
  PluginSettings plugins;
  for (auto it = v.begin(); it != v.end(); ++it) {
    const std::string& k = it.key();
    const json& f = it.value();
    const Path fp = p.key(k);
    if (k == "id") {
      has_id = true;
      read_id(f, fp, e, out.id);
    } else if (k == "plugins") {
      has_plugins = true;
      read_plugins(f, fp, e, plugins);
    } else if (described && k == "name") {
      read_name(f, fp, e, out.name);
    } else if (described && k == "desc") {
      read_desc(f, fp, e, &out.desc);
    } else if (described && k == "labels") {
      read_labels(f, fp, e, &out.labels);
    } else if (is_timestamp(k)) {
      check_meta_field(k, f, fp, e);
    } else if (described) {
      fail_unknown(e, p, k, {"id", "plugins", "name", "desc", "labels", "create_time", "update_time"});
    } else {
      fail_unknown(e, p, k, {"id", "plugins", "create_time", "update_time"});
    }
  }
  if (!has_id && options.id_required) fail(e, p.key("id"), "is required");
  if (!has_plugins) fail(e, p.key("plugins"), "is required");
  out.max_body_size = plugins.max_body_size;
  out.plugins = std::move(plugins.plugins);
  if (e.total() != before) return std::nullopt;
  return out;
}

}  // namespace

std::optional<GlobalRule> global_rule_at(const json& v, const Path& p, Errors& e,
                                         const ValidateOptions& options) {
  std::optional<PluginsResource> r =
      plugins_resource_at(v, p, e, options, "a mapping (a global rule)", false);
  if (!r) return std::nullopt;
  GlobalRule rule;
  rule.id = std::move(r->id);
  rule.max_body_size = r->max_body_size;
  rule.plugins = std::move(r->plugins);
  return rule;
}

std::optional<PluginConfig> plugin_config_at(const json& v, const Path& p, Errors& e,
                                             const ValidateOptions& options) {
  std::optional<PluginsResource> r =
      plugins_resource_at(v, p, e, options, "a mapping (a plugin config)", true);
  if (!r) return std::nullopt;
  PluginConfig config;
  config.id = std::move(r->id);
  config.name = std::move(r->name);
  config.desc = std::move(r->desc);
  config.labels = std::move(r->labels);
  config.max_body_size = r->max_body_size;
  config.plugins = std::move(r->plugins);
  return config;
}

}  // namespace detail

std::optional<Consumer> validate_consumer(const nlohmann::json& consumer, std::string_view path_prefix,
                                          Errors& errors, const ValidateOptions& options) {
  return detail::consumer_at(consumer, detail::Path(path_prefix), errors, options);
}

std::optional<Credential> validate_credential(const nlohmann::json& credential, std::string_view path_prefix,
                                              Errors& errors, const ValidateOptions& options) {
  return detail::credential_at(credential, detail::Path(path_prefix), errors, options);
}

bool split_credential_id(std::string_view id, std::string_view& username, std::string_view& credential_id) {
  return detail::split_credential_id(id, username, credential_id);
}

std::optional<GlobalRule> validate_global_rule(const nlohmann::json& rule, std::string_view path_prefix,
                                               Errors& errors, const ValidateOptions& options) {
  return detail::global_rule_at(rule, detail::Path(path_prefix), errors, options);
}

std::optional<PluginConfig> validate_plugin_config(const nlohmann::json& config, std::string_view path_prefix,
                                                   Errors& errors, const ValidateOptions& options) {
  return detail::plugin_config_at(config, detail::Path(path_prefix), errors, options);
}

}  // namespace portico::config
