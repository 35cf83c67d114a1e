// The TLS store and the listener's certificate choice: SNI selection (exact, wildcard, "*", none, the default
// name), RSA vs ECDSA by what the client accepts, client certificates, a store swap between handshakes, and
// ticket key rotation. Handshakes run in memory (a BIO pair) against the real ServerContext; certificates are
// generated at test time.
#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cstring>
#include <string>

#include "tls/cert_store.h"
#include "tls/server_context.h"
#include "tls_test_certs.h"

namespace portico::tls {
namespace {

using test_certs::make_cert;
using test_certs::Pem;

const Pem& rsa_a() {
  static const Pem p = make_cert("a-rsa", true);
  return p;
}
const Pem& ec_a() {
  static const Pem p = make_cert("a-ec", false);
  return p;
}
const Pem& ec_wild() {
  static const Pem p = make_cert("wild", false);
  return p;
}
const Pem& ec_any() {
  static const Pem p = make_cert("any", false);
  return p;
}
const Pem& ca() {
  static const Pem p = make_cert("test-ca", false);
  return p;
}

config::Ssl ssl(std::string id, const Pem& pem, std::vector<std::string> snis) {
  config::Ssl s;
  s.id = std::move(id);
  s.cert = pem.cert;
  s.key = pem.key;
  s.snis = std::move(snis);
  return s;
}

// The subject CN of `x`.
std::string cn_of(X509* x) {
  if (x == nullptr) return "";
  char buf[256] = {0};
  X509_NAME_get_text_by_NID(X509_get_subject_name(x), NID_commonName, buf, sizeof buf);
  return buf;
}

struct ClientOptions {
  const char* sni = nullptr;
  const char* sigalgs = nullptr;  // e.g. "ECDSA+SHA256" (client accepts only ECDSA certificates)
  int max_version = TLS1_3_VERSION;
  const Pem* client_cert = nullptr;
  SSL_SESSION* session = nullptr;  // resume this one
  std::string alpn = {};           // wire format ("\x08http/1.1"); empty: no ALPN extension
};

struct Result {
  bool ok = false;
  std::string server_cn;  // the certificate the client received
  int client_alert = 0;   // alert the server sent (as the client saw it), 0 when none
  bool resumed = false;
  std::string subject;             // as the server saw the client certificate
  SSL_SESSION* session = nullptr;  // the client's session (caller frees)
  std::string alpn;                // the protocol the server selected
  SSL_CTX* server_ctx = nullptr;   // the context the server's connection ended in (not owned)
  int version = 0;                 // the negotiated protocol version
  const char* verify = "";         // ServerContext::client_verify as the server saw it
};

int g_alert = 0;
void record_alert(const SSL*, int where, int ret) {
  if ((where & SSL_CB_READ_ALERT) != 0) g_alert = ret & 0xff;
}

// One handshake between an OpenSSL client and `server` selecting from `store`, through a BIO pair.
Result handshake(ServerContext& server, const CertStore* store, const ClientOptions& o) {
  SSL_CTX* cctx = SSL_CTX_new(TLS_client_method());
  SSL_CTX_set_max_proto_version(cctx, o.max_version);
  SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, nullptr);
  SSL_CTX_set_info_callback(cctx, record_alert);
  if (o.sigalgs != nullptr) SSL_CTX_set1_sigalgs_list(cctx, o.sigalgs);
  SSL* c = SSL_new(cctx);
  if (o.client_cert != nullptr) {
    BIO* b = BIO_new_mem_buf(o.client_cert->cert.data(), -1);
    X509* x = PEM_read_bio_X509(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    b = BIO_new_mem_buf(o.client_cert->key.data(), -1);
    EVP_PKEY* k = PEM_read_bio_PrivateKey(b, nullptr, nullptr, nullptr);
    BIO_free(b);
    SSL_use_certificate(c, x);
    SSL_use_PrivateKey(c, k);
    X509_free(x);
    EVP_PKEY_free(k);
  }
  if (o.sni != nullptr) SSL_set_tlsext_host_name(c, o.sni);
  if (o.session != nullptr) SSL_set_session(c, o.session);
  if (!o.alpn.empty()) {
    SSL_set_alpn_protos(c, reinterpret_cast<const unsigned char*>(o.alpn.data()),
                        static_cast<unsigned>(o.alpn.size()));
  }
  SSL* s = SSL_new(server.context().native_handle());
  ServerContext::prepare(s, store);
  BIO *cb = nullptr, *sb = nullptr;
  BIO_new_bio_pair(&cb, 0, &sb, 0);
  SSL_set_bio(c, cb, cb);
  SSL_set_bio(s, sb, sb);
  SSL_set_connect_state(c);
  SSL_set_accept_state(s);
  g_alert = 0;
  Result r;
  bool cdone = false, sdone = false, failed = false;
  for (int i = 0; i < 20 && !(cdone && sdone) && !failed; ++i) {
    if (!cdone) {
      int rc = SSL_do_handshake(c);
      if (rc == 1)
        cdone = true;
      else if (SSL_get_error(c, rc) != SSL_ERROR_WANT_READ)
        failed = true;
    }
    if (!sdone && !failed) {
      int rc = SSL_do_handshake(s);
      if (rc == 1)
        sdone = true;
      else if (SSL_get_error(s, rc) != SSL_ERROR_WANT_READ)
        failed = true;
    }
  }
  if (failed) {  // let the client read the server's alert
    SSL_do_handshake(c);
  }
  if (cdone && sdone) {
    // TLS 1.3 tickets arrive after the handshake: a read on both sides moves them.
    char byte = 'x';
    SSL_write(c, &byte, 1);
    SSL_read(s, &byte, 1);
    SSL_write(s, &byte, 1);
    SSL_read(c, &byte, 1);
    r.ok = true;
    r.server_cn = cn_of(SSL_get0_peer_certificate(c));
    r.resumed = SSL_session_reused(c) == 1;
    r.subject = ServerContext::client_subject(s);
    r.session = SSL_get1_session(c);
    const unsigned char* proto = nullptr;
    unsigned proto_len = 0;
    SSL_get0_alpn_selected(s, &proto, &proto_len);
    r.alpn.assign(reinterpret_cast<const char*>(proto), proto_len);
    r.server_ctx = SSL_get_SSL_CTX(s);
    r.version = SSL_version(s);
    r.verify = ServerContext::client_verify(s);
  }
  r.client_alert = g_alert;
  // A connection freed without a shutdown marks its session not resumable.
  SSL_set_shutdown(c, SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  SSL_free(c);
  SSL_free(s);
  SSL_CTX_free(cctx);
  ERR_clear_error();
  return r;
}

std::string served(ServerContext& server, const CertStore* store, ClientOptions o) {
  Result r = handshake(server, store, o);
  if (r.session) SSL_SESSION_free(r.session);
  return r.ok ? r.server_cn : "FAILED";
}

TEST(TlsStore, ExactBeforeWildcardBeforeAnyBeforeNone) {
  auto store =
      CertStore::build({ssl("1", ec_wild(), {"*.example.com"}), ssl("2", ec_a(), {"a.example.com"})});
  ASSERT_EQ(store->size(), 2u);
  EXPECT_EQ(store->find("a.example.com")->id, "2");
  EXPECT_EQ(store->find("A.Example.COM.")->id, "2");  // case and a trailing dot ignored
  EXPECT_EQ(store->find("b.example.com")->id, "1");
  EXPECT_EQ(store->find("x.b.example.com"), nullptr);  // a wildcard covers one label
  EXPECT_EQ(store->find("example.com"), nullptr);
  EXPECT_EQ(store->find(""), nullptr);
  auto with_any = CertStore::build({ssl("1", ec_wild(), {"*.example.com"}), ssl("9", ec_any(), {"*"})});
  EXPECT_EQ(with_any->find("other.org")->id, "9");
  EXPECT_EQ(with_any->find("b.example.com")->id, "1");
  EXPECT_EQ(with_any->find("")->id, "9");
}

TEST(TlsStore, FirstSslWinsAndDisabledOrClientSkipped) {
  config::Ssl off = ssl("0", rsa_a(), {"a.example.com"});
  off.enabled = false;
  config::Ssl client = ssl("00", rsa_a(), {"a.example.com"});
  client.type = config::SslType::client;
  auto store = CertStore::build(
      {off, client, ssl("1", ec_a(), {"a.example.com"}), ssl("2", ec_wild(), {"a.example.com"})});
  EXPECT_EQ(store->find("a.example.com")->id, "1");
}

TEST(TlsStore, UnchangedSslKeepsItsCompiledContextAcrossBuilds) {
  config::Ssl a = ssl("1", ec_a(), {"a.example.com"});
  config::Ssl w = ssl("2", ec_wild(), {"*.example.com"});
  auto first = CertStore::build({a, w});
  const CertEntry* a1 = first->find("a.example.com");
  const CertEntry* w1 = first->find("b.example.com");
  ASSERT_NE(a1, nullptr);
  ASSERT_NE(w1, nullptr);
  EXPECT_NE(a1->ctx, nullptr);
  // "2" gets a client CA: recompiled; "1" changes only its names: kept (names are the store's, not the
  // entry's).
  a.snis = {"a.example.com", "c.example.com"};
  w.client_ca = ca().cert;
  auto second = CertStore::build({a, w}, nullptr, first.get());
  EXPECT_EQ(second->find("c.example.com"), a1);
  EXPECT_EQ(second->find("a.example.com")->ctx.get(), a1->ctx.get());
  EXPECT_NE(second->find("b.example.com"), w1);
  EXPECT_TRUE(second->find("b.example.com")->client_ca);
  // Without a previous store, everything is compiled anew.
  EXPECT_NE(CertStore::build({a, w})->find("a.example.com"), a1);
  // The previous store may go: the kept entry lives on in the new one.
  first.reset();
  EXPECT_EQ(second->find("a.example.com")->id, "1");
}

TEST(TlsStore, NameClaimedWithAndWithoutClientCaIsAProblem) {
  config::Ssl mtls = ssl("2", ec_a(), {"a.example.com", "*.example.com"});
  mtls.client_ca = ca().cert;
  std::vector<std::string> problems;
  auto store = CertStore::build(
      {ssl("1", ec_a(), {"a.example.com", "*.example.com"}), mtls, ssl("3", ec_a(), {"a.example.com"})},
      &problems);
  EXPECT_EQ(store->find("a.example.com")->id, "1");
  // The mTLS ssl loses both names to one without client.ca: reported; "3" (same client check as "1") is not.
  ASSERT_EQ(problems.size(), 2u);
  EXPECT_NE(problems[0].find("ssls/2"), std::string::npos) << problems[0];
  EXPECT_NE(problems[0].find("a.example.com"), std::string::npos) << problems[0];
  EXPECT_NE(problems[1].find("*.example.com"), std::string::npos) << problems[1];
}

TEST(TlsHandshake, SniSelectsTheCertificate) {
  ServerContext server({});
  auto store =
      CertStore::build({ssl("1", ec_wild(), {"*.example.com"}), ssl("2", ec_a(), {"a.example.com"})});
  EXPECT_EQ(served(server, store.get(), {.sni = "a.example.com"}), "a-ec");
  EXPECT_EQ(served(server, store.get(), {.sni = "zz.example.com"}), "wild");
  // Unknown name and no SNI: unrecognized_name, without a default name.
  Result r = handshake(server, store.get(), {.sni = "other.org"});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.client_alert, SSL_AD_UNRECOGNIZED_NAME);
  EXPECT_EQ(served(server, store.get(), {}), "FAILED");
  // No store at all (no configuration yet): the same answer.
  EXPECT_EQ(served(server, nullptr, {.sni = "a.example.com"}), "FAILED");
}

TEST(TlsHandshake, ConnectionMovesToItsCertificatesContextAndKeepsTheListenersAlpn) {
  ServerContext server({});
  auto store =
      CertStore::build({ssl("1", ec_wild(), {"*.example.com"}), ssl("2", ec_a(), {"a.example.com"})});
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    Result r =
        handshake(server, store.get(),
                  {.sni = "a.example.com", .max_version = version, .alpn = std::string("\x08http/1.1", 9)});
    ASSERT_TRUE(r.ok) << version;
    // The context compiled with the store, not the listener's with certificates set per connection.
    EXPECT_EQ(r.server_ctx, store->find("a.example.com")->ctx.get());
    EXPECT_NE(r.server_ctx, server.context().native_handle());
    EXPECT_EQ(r.alpn, "http/1.1");
    if (r.session) SSL_SESSION_free(r.session);
    // The listener's refusal applies in the certificate's context too.
    r = handshake(server, store.get(),
                  {.sni = "b.example.com",
                   .max_version = version,
                   .alpn = std::string("\x03"
                                       "foo",
                                       4)});
    EXPECT_FALSE(r.ok);
    EXPECT_EQ(r.client_alert, SSL_AD_NO_APPLICATION_PROTOCOL);
  }
}

TEST(TlsHandshake, DefaultSniAnswersMissingNamesOnly) {
  ServerContext server({.default_sni = "a.example.com"});
  auto store =
      CertStore::build({ssl("1", ec_wild(), {"*.example.com"}), ssl("2", ec_a(), {"a.example.com"})});
  // As APISIX's fallback_sni: an unknown SNI is refused, not answered for the default name.
  Result r = handshake(server, store.get(), {.sni = "other.org"});
  EXPECT_FALSE(r.ok);
  EXPECT_EQ(r.client_alert, SSL_AD_UNRECOGNIZED_NAME);
  EXPECT_EQ(served(server, store.get(), {}), "a-ec");
  EXPECT_EQ(served(server, store.get(), {.sni = "b.example.com"}), "wild");
}

TEST(TlsHandshake, RsaOrEcdsaByWhatTheClientAccepts) {
  ServerContext server({});
  config::Ssl both = ssl("1", rsa_a(), {"a.example.com"});
  both.certs = {ec_a().cert};
  both.keys = {ec_a().key};
  auto store = CertStore::build({both});
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    SCOPED_TRACE(version);
    EXPECT_EQ(served(server, store.get(),
                     {.sni = "a.example.com", .sigalgs = "ECDSA+SHA256", .max_version = version}),
              "a-ec");
    EXPECT_EQ(
        served(server, store.get(),
               {.sni = "a.example.com", .sigalgs = "RSA-PSS+SHA256:RSA+SHA256", .max_version = version}),
        "a-rsa");
  }
  // An RSA-only entry still serves an ECDSA-preferring client that accepts RSA.
  auto rsa_only = CertStore::build({ssl("1", rsa_a(), {"a.example.com"})});
  EXPECT_EQ(served(server, rsa_only.get(), {.sni = "a.example.com"}), "a-rsa");
}

