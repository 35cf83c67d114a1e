// Secret fields of plugin configurations as the Admin API stores and shows them (docs/secrets.md): the
// `encrypt_fields` of each plugin (config/plugin_catalog.h has_secrets: an authentication plugin's in a
// consumer's or a credential's `plugins`, any other plugin's wherever it is configured). Stored values are
// always `$ENC$` tokens of the process keyring (config/secrets.h), so etcd, data-plane caches and S3
// snapshots never hold a credential in clear; answers show tokens too. An upstream's tls.client_key is
// handled the same way (encrypt_upstream_client_key); validate_upstream.cc decrypts it.
//
// Stateless; any thread.
#pragma once

#include <string>

#include <nlohmann/json_fwd.hpp>

namespace portico::config {

// Before a write: every secret field given in clear is encrypted with the process keyring; one given as a
// token is kept only if the keyring decrypts it (so a GET-then-PUT round trip works, and a token that cannot
// be read is never stored), and re-encrypted with the keyring's first key when an older key made it (so
// that, after a rotation, a GET then a PUT moves a value to the new key). False on the first field that
// cannot be kept or encrypted, with `field` (its path below `plugins`: "key-auth.key") and `error` set;
// `plugins` is then partly rewritten and must not be stored. Anything that is not a mapping of plugin
// objects, or a secret that is not a string, is left to the validator.
// `consumer_resource`: `plugins` is a consumer's or a credential's.
bool encrypt_secret_fields(nlohmann::json& plugins, bool consumer_resource, std::string& field,
                           std::string& error);

// Before an answer: a secret field still in clear (a value written into etcd by hand) is shown as a token
// of the process keyring, or as "******" when there is none, never as it is.
void conceal_secret_fields(nlohmann::json& plugins, bool consumer_resource);

// An upstream's tls.client_key (`upstream`: an upstream resource, or a route's or service's inline
// `upstream`), as APISIX encrypts it: before a write, encrypted with the process keyring by the rules above
// (without a keyring a key in clear is stored in clear); false with `error` when it cannot be kept.
bool encrypt_upstream_client_key(nlohmann::json& upstream, std::string& error);
// Before an answer: a key in clear is shown as a token, or left out when there is no keyring.
void conceal_upstream_client_key(nlohmann::json& upstream);

}  // namespace portico::config
