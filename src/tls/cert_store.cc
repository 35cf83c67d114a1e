#include "tls/cert_store.h"

#include <openssl/err.h>
#include <openssl/sha.h>

#include <algorithm>
#include <cstring>
#include <stdexcept>

#include "tls/server_context.h"

namespace portico::tls {
namespace {

// The entry's SSL_CTX: the listener's policy, then what the entry adds. Empty string on success.
std::string compile_context(CertEntry& entry) {
  entry.ctx.reset(SSL_CTX_new(TLS_server_method()));
  if (!entry.ctx) return "cannot create a TLS context";
  SSL_CTX* ctx = entry.ctx.get();
  try {
    apply_server_policy(ctx);
  } catch (const std::exception& e) {
    return e.what();
  }
  for (const KeyPair& pair : entry.pairs) {
    // The chain is given (possibly empty), so OpenSSL never builds one per handshake.
    if (SSL_CTX_use_cert_and_key(ctx, pair.cert.get(), pair.key.get(), pair.chain.get(), 1) != 1) {
      ERR_clear_error();
      return "OpenSSL refuses the certificate";
    }
  }
  SSL_CTX_set_session_id_context(ctx, entry.sid_ctx, sizeof entry.sid_ctx);
  if (entry.client_ca) {
    // With skip_mtls_uri_regex the certificate is asked for, not required: the request path decides.
    SSL_CTX_set_verify(
        ctx, entry.skip_mtls.empty() ? SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT : SSL_VERIFY_PEER,
        nullptr);
    SSL_CTX_set_verify_depth(ctx, entry.client_depth);
    SSL_CTX_set1_verify_cert_store(ctx, entry.client_ca.get());
    if (entry.client_ca_names) SSL_CTX_set_client_CA_list(ctx, SSL_dup_CA_list(entry.client_ca_names.get()));
  }
  return {};
}

// Lower case, without a trailing dot; empty when the name cannot be a host name.
std::string canonical(std::string_view name) {
  if (!name.empty() && name.back() == '.') name.remove_suffix(1);
  if (name.empty() || name.size() > 253) return {};
  std::string out(name);
  for (char& c : out) {
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  }
  return out;
}

// What an entry is compiled from: an ssl whose digest is unchanged keeps the previous store's entry.
void source_digest(const config::Ssl& ssl, unsigned char out[32]) {
  std::string text;
  auto field = [&](const std::string& f) {
    text += std::to_string(f.size());
    text += ':';
    text += f;
  };
  field(ssl.id);
  field(ssl.cert);
  field(ssl.key);
  for (const std::string& c : ssl.certs) field(c);
  text += '|';
  for (const std::string& k : ssl.keys) field(k);
  field(ssl.client_ca);
  field(std::to_string(ssl.client_depth));
  text += '|';
  for (const std::string& r : ssl.skip_mtls_uri_regex) field(r);
  text += '|';
  for (int v : ssl.ssl_protocols) field(std::to_string(v));
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), out);
}

// The entry of one server ssl, its context compiled; null (and why in `problems`) when nothing can be served.
std::shared_ptr<CertEntry> compile_entry(const config::Ssl& ssl, std::vector<std::string>* problems) {
  auto entry = std::make_shared<CertEntry>();
  entry->id = ssl.id;
  auto add = [&](const std::string& cert, const std::string& key, const std::string& field) {
    KeyPair pair;
    std::string why = load_pair(cert, key, pair);
    if (!why.empty()) {
      if (problems) problems->push_back("ssls/" + ssl.id + "." + field + ": " + why);
      return;
    }
    std::string type = key_type(pair.key.get());
    // One certificate per key type: OpenSSL holds one per type, the first listed wins.
    if (std::find(entry->types.begin(), entry->types.end(), type) != entry->types.end()) return;
    entry->types.push_back(std::move(type));
    entry->pairs.push_back(std::move(pair));
  };
  add(ssl.cert, ssl.key, "cert");
  for (size_t i = 0; i < ssl.certs.size() && i < ssl.keys.size(); ++i) {
    add(ssl.certs[i], ssl.keys[i], "certs[" + std::to_string(i) + "]");
  }
  if (entry->pairs.empty()) return nullptr;
  if (!ssl.client_ca.empty()) {
    std::string why = load_ca(ssl.client_ca, entry->client_ca, &entry->client_ca_names);
    if (!why.empty()) {
      // Never serve without the client check the config asked for.
      if (problems) problems->push_back("ssls/" + ssl.id + ".client.ca: " + why);
      return nullptr;
    }
    entry->client_depth = ssl.client_depth;
    for (const std::string& pattern : ssl.skip_mtls_uri_regex) {
      plugins::Regex regex;
      std::string why;
      if (!regex.compile(pattern, false, &why)) {
        // Validated already: never serve with a laxer check than the config asked for.
        if (problems) problems->push_back("ssls/" + ssl.id + ".client.skip_mtls_uri_regex: " + why);
        return nullptr;
      }
      entry->skip_mtls.push_back(std::move(regex));
    }
  }
  if (!ssl.ssl_protocols.empty()) {
    entry->min_version = ssl.ssl_protocols.front();
    entry->max_version = ssl.ssl_protocols.back();
  }
  // A session resumes only under the same ssl and the same client check (CA, depth, certificate optional or
  // required): a ticket issued under a laxer check never skips a stricter one.
  std::string context = ssl.id;
  context += '\0';
  context += ssl.client_ca;
  context += '\0';
  context += std::to_string(ssl.client_ca.empty() ? 0 : ssl.client_depth);
  if (!entry->skip_mtls.empty()) {
    context += '\0';
    context += "optional";
  }
  SHA256(reinterpret_cast<const unsigned char*>(context.data()), context.size(), entry->sid_ctx);
  if (std::string why = compile_context(*entry); !why.empty()) {
    if (problems) problems->push_back("ssls/" + ssl.id + ": " + why);
    return nullptr;
  }
  return entry;
}

}  // namespace