TEST(TlsHandshake, StoreSwapAppliesToTheNextHandshake) {
  ServerContext server({});
  auto first = CertStore::build({ssl("1", rsa_a(), {"a.example.com"})});
  auto second = CertStore::build({ssl("1", ec_a(), {"a.example.com"})});
  EXPECT_EQ(served(server, first.get(), {.sni = "a.example.com"}), "a-rsa");
  EXPECT_EQ(served(server, second.get(), {.sni = "a.example.com"}), "a-ec");
  auto removed = CertStore::build({});
  EXPECT_EQ(served(server, removed.get(), {.sni = "a.example.com"}), "FAILED");
}

TEST(TlsHandshake, ClientCertificateRequiredWhenClientCaSet) {
  ServerContext server({});
  static const Pem client = make_cert("client-1", false, &ca());
  static const Pem stranger = make_cert("stranger", false);
  config::Ssl s = ssl("1", ec_a(), {"a.example.com"});
  s.client_ca = ca().cert;
  auto store = CertStore::build({s});
  Result ok = handshake(server, store.get(), {.sni = "a.example.com", .client_cert = &client});
  EXPECT_TRUE(ok.ok);
  EXPECT_EQ(ok.subject, "CN=client-1");
  if (ok.session) SSL_SESSION_free(ok.session);
  EXPECT_EQ(served(server, store.get(), {.sni = "a.example.com"}), "FAILED");
  EXPECT_EQ(served(server, store.get(), {.sni = "a.example.com", .client_cert = &stranger}), "FAILED");
  EXPECT_EQ(served(server, store.get(), {.sni = "a.example.com", .max_version = TLS1_2_VERSION}), "FAILED");
}

