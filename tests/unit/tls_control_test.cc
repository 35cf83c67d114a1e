// The control channels' TLS (tls/control_tls.h): the node identity a verified client certificate names (first
// DNS subjectAltName, else CN; a name that is no node id is refused by the sync listener's rule), and server
// contexts refused at start when their files do not fit. Handshakes run in memory (a BIO pair) against the
// real context; certificates are generated at test time (tls_test_certs.h) and written to a temp directory.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

#include "controlplane/resources.h"
#include "tls/control_tls.h"
#include "tls_test_certs.h"

namespace portico::tls {
namespace {

using test_certs::make_cert;
using test_certs::Pem;

const Pem& ca() {
  static const Pem p = make_cert("control-ca", false);
  return p;
}
const Pem& server() {
  static const Pem p = make_cert("cp.example", false, &ca(), {"cp.example"});
  return p;
}

class TempDir {
 public:
  TempDir() {
    path_ = std::filesystem::temp_directory_path() /
            ("portico-tls-control-" + std::to_string(::getpid()) + "-" + std::to_string(counter_++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string write(const std::string& name, const std::string& text) const {
    const std::string file = (path_ / name).string();
    std::ofstream(file) << text;
    return file;
  }

 private:
  static inline int counter_ = 0;
  std::filesystem::path path_;
};

// A handshake of a client presenting `client` (none when null) with a server built from `files`; the server's
// peer_identity(), or "FAILED" when the handshake fails.
std::string identity_seen(const ServerFiles& files, const Pem* client) {
  auto context = make_server_context(files);
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, nullptr);
  SSL* c = SSL_new(cctx);
  if (client != nullptr) {
    BIO* b = BIO_new_mem_buf(client->cert.data(), -1);
    X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    b = BIO_new_mem_buf(client->key.data(), -1);
    EVP_PKEY* k = PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    SSL_use_certificate(c, x);
    SSL_use_PrivateKey(c, k);
    X509_free(x);
    EVP_PKEY_free(k);
  }
  SSL* s = SSL_new(context->native_handle());
  BIO *cb = nullptr, *sb = nullptr;
  BIO_new_bio_pair(&cb, 0, &sb, 0);
  SSL_set_bio(c, cb, cb);
  SSL_set_bio(s, sb, sb);
  SSL_set_connect_state(c);
  SSL_set_accept_state(s);
  bool cdone = false, sdone = false, failed = false;
  for (int i = 0; i < 20 && !(cdone && sdone) && !failed; ++i) {
    if (!cdone) {
      const int rc = SSL_do_handshake(c);
      if (rc == 1) {
        cdone = true;
      } else if (SSL_get_error(c, rc) != SSL_ERROR_WANT_READ) {
        failed = true;
      }
    }
    if (!sdone && !failed) {
      const int rc = SSL_do_handshake(s);
      if (rc == 1) {
        sdone = true;
      } else if (SSL_get_error(s, rc) != SSL_ERROR_WANT_READ) {
        failed = true;
      }
    }
  }
  // With TLS 1.3 the server checks the client's certificate in its last step: done means it passed.
  const std::string out = cdone && sdone ? peer_identity(s) : "FAILED";
  SSL_free(c);
  SSL_free(s);
  SSL_CTX_free(cctx);
  ERR_clear_error();
  return out;
}

struct MtlsFiles {
  TempDir dir;
  ServerFiles files;
  explicit MtlsFiles(bool require) {
    files.cert_file = dir.write("server.crt", server().cert);
    files.key_file = dir.write("server.key", server().key);
    files.client_ca_file = dir.write("ca.crt", ca().cert);
    files.require_client_cert = require;
  }
};

TEST(ControlTls, IdentityIsTheFirstDnsSubjectAltName) {
  MtlsFiles m(true);
  const Pem client = make_cert("cn-name", false, &ca(), {"dp-1.example", "dp-2.example"});
  EXPECT_EQ(identity_seen(m.files, &client), "dp-1.example");
}

TEST(ControlTls, IdentityFallsBackToTheCommonName) {
  MtlsFiles m(true);
  const Pem client = make_cert("dp7", false, &ca());
  EXPECT_EQ(identity_seen(m.files, &client), "dp7");
}

TEST(ControlTls, CertificateNamingNothingHasNoIdentity) {
  MtlsFiles m(true);
  const Pem client = make_cert("", false, &ca());
  EXPECT_EQ(identity_seen(m.files, &client), "");
}

TEST(ControlTls, IdentityThatIsNoNodeIdIsRefused) {
  // The sync listener refuses such an identity with the node id rule (control_plane.cc check_identity).
  MtlsFiles m(true);
  const Pem spaced = make_cert("dp 1", false, &ca());
  const Pem dotdot = make_cert("..", false, &ca());
  // A CN holds at most 64 characters: a longer name comes as a subjectAltName.
  const Pem long_name = make_cert("dp1", false, &ca(), {std::string(65, 'a')});
  for (const Pem* client : {&spaced, &dotdot, &long_name}) {
    const std::string id = identity_seen(m.files, client);
    ASSERT_NE(id, "FAILED");
    ASSERT_FALSE(id.empty());
    EXPECT_FALSE(controlplane::valid_id(id)) << id;
  }
  const Pem good = make_cert("dp-1_a.b", false, &ca());
  EXPECT_TRUE(controlplane::valid_id(identity_seen(m.files, &good)));
}

TEST(ControlTls, NoOrUnverifiedCertificate) {
  MtlsFiles optional(false);
  EXPECT_EQ(identity_seen(optional.files, nullptr), "");  // token users: no certificate, no identity
  MtlsFiles required(true);
  EXPECT_EQ(identity_seen(required.files, nullptr), "FAILED");
  const Pem stranger = make_cert("dp1", false);  // self-signed, not by the CA
  EXPECT_EQ(identity_seen(required.files, &stranger), "FAILED");
  EXPECT_EQ(identity_seen(optional.files, &stranger), "FAILED");
}

TEST(ControlTls, KeyThatDoesNotMatchTheCertificateIsRefused) {
  TempDir dir;
  ServerFiles files;
  files.cert_file = dir.write("server.crt", server().cert);
  // Another EC key, then a key of another type (RSA for an ECDSA certificate).
  for (bool rsa : {false, true}) {
    SCOPED_TRACE(rsa ? "rsa key" : "ec key");
    files.key_file = dir.write("other.key", make_cert("other", rsa).key);
    try {
      make_server_context(files);
      ADD_FAILURE() << "a mismatched key was accepted";
    } catch (const std::runtime_error& e) {
      const std::string what = e.what();
      EXPECT_NE(what.find("the TLS key does not match the certificate " + files.cert_file), std::string::npos)
          << what;
      EXPECT_NE(what.find(files.key_file), std::string::npos) << what;
    }
  }
  files.key_file = dir.write("server.key", server().key);
  EXPECT_NE(make_server_context(files), nullptr);
}

TEST(ControlTls, UnreadableOrMissingFilesAreNamed) {
  TempDir dir;
  ServerFiles files;
  files.cert_file = dir.write("server.crt", server().cert);
  files.key_file = dir.write("server.key", "not a key");
  try {
    make_server_context(files);
    FAIL() << "a key file without a key was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("cannot load the TLS key " + files.key_file), std::string::npos)
        << e.what();
  }
  files.key_file.clear();
  EXPECT_THROW(make_server_context(files), std::runtime_error);
}

}  // namespace
}  // namespace portico::tls