std::shared_ptr<const CertStore> CertStore::build(const std::vector<config::Ssl>& ssls,
                                                  std::vector<std::string>* problems,
                                                  const CertStore* previous) {
  auto store = std::make_shared<CertStore>();
  std::unordered_map<const CertEntry*, const std::string*> client_ca_of;  // to report a shadowed mTLS ssl
  for (const config::Ssl& ssl : ssls) {
    if (ssl.type != config::SslType::server || !ssl.enabled) continue;
    unsigned char digest[32];
    source_digest(ssl, digest);
    std::shared_ptr<const CertEntry> entry;
    if (previous != nullptr) {
      // Compiling a context costs OpenSSL a fraction of a millisecond: a change to one ssl of thousands
      // recompiles that one.
      auto it = previous->by_id_.find(ssl.id);
      if (it != previous->by_id_.end() && std::memcmp(it->second->digest, digest, sizeof digest) == 0) {
        entry = it->second;
      }
    }
    if (!entry) {
      std::shared_ptr<CertEntry> fresh = compile_entry(ssl, problems);
      if (!fresh) continue;
      std::memcpy(fresh->digest, digest, sizeof digest);
      entry = std::move(fresh);
    }
    const CertEntry* e = entry.get();
    store->entries_.push_back(entry);
    store->by_id_.emplace(ssl.id, std::move(entry));
    client_ca_of[e] = &ssl.client_ca;
    if (e->client_ca) store->any_client_ca_ = true;
    // The first claimant keeps a name. Losing it silently is harmless between ssls with the same client
    // check, but an mTLS ssl shadowed by one without (or with another CA) changes who may connect: reported.
    auto claim = [&](const CertEntry*& slot, const std::string& sni) {
      if (slot == nullptr) {
        slot = e;
      } else if (problems && *client_ca_of[slot] != ssl.client_ca) {
        problems->push_back("ssls/" + ssl.id + ": sni \"" + sni + "\" is already served by ssls/" + slot->id +
                            " with a different client.ca; ssls/" + ssl.id + " is not used for it");
      }
    };
    for (const std::string& sni : ssl.snis) {
      if (sni == "*") {
        claim(store->any_, sni);
      } else if (sni.starts_with("*.")) {
        claim(store->wildcard_[canonical(sni.substr(2))], sni);
      } else {
        claim(store->exact_[canonical(sni)], sni);
      }
    }
  }
  return store;
}

bool CertEntry::allows_unverified(std::string_view path) const {
  if (!client_ca) return true;
  for (const plugins::Regex& regex : skip_mtls) {
    if (regex.search(path)) return true;
  }
  return false;
}

const CertEntry* CertStore::find(std::string_view server_name) const {
  const std::string name = canonical(server_name);
  if (!name.empty()) {
    if (auto it = exact_.find(name); it != exact_.end()) return it->second;
    // "*.example.com" covers "a.example.com", not "example.com" nor "a.b.example.com" (RFC 6125 6.4.3).
    if (size_t dot = name.find('.'); dot != std::string::npos && dot > 0) {
      if (auto it = wildcard_.find(name.substr(dot + 1)); it != wildcard_.end()) return it->second;
    }
  }
  return any_;
}

}  // namespace portico::tls
