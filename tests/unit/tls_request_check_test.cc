// The per-request client certificate check (tls/request_check.h), as APISIX's verify_https_client: the
// handshake's ssl with skip_mtls_uri_regex lets unverified connections reach the listed paths only, and a
// Host naming an mTLS ssl must be the handshake's SNI.
#include <gtest/gtest.h>

#include <string>

#include "tls/request_check.h"
#include "tls_test_certs.h"

namespace portico::tls {
namespace {

using test_certs::make_cert;
using test_certs::Pem;

const Pem& ca() {
  static const Pem p = make_cert("check-ca", false);
  return p;
}
const Pem& leaf() {
  static const Pem p = make_cert("leaf", false);
  return p;
}

config::Ssl ssl(std::string id, std::vector<std::string> snis, std::vector<std::string> skip = {},
                bool mtls = true) {
  config::Ssl s;
  s.id = std::move(id);
  s.cert = leaf().cert;
  s.key = leaf().key;
  s.snis = std::move(snis);
  if (mtls) s.client_ca = ca().cert;
  s.skip_mtls_uri_regex = std::move(skip);
  return s;
}

struct Check {
  std::shared_ptr<const CertStore> store;
  int path_calls = 0;
  RequestCheck operator()(std::string_view sni, bool verified, std::string_view host, std::string_view path) {
    return check_request(store.get(), RequestTls{sni, "", verified}, host, [&] {
      ++path_calls;
      return path;
    });
  }
};

TEST(TlsRequestCheck, SkipListLetsUnverifiedRequestsReachItsPathsOnly) {
  Check check{CertStore::build(
      {ssl("m", {"m.test"}, {"/anything.*", "^/health$"}), ssl("pub", {"pub.test"}, {}, false)})};
  EXPECT_EQ(check("m.test", false, "m.test", "/anything/x"), RequestCheck::ok);
  EXPECT_EQ(check("m.test", false, "m.test", "/v1/anything"), RequestCheck::ok);  // unanchored, as APISIX
  EXPECT_EQ(check("m.test", false, "m.test", "/health"), RequestCheck::ok);
  EXPECT_EQ(check("m.test", false, "m.test", "/health/x"), RequestCheck::no_certificate);
  EXPECT_EQ(check("m.test", false, "m.test", "/other"), RequestCheck::no_certificate);
  // The handshake's ssl decides even when the Host names one without client.ca.
  EXPECT_EQ(check("m.test", false, "pub.test", "/other"), RequestCheck::no_certificate);
  EXPECT_EQ(check("m.test", false, "pub.test", "/anything"), RequestCheck::ok);
  // A verified certificate reaches every path, and the path is never computed for it.
  check.path_calls = 0;
  EXPECT_EQ(check("m.test", true, "m.test", "/other"), RequestCheck::ok);
  EXPECT_EQ(check("m.test", true, "pub.test", "/other"), RequestCheck::ok);
  EXPECT_EQ(check.path_calls, 0);
}

TEST(TlsRequestCheck, HostNamingAnMtlsSslMustBeTheSni) {
  Check check{CertStore::build(
      {ssl("m", {"m.test"}, {"/anything.*"}), ssl("r", {"r.test"}), ssl("pub", {"pub.test"}, {}, false)})};
  EXPECT_EQ(check("pub.test", false, "m.test", "/anything"), RequestCheck::host_mismatch);
  EXPECT_EQ(check("r.test", true, "m.test", "/anything"), RequestCheck::host_mismatch);
  EXPECT_EQ(check("pub.test", false, "r.test", "/x"), RequestCheck::host_mismatch);
  EXPECT_EQ(check("m.test", true, "M.Test.", "/x"), RequestCheck::ok);
  EXPECT_EQ(check("r.test", true, "r.test", "/x"), RequestCheck::ok);
  EXPECT_EQ(check("pub.test", false, "pub.test", "/x"), RequestCheck::ok);
  EXPECT_EQ(check("pub.test", false, "unknown.test", "/x"), RequestCheck::ok);
}

// A store where no ssl asks for client certificates answers ok without a lookup: any_client_ca is what the
// shortcut reads, so it must turn true with the first client.ca.
TEST(TlsRequestCheck, StoresKnowWhetherAnySslAsksForClientCertificates) {
  EXPECT_FALSE(
      CertStore::build({ssl("a", {"a.test"}, {}, false), ssl("b", {"*"}, {}, false)})->any_client_ca());
  auto mixed = CertStore::build({ssl("a", {"a.test"}, {}, false), ssl("m", {"m.test"})});
  EXPECT_TRUE(mixed->any_client_ca());
  Check check{CertStore::build({ssl("a", {"a.test"}, {}, false)})};
  EXPECT_EQ(check("a.test", false, "a.test", "/x"), RequestCheck::ok);
  EXPECT_EQ(check.path_calls, 0);
}

// An ssl changed since the handshake to require a certificate refuses the connections made without one.
TEST(TlsRequestCheck, UnverifiedConnectionUnderAnSslNowRequiringACertificate) {
  Check check{CertStore::build({ssl("m", {"m.test"})})};
  EXPECT_EQ(check("m.test", false, "m.test", "/anything"), RequestCheck::no_certificate);
  EXPECT_EQ(check("m.test", true, "m.test", "/anything"), RequestCheck::ok);
}

TEST(TlsRequestCheck, MissingSniUsesTheDefaultName) {
  auto store = CertStore::build({ssl("m", {"m.test"}, {"^/open"}), ssl("any", {"*"}, {}, false)});
  auto check = [&](std::string_view default_sni, std::string_view path) {
    return check_request(store.get(), RequestTls{"", default_sni, false}, "whatever.test",
                         [&] { return path; });
  };
  EXPECT_EQ(check("m.test", "/closed"), RequestCheck::no_certificate);
  EXPECT_EQ(check("m.test", "/open"), RequestCheck::ok);
  EXPECT_EQ(check("", "/closed"), RequestCheck::ok);  // answered by "*", no client.ca
}

}  // namespace
}  // namespace portico::tls
