// Consumers, credentials, global rules and plugin configs: the resources made of descriptive fields and
// plugins. Each is checked in three steps: its schema (resource_schemas.h: types, required and unknown
// fields, lengths, patterns, with the engine's reasons), then what a schema cannot say (the plugins'
// configurations through read_plugins, an integer id written as a float, group_id), then the model is built
// from the checked value. SSLs live in validate_ssl.cc, routes and services in validate_route.cc.
#include <algorithm>
#include <cctype>

#include "config/resource_schemas.h"
#include "config/resources.h"
#include "config/schema.h"

namespace portico::config {
namespace detail {
namespace {

bool is_username_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '-';
}

// The schema's first: for a value that is not even an object, nothing else can be said.
bool check_schema(ResourceKind kind, const json& v, const Path& p, Errors& e,
                  const ValidateOptions& options) {
  resource_schema(kind, options.id_required).check(v, p, e);
  return v.is_object();
}

const json* member(const json& v, const char* key) {
  auto it = v.find(key);
  return it == v.end() ? nullptr : &*it;
}

// `plugins` when the schema found an object there (otherwise it already said so).
void check_plugins(const json& v, const Path& p, Errors& e, PluginScope scope, PluginSettings& out) {
  const json* plugins = member(v, "plugins");
  if (plugins != nullptr && plugins->is_object()) read_plugins(*plugins, p.key("plugins"), e, out, scope);
}

std::string text_of(const json& v, const char* key) {
  const json* f = member(v, key);
  return f != nullptr ? f->get<std::string>() : std::string();
}

Labels labels_of(const json& v) {
  Labels out;
  if (const json* labels = member(v, "labels")) {
    for (auto it = labels->begin(); it != labels->end(); ++it)  // nlohmann keeps keys sorted
      out.emplace_back(it.key(), it.value().get<std::string>());
  }
  return out;
}

}  // namespace

// The schema lets any integer through, 5.0 and 1e300 included; an id is kept as its decimal text, so it
// must be written as an integer that text can hold. Silent when the schema already refused the value.
void check_integer_id(const json& v, const Path& p, Errors& e, const char* key) {
  const json* id = member(v, key);
  if (id == nullptr || !id->is_number_float() || !json_type_is(*id, "integer") || id->get<double>() < 1)
    return;
  fail(e, p.key(key), "an integer id must be written without a fraction or an exponent, got " + id->dump());
}

std::string peek_username(const json& v) {
  if (!v.is_string()) return {};
  const std::string& s = v.get_ref<const std::string&>();
  if (s.empty() || s.size() > 256 || !std::all_of(s.begin(), s.end(), is_username_char)) return {};
  return s;
}

std::optional<Consumer> consumer_at(const json& v, const Path& p, Errors& e, const ValidateOptions& options) {
  const size_t before = e.total();
  if (!check_schema(ResourceKind::consumer, v, p, e, options)) return std::nullopt;
  if (member(v, "group_id") != nullptr) {
    fail(e, p.key("group_id"),
         "'group_id' is not supported by this version (consumer groups are not supported)");
  }
  PluginSettings plugins;
  check_plugins(v, p, e, PluginScope::consumer, plugins);
  if (e.total() != before) return std::nullopt;
  Consumer consumer;
  consumer.username = text_of(v, "username");
  consumer.desc = text_of(v, "desc");
  consumer.labels = labels_of(v);
  consumer.max_body_size = plugins.max_body_size;
  consumer.plugins = std::move(plugins.plugins);
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
  const size_t before = e.total();
  if (!check_schema(ResourceKind::credential, v, p, e, options)) return std::nullopt;
  PluginSettings plugins;
  // More than one plugin is the schema's error (maxProperties); their contents would only add noise.
  if (const json* given = member(v, "plugins"); given != nullptr && given->size() <= 1)
    check_plugins(v, p, e, PluginScope::credential, plugins);
  if (e.total() != before) return std::nullopt;
  Credential credential;
  if (const json* id = member(v, "id")) {
    credential.id = id->get<std::string>();
    std::string_view username, own_id;
    split_credential_id(credential.id, username, own_id);  // the schema's pattern matched
    credential.username = std::string(username);
    credential.credential_id = std::string(own_id);
  }
  credential.name = text_of(v, "name");
  credential.desc = text_of(v, "desc");
  credential.labels = labels_of(v);
  credential.plugins = std::move(plugins.plugins);
  return credential;
}

std::optional<GlobalRule> global_rule_at(const json& v, const Path& p, Errors& e,
                                         const ValidateOptions& options) {
  const size_t before = e.total();
  if (!check_schema(ResourceKind::global_rule, v, p, e, options)) return std::nullopt;
  check_integer_id(v, p, e);
  PluginSettings plugins;
  check_plugins(v, p, e, PluginScope::route, plugins);
  if (e.total() != before) return std::nullopt;
  GlobalRule rule;
  if (const json* id = member(v, "id")) rule.id = peek_id(*id);
  rule.max_body_size = plugins.max_body_size;
  rule.plugins = std::move(plugins.plugins);
  return rule;
}

std::optional<PluginConfig> plugin_config_at(const json& v, const Path& p, Errors& e,
                                             const ValidateOptions& options) {
  const size_t before = e.total();
  if (!check_schema(ResourceKind::plugin_config, v, p, e, options)) return std::nullopt;
  check_integer_id(v, p, e);
  PluginSettings plugins;
  check_plugins(v, p, e, PluginScope::route, plugins);
  if (e.total() != before) return std::nullopt;
  PluginConfig config;
  if (const json* id = member(v, "id")) config.id = peek_id(*id);
  config.name = text_of(v, "name");
  config.desc = text_of(v, "desc");
  config.labels = labels_of(v);
  config.max_body_size = plugins.max_body_size;
  config.plugins = std::move(plugins.plugins);
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