TEST(TlsHandshake, TicketsResumeAcrossOneRotationNotTwo) {
  auto store = CertStore::build({ssl("1", ec_a(), {"a.example.com"})});
  for (int version : {TLS1_2_VERSION, TLS1_3_VERSION}) {
    SCOPED_TRACE(version);
    ServerContext server({});
    Result first = handshake(server, store.get(), {.sni = "a.example.com", .max_version = version});
    ASSERT_TRUE(first.ok);
    ASSERT_NE(first.session, nullptr);
    Result again = handshake(server, store.get(),
                             {.sni = "a.example.com", .max_version = version, .session = first.session});
    EXPECT_TRUE(again.resumed);
    auto later = TicketKeys::Clock::now() + std::chrono::hours(1) + std::chrono::seconds(1);
    server.ticket_keys().rotate_if_due(later);
    Result after_one = handshake(server, store.get(),
                                 {.sni = "a.example.com", .max_version = version, .session = first.session});
    EXPECT_TRUE(after_one.resumed);
    server.ticket_keys().rotate_if_due(later + std::chrono::hours(1) + std::chrono::seconds(1));
    Result after_two = handshake(server, store.get(),
                                 {.sni = "a.example.com", .max_version = version, .session = first.session});
    EXPECT_TRUE(after_two.ok);
    EXPECT_FALSE(after_two.resumed);
    for (SSL_SESSION* s : {first.session, again.session, after_one.session, after_two.session}) {
      if (s) SSL_SESSION_free(s);
    }
  }
}

