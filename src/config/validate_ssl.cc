// SSLs: certificate/key pairs checked with OpenSSL (the certificate and its chain parse, the key parses and
// matches the certificate's public key), SNIs, type and status.
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/tls1.h>
#include <openssl/x509.h>

#include <algorithm>
#include <memory>

#include "config/fields.h"
#include "config/resource_schemas.h"
#include "config/resources.h"
#include "config/schema.h"

namespace portico::config {
namespace detail {
namespace {

struct BioFree {
  void operator()(BIO* b) const { BIO_free(b); }
};
struct X509Free {
  void operator()(X509* x) const { X509_free(x); }
};
struct PkeyFree {
  void operator()(EVP_PKEY* k) const { EVP_PKEY_free(k); }
};
using BioPtr = std::unique_ptr<BIO, BioFree>;
using X509Ptr = std::unique_ptr<X509, X509Free>;
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;

// OpenSSL's error queue is per thread; leave it empty so that no later TLS call in this thread sees our
// errors.
struct ClearErrors {
  ~ClearErrors() { ERR_clear_error(); }
};

// Never prompt on the terminal for a passphrase (OpenSSL's default callback would).
int no_passphrase(char*, int, int, void*) {
  return -1;
}

// " (why)" for a PEM text OpenSSL refused: no PEM block at all, or OpenSSL's first queued error.
std::string openssl_detail(const std::string& pem) {
  if (pem.find("-----BEGIN ") == std::string::npos) return " (no \"-----BEGIN\" line)";
  const char* reason = ERR_reason_error_string(ERR_peek_error());
  if (reason == nullptr) return {};
  if (std::string_view(reason) == "unsupported") return " (unsupported or malformed)";  // OpenSSL 3 decoders
  return std::string(" (") + reason + ")";
}

BioPtr memory_bio(const std::string& text) {
  return BioPtr(BIO_new_mem_buf(text.data(), static_cast<int>(text.size())));
}

// A PEM text field (cert, key, certs[i], keys[i]) the schema accepted as a string of at most 64 KiB: not a
// secret reference.
bool read_pem(const json& v, const Path& p, Errors& e, std::string& out) {
  if (!v.is_string()) return false;
  out = v.get<std::string>();
  if (out.starts_with("$secret://") || out.starts_with("$env://")) {
    fail(e, p, "secret references ($secret://, $env://) are not supported by this version");
    return false;
  }
  return true;
}

// The first certificate of `pem` (any further ones, its chain, must parse too). Empty when fine.
std::string parse_cert(const std::string& pem, X509Ptr& leaf) {
  ClearErrors clear;
  BioPtr bio = memory_bio(pem);
  if (!bio) return "cannot be read (out of memory)";
  leaf.reset(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
  if (!leaf) return "not a PEM certificate" + openssl_detail(pem);
  for (int n = 2;; ++n) {
    ERR_clear_error();
    X509Ptr extra(PEM_read_bio_X509(bio.get(), nullptr, no_passphrase, nullptr));
    if (extra) continue;
    const unsigned long err = ERR_peek_last_error();
    if (ERR_GET_LIB(err) == ERR_LIB_PEM && ERR_GET_REASON(err) == PEM_R_NO_START_LINE) return {};  // the end
    return "certificate " + std::to_string(n) + " of the chain is not a valid PEM certificate" +
           openssl_detail(pem);
  }
}

std::string parse_key(const std::string& pem, PkeyPtr& key) {
  ClearErrors clear;
  BioPtr bio = memory_bio(pem);
  if (!bio) return "cannot be read (out of memory)";
  key.reset(PEM_read_bio_PrivateKey(bio.get(), nullptr, no_passphrase, nullptr));
  if (key) return {};
  if (pem.find("ENCRYPTED") != std::string::npos) {
    return "is encrypted with a passphrase, which is not supported (store the key unencrypted)";
  }
  return "not a PEM private key" + openssl_detail(pem);
}

// Checks one cert/key pair, reporting at the field to blame. `cert_name` names the certificate in the key's
// error ("cert", "certs[1]").
void check_pair(const std::string& cert, const Path& cert_path, const std::string& key, const Path& key_path,
                const std::string& cert_name, Errors& e) {
  X509Ptr x509;
  PkeyPtr pkey;
  std::string cert_reason = parse_cert(cert, x509);
  if (!cert_reason.empty()) fail(e, cert_path, std::move(cert_reason));
  std::string key_reason = parse_key(key, pkey);
  if (!key_reason.empty()) fail(e, key_path, std::move(key_reason));
  if (!x509 || !pkey) return;
  ClearErrors clear;
  if (X509_check_private_key(x509.get(), pkey.get()) != 1) fail(e, key_path, "does not match " + cert_name);
}

// An SNI the schema accepted as a string: a host name, "*.suffix" or "*" (any name); lower-cased.
bool read_sni(const json& v, const Path& p, Errors& e, std::string& out) {
  if (!v.is_string()) return false;
  out = v.get<std::string>();
  if (out == "*") return true;
  std::string reason = check_host_pattern(out);
  if (reason.empty() && (out.front() == '[' || is_ip_literal(out))) {
    reason = "must be a host name: TLS clients never send an IP address as SNI";
  }
  if (reason.empty()) return true;
  fail(e, p, std::move(reason));
  return false;
}

void read_pem_list(const json* v, const Path& p, Errors& e, std::vector<std::string>& out) {
  if (v == nullptr || !v->is_array()) return;
  out.reserve(v->size());
  for (size_t i = 0; i < v->size(); ++i) {
    std::string pem;
    if (read_pem((*v)[i], p.index(i), e, pem)) out.push_back(std::move(pem));
  }
}

// ssl_protocols as the schema accepted it (unique items of APISIX's enum). "TLSv1.1" is refused rather than
// ignored: Portico never speaks TLS 1.1 or older, and a list asking for it says the operator expects clients
// that will fail.
void read_protocols(const json& v, const Path& p, Errors& e, std::vector<int>& out) {
  for (size_t i = 0; i < v.size(); ++i) {
    if (v[i] == "TLSv1.2") {
      out.push_back(TLS1_2_VERSION);
    } else if (v[i] == "TLSv1.3") {
      out.push_back(TLS1_3_VERSION);
    } else if (v[i] == "TLSv1.1") {
      fail(e, p.index(i), "TLSv1.1 is not supported: Portico speaks TLS 1.2 and 1.3 only");
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
}

const json* member(const json& v, const char* key) {
  auto it = v.find(key);
  return it == v.end() ? nullptr : &*it;
}

}  // namespace

// The schema first (resource_schemas.cc), then what it cannot say: TLSv1.1, the skip_mtls_uri_regex
// patterns, integer ids written as floats, secret references, SNI patterns and duplicates, sni or snis,
// certs pairing with keys, and last what OpenSSL makes of the PEM texts.
std::optional<Ssl> ssl_at(const json& v, const Path& p, Errors& e, const ValidateOptions& options) {
  const size_t before = e.total();
  resource_schema(ResourceKind::ssl, options.id_required).check(v, p, e);
  if (!v.is_object()) return std::nullopt;
  Ssl ssl;
  if (const json* protocols = member(v, "ssl_protocols"); protocols != nullptr && protocols->is_array())
    read_protocols(*protocols, p.key("ssl_protocols"), e, ssl.ssl_protocols);
  if (const json* client = member(v, "client"); client != nullptr && client->is_object()) {
    const Path cp = p.key("client");
    // Duplicates are the schema's (uniqueItems); each pattern must compile, as the snapshot compiles it.
    if (const json* skip = member(*client, "skip_mtls_uri_regex"); skip != nullptr && skip->is_array()) {
      const Path sp = cp.key("skip_mtls_uri_regex");
      for (size_t i = 0; i < skip->size(); ++i) {
        if (!(*skip)[i].is_string()) continue;
        std::string pattern = (*skip)[i].get<std::string>();
        if (std::string reason = check_regex(pattern, false); !reason.empty()) {
          fail(e, sp.index(i), std::move(reason));
        } else {
          ssl.skip_mtls_uri_regex.push_back(std::move(pattern));
        }
      }
    }
    if (const json* ca = member(*client, "ca");
        ca != nullptr && read_pem(*ca, cp.key("ca"), e, ssl.client_ca)) {
      X509Ptr first;
      std::string reason = parse_cert(ssl.client_ca, first);
      if (!reason.empty()) {
        fail(e, cp.key("ca"), std::move(reason));
        ssl.client_ca.clear();
      }
    }
    if (const json* depth = member(*client, "depth"); depth != nullptr && depth->is_number_integer())
      ssl.client_depth = static_cast<int>(std::min<int64_t>(depth->get<int64_t>(), 100));
  }
  check_integer_id(v, p, e);
  if (const json* id = member(v, "id")) ssl.id = peek_id(*id);
  // Empty when refused: the OpenSSL checks below skip it.
  if (const json* cert = member(v, "cert"); cert != nullptr && !read_pem(*cert, p.key("cert"), e, ssl.cert))
    ssl.cert.clear();
  if (const json* key = member(v, "key"); key != nullptr && !read_pem(*key, p.key("key"), e, ssl.key))
    ssl.key.clear();
  if (const json* type = member(v, "type"); type != nullptr && *type == "client") ssl.type = SslType::client;
  if (const json* status = member(v, "status"); status != nullptr && status->is_number())
    ssl.enabled = status->get<double>() != 0;
  const json* sni = member(v, "sni");
  const json* snis = member(v, "snis");
  const json* certs = member(v, "certs");
  const json* keys = member(v, "keys");
  if (sni != nullptr && snis != nullptr) {
    fail(e, p.key("snis"), "set either sni or snis, not both");
  } else if (sni != nullptr) {
    std::string name;
    if (read_sni(*sni, p.key("sni"), e, name)) ssl.snis.push_back(std::move(name));
  } else if (snis != nullptr) {
    if (snis->is_array() && !snis->empty()) {
      read_string_list(
          *snis, p.key("snis"), e, 1, ssl.snis,
          [&](const json& item, const Path& ip, std::string& out) { return read_sni(item, ip, e, out); });
    }
  } else if (ssl.type == SslType::server) {
    fail(e, p.key("snis"), "is required for a server certificate (set sni or snis)");
  }
  read_pem_list(certs, p.key("certs"), e, ssl.certs);
  read_pem_list(keys, p.key("keys"), e, ssl.keys);
  const size_t cert_count = certs != nullptr && certs->is_array() ? certs->size() : 0;
  const size_t key_count = keys != nullptr && keys->is_array() ? keys->size() : 0;
  if (cert_count != key_count) {
    fail(e, p.key(keys != nullptr ? "keys" : "certs"),
         "certs and keys must pair up: " + std::to_string(cert_count) + " certs, " +
             std::to_string(key_count) + " keys");
  }
  // The OpenSSL checks come last and only for well-formed fields, so a pair is blamed once.
  if (!ssl.cert.empty() && !ssl.key.empty())
    check_pair(ssl.cert, p.key("cert"), ssl.key, p.key("key"), "cert", e);
  if (ssl.certs.size() == cert_count && ssl.keys.size() == key_count && cert_count == key_count) {
    const Path certs_path = p.key("certs");
    const Path keys_path = p.key("keys");
    for (size_t i = 0; i < cert_count; ++i) {
      check_pair(ssl.certs[i], certs_path.index(i), ssl.keys[i], keys_path.index(i),
                 "certs[" + std::to_string(i) + "]", e);
    }
  }
  if (e.total() != before) return std::nullopt;
  return ssl;
}

}  // namespace detail

std::optional<Ssl> validate_ssl(const nlohmann::json& ssl, std::string_view path_prefix, Errors& errors,
                                const ValidateOptions& options) {
  return detail::ssl_at(ssl, detail::Path(path_prefix), errors, options);
}

}  // namespace portico::config
