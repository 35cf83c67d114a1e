// The process keyring (config/secrets.h) at start-up: which file, and what happens without one. Installed by
// Server::run before anything reads a configuration (etcd, the cache, a file), so that every consumer secret
// is decrypted, and every Admin API write encrypted, with it. docs/secrets.md is the operator's side.
//
// Called once, from the thread that runs the server.
#pragma once

#include <string>

#include "server/server.h"

namespace portico::server {

// With `path` (--data-encryption-keyring): loads it (config::Keyring::load_file, strict checks) for any role.
// Without: the control_plane and traditional roles use STATE_DIR/keyring, generating it (one random key,
// mode 0600, written whole then linked into place) at first start and logging where; the data_plane and
// standalone roles run without a keyring (a data plane then refuses consumers whose secrets are encrypted,
// naming the option; a file may hold secrets in clear). False, with the reason logged, when the keyring
// cannot be read or written.
bool install_keyring(Role role, const std::string& path, const std::string& state_dir);

}  // namespace portico::server