// A ticket resumes only under the same client check: the session id context covers the ssl, its CA and its
// depth, so tightening client.depth is not skipped by a session issued under the laxer one.
TEST(TlsStore, SessionContextCoversTheClientCheck) {
  auto context_of = [](int depth, bool with_ca) {
    config::Ssl s = ssl("1", ec_a(), {"a.example.com"});
    if (with_ca) s.client_ca = ca().cert;
    s.client_depth = depth;
    auto store = CertStore::build({s}, nullptr);
    const CertEntry* e = store->find("a.example.com");
    EXPECT_NE(e, nullptr);
    return std::string(reinterpret_cast<const char*>(e->sid_ctx), sizeof e->sid_ctx);
  };
  EXPECT_NE(context_of(1, true), context_of(2, true));
  EXPECT_NE(context_of(1, true), context_of(1, false));
  EXPECT_EQ(context_of(1, false), context_of(2, false));  // depth means nothing without a CA
  EXPECT_EQ(context_of(2, true), context_of(2, true));
}

// ssl_protocols: the connection offers only the ssl's versions; another name keeps both.
TEST(TlsHandshake, SslProtocolsNarrowTheVersionsForTheirNamesOnly) {
  ServerContext server({});
  config::Ssl only13 = ssl("13", ec_a(), {"a.example.com"});
  only13.ssl_protocols = {TLS1_3_VERSION};
  config::Ssl only12 = ssl("12", ec_wild(), {"b.example.com"});
  only12.ssl_protocols = {TLS1_2_VERSION};
  auto store = CertStore::build({only13, only12, ssl("any", ec_any(), {"*"})});
  auto version = [&](const char* sni, int max_version) {
    Result r = handshake(server, store.get(), {.sni = sni, .max_version = max_version});
    if (r.session) SSL_SESSION_free(r.session);
    return r.ok ? r.version : 0;
  };
  EXPECT_EQ(version("a.example.com", TLS1_3_VERSION), TLS1_3_VERSION);
  EXPECT_EQ(version("a.example.com", TLS1_2_VERSION), 0);
  // A TLS 1.3 client gets 1.2 without the downgrade sentinel (OpenSSL clients check it).
  EXPECT_EQ(version("b.example.com", TLS1_3_VERSION), TLS1_2_VERSION);
  EXPECT_EQ(version("other.org", TLS1_3_VERSION), TLS1_3_VERSION);
  EXPECT_EQ(version("other.org", TLS1_2_VERSION), TLS1_2_VERSION);
}

// skip_mtls_uri_regex: the certificate is asked for, not required; a presented one must still verify.
TEST(TlsHandshake, SkipMtlsMakesTheClientCertificateOptional) {
  ServerContext server({});
  static const Pem client = make_cert("client-1", false, &ca());
  static const Pem stranger = make_cert("stranger", false);
  config::Ssl s = ssl("1", ec_a(), {"a.example.com"});
  s.client_ca = ca().cert;
  s.skip_mtls_uri_regex = {"^/public/"};
  auto store = CertStore::build({s});
  Result none = handshake(server, store.get(), {.sni = "a.example.com"});
  EXPECT_TRUE(none.ok);
  EXPECT_STREQ(none.verify, "NONE");
  if (none.session) SSL_SESSION_free(none.session);
  Result good = handshake(server, store.get(), {.sni = "a.example.com", .client_cert = &client});
  EXPECT_TRUE(good.ok);
  EXPECT_STREQ(good.verify, "SUCCESS");
  if (good.session) SSL_SESSION_free(good.session);
  EXPECT_EQ(served(server, store.get(), {.sni = "a.example.com", .client_cert = &stranger}), "FAILED");
  const CertEntry* entry = store->find("a.example.com");
  ASSERT_NE(entry, nullptr);
  EXPECT_TRUE(entry->allows_unverified("/public/x"));
  EXPECT_FALSE(entry->allows_unverified("/private"));
}

// The optional check is part of the session id context: a session made without a certificate under the
// optional check does not resume once the ssl requires one.
TEST(TlsStore, SessionContextCoversOptionalClientCertificate) {
  config::Ssl s = ssl("1", ec_a(), {"a.example.com"});
  s.client_ca = ca().cert;
  auto required = CertStore::build({s});
  s.skip_mtls_uri_regex = {"/x"};
  auto optional = CertStore::build({s});
  EXPECT_NE(
      std::memcmp(required->find("a.example.com")->sid_ctx, optional->find("a.example.com")->sid_ctx, 32), 0);
  // ... and of what an entry is compiled from: the changed ssl is recompiled.
  auto again = CertStore::build({s}, nullptr, required.get());
  EXPECT_FALSE(again->find("a.example.com")->skip_mtls.empty());
}

}  // namespace
}  // namespace portico::tls
