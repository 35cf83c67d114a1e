// SSLs (certificate/key pairs checked with OpenSSL), and the tests that need a valid SSL: create_time and
// update_time on every resource kind, and a standalone file holding all seven sections. Certificates and keys
// are generated at test time with the OpenSSL API; no private key is committed.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/tls1.h>
#include <openssl/x509.h>

#include <algorithm>
#include <sstream>

#include <nlohmann/json.hpp>

#include "config/loader.h"
#include "config/validate.h"

namespace portico::config {
namespace {

using nlohmann::json;

// ---- test-only certificates ----

struct KeyPair {
  std::string cert;           // PEM, self-signed
  std::string key;            // PEM, unencrypted
  std::string encrypted_key;  // the same key, PEM encrypted with a passphrase
};

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, static_cast<size_t>(n));
  BIO_free(bio);
  return out;
}

KeyPair generate(const char* common_name, bool rsa) {
  EVP_PKEY* pkey = rsa ? EVP_PKEY_Q_keygen(nullptr, nullptr, "RSA", size_t{2048})
                       : EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  X509* x509 = X509_new();
  X509_set_version(x509, 2);
  ASN1_INTEGER_set(X509_get_serialNumber(x509), 1);
  X509_gmtime_adj(X509_getm_notBefore(x509), 0);
  X509_gmtime_adj(X509_getm_notAfter(x509), 3600);
  X509_set_pubkey(x509, pkey);
  X509_NAME* name = X509_get_subject_name(x509);
  X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>(common_name),
                             -1, -1, 0);
  X509_set_issuer_name(x509, name);
  X509_sign(x509, pkey, EVP_sha256());
  KeyPair pair;
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_X509(bio, x509);
  pair.cert = bio_text(bio);
  bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, pkey, nullptr, nullptr, 0, nullptr, nullptr);
  pair.key = bio_text(bio);
  bio = BIO_new(BIO_s_mem());
  char passphrase[] = "test-only";
  PEM_write_bio_PrivateKey(bio, pkey, EVP_aes_256_cbc(), nullptr, 0, nullptr, passphrase);
  pair.encrypted_key = bio_text(bio);
  X509_free(x509);
  EVP_PKEY_free(pkey);
  return pair;
}

const KeyPair& ec_a() {
  static const KeyPair pair = generate("a.example.com", false);
  return pair;
}
const KeyPair& ec_b() {
  static const KeyPair pair = generate("b.example.com", false);
  return pair;
}
const KeyPair& rsa_c() {
  static const KeyPair pair = generate("c.example.com", true);
  return pair;
}

// ---- helpers ----

LoadResult load(const json& document) {
  return parse_text(document.dump(), Format::json);
}

struct Case {
  std::string name;
  json document;
  std::string path;
  std::string reason;  // a substring of the expected reason
};

// Each case must be rejected with exactly one error, at `path`.
void expect_cases(const std::vector<Case>& cases) {
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    LoadResult r = load(c.document);
    ASSERT_FALSE(r.ok) << c.document.dump();
    ASSERT_EQ(r.errors.size(), 1u) << r.describe();
    EXPECT_EQ(r.errors[0].path, c.path) << r.describe();
    EXPECT_NE(r.errors[0].reason.find(c.reason), std::string::npos)
        << "reason: " << r.errors[0].reason << "\nexpected to contain: " << c.reason;
  }
}

// `base` with `fields` set (a null value removes the field).
json with(json base, const json& fields) {
  for (auto it = fields.begin(); it != fields.end(); ++it) {
    if (it.value().is_null()) {
      base.erase(it.key());
    } else {
      base[it.key()] = it.value();
    }
  }
  return base;
}

json ssls(const json& item) {
  return {{"ssls", json::array({item})}};
}

const json kUpstreams = json::array({{{"id", "u1"}, {"nodes", {{"10.0.0.1:80", 1}}}}});

json route(const char* id, const json& fields = json::object()) {
  return with({{"id", id}, {"uri", std::string("/") + id}, {"upstream_id", "u1"}}, fields);
}

// ---- SSLs ----

json full_ssl() {
  return {{"id", "s1"},
          {"type", "server"},
          {"cert", ec_a().cert},
          {"key", ec_a().key},
          {"certs", {rsa_c().cert}},
          {"keys", {rsa_c().key}},
          {"snis", {"API.Example.com", "*.example.com"}},
          {"status", 0},
          {"desc", "the API certificate"},
          {"labels", {{"env", "prod"}}},
          {"create_time", 1700000000},
          {"update_time", 1700000000}};
}
json small_ssl() {
  return {{"id", "s1"}, {"cert", ec_a().cert}, {"key", ec_a().key}, {"sni", "a.example.com"}};
}

TEST(ConfigSsl, FullExample) {
  LoadResult r = load(ssls(full_ssl()));
  ASSERT_TRUE(r.ok) << r.describe();
  ASSERT_EQ(r.config.ssls.size(), 1u);
  const Ssl& s = r.config.ssls[0];
  EXPECT_EQ(s.id, "s1");
  EXPECT_EQ(s.type, SslType::server);
  EXPECT_EQ(s.cert, ec_a().cert);
  EXPECT_EQ(s.key, ec_a().key);
  EXPECT_EQ(s.certs, std::vector<std::string>{rsa_c().cert});
  EXPECT_EQ(s.keys, std::vector<std::string>{rsa_c().key});
  EXPECT_EQ(s.snis, (std::vector<std::string>{"api.example.com", "*.example.com"}));  // lower-cased
  EXPECT_FALSE(s.enabled);
}

TEST(ConfigSsl, Defaults) {
  Errors errors;
  std::optional<Ssl> s = validate_ssl(small_ssl(), "", errors);
  ASSERT_TRUE(s) << errors.list()[0].path << ": " << errors.list()[0].reason;
  EXPECT_EQ(s->type, SslType::server);
  EXPECT_TRUE(s->enabled);
  EXPECT_EQ(s->snis, std::vector<std::string>{"a.example.com"});  // `sni` folded into snis
  EXPECT_TRUE(s->certs.empty());
  // A client certificate (for upstream mTLS) needs no SNI.
  s = validate_ssl(with(small_ssl(), {{"type", "client"}, {"sni", nullptr}}), "", errors);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->type, SslType::client);
  EXPECT_TRUE(s->snis.empty());
  // "*" matches any server name; a chain after the certificate is accepted.
  s = validate_ssl(with(small_ssl(), {{"sni", "*"}, {"cert", ec_a().cert + ec_b().cert}}), "", errors);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->snis, std::vector<std::string>{"*"});
  // client (mTLS): the CA kept, depth 1 unless set.
  s = validate_ssl(with(small_ssl(), {{"client", {{"ca", ec_a().cert}}}}), "", errors);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->client_ca, ec_a().cert);
  EXPECT_EQ(s->client_depth, 1);
  s = validate_ssl(with(small_ssl(), {{"client", {{"ca", ec_a().cert}, {"depth", 3}}}}), "", errors);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->client_depth, 3);
  EXPECT_TRUE(s->skip_mtls_uri_regex.empty());
  EXPECT_TRUE(s->ssl_protocols.empty());  // every version Portico speaks
  s = validate_ssl(
      with(small_ssl(), {{"client", {{"ca", ec_a().cert}, {"skip_mtls_uri_regex", {"/anything.*"}}}},
                         {"ssl_protocols", {"TLSv1.3", "TLSv1.2"}}}),
      "", errors);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->skip_mtls_uri_regex, std::vector<std::string>{"/anything.*"});
  EXPECT_EQ(s->ssl_protocols, (std::vector<int>{TLS1_2_VERSION, TLS1_3_VERSION}));  // ascending
  EXPECT_EQ(errors.total(), 0u);
}

TEST(ConfigSsl, KeyMustMatchCert) {
  expect_cases({
      {"mismatched_key", ssls(with(small_ssl(), {{"key", ec_b().key}})), "ssls[0].key",
       "does not match cert"},
      {"mismatched_type", ssls(with(small_ssl(), {{"key", rsa_c().key}})), "ssls[0].key",
       "does not match cert"},
      {"mismatched_pair",
       ssls(with(small_ssl(), {{"certs", {ec_b().cert, rsa_c().cert}}, {"keys", {ec_b().key, ec_a().key}}})),
       "ssls[0].keys[1]", "does not match certs[1]"},
  });
}

TEST(ConfigSsl, RejectsEachBadField) {
  const std::string cert = ec_a().cert;
  const std::string broken_chain =
      cert + "-----BEGIN CERTIFICATE-----\nnot base64!\n-----END CERTIFICATE-----\n";
  expect_cases({
      {"not_mapping", ssls("x"), "ssls[0]", "wrong type: expected object, got string"},
      {"id_missing", ssls(with(small_ssl(), {{"id", nullptr}})), "ssls[0].id", "is required"},
      {"cert_missing", ssls(with(small_ssl(), {{"cert", nullptr}})), "ssls[0].cert", "is required"},
      {"key_missing", ssls(with(small_ssl(), {{"key", nullptr}})), "ssls[0].key", "is required"},
      {"cert_garbage", ssls(with(small_ssl(), {{"cert", "hello"}})), "ssls[0].cert", "not a PEM certificate"},
      {"cert_is_key", ssls(with(small_ssl(), {{"cert", ec_a().key}})), "ssls[0].cert",
       "not a PEM certificate"},
      {"cert_broken_chain", ssls(with(small_ssl(), {{"cert", broken_chain}})), "ssls[0].cert",
       "certificate 2 of the chain is not a valid PEM certificate"},
      {"cert_int", ssls(with(small_ssl(), {{"cert", 1}})), "ssls[0].cert",
       "wrong type: expected string, got number"},
      {"cert_huge", ssls(with(small_ssl(), {{"cert", cert + std::string(65536, '\n')}})), "ssls[0].cert",
       // The generated certificate's length varies by a few bytes from run to run: the bound is what matters.
       "string too long, expected at most 65536, got "},
      {"cert_secret", ssls(with(small_ssl(), {{"cert", "$secret://vault/1/cert"}})), "ssls[0].cert",
       "secret references"},
      {"key_garbage",
       ssls(with(small_ssl(), {{"key", "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"}})),
       "ssls[0].key", "not a PEM private key"},
      {"key_is_cert", ssls(with(small_ssl(), {{"key", cert}})), "ssls[0].key", "not a PEM private key"},
      {"key_encrypted", ssls(with(small_ssl(), {{"key", ec_a().encrypted_key}})), "ssls[0].key",
       "encrypted with a passphrase"},
      {"key_env", ssls(with(small_ssl(), {{"key", "$env://SSL_KEY"}})), "ssls[0].key", "secret references"},
      {"sni_missing", ssls(with(small_ssl(), {{"sni", nullptr}})), "ssls[0].snis",
       "is required for a server certificate"},
      {"sni_and_snis", ssls(with(small_ssl(), {{"snis", {"b.example.com"}}})), "ssls[0].snis",
       "set either sni or snis, not both"},
      {"snis_empty", ssls(with(small_ssl(), {{"sni", nullptr}, {"snis", json::array()}})), "ssls[0].snis",
       "expect array to have at least 1 items"},
      {"snis_not_list", ssls(with(small_ssl(), {{"sni", nullptr}, {"snis", "a.example.com"}})),
       "ssls[0].snis", "wrong type: expected array, got string"},
      {"snis_duplicate",
       ssls(with(small_ssl(), {{"sni", nullptr}, {"snis", {"a.example.com", "A.example.com"}}})),
       "ssls[0].snis[1]", "duplicate \"a.example.com\""},
      {"snis_ip", ssls(with(small_ssl(), {{"sni", nullptr}, {"snis", {"a.example.com", "10.0.0.1"}}})),
       "ssls[0].snis[1]", "never send an IP address"},
      {"snis_bad_wildcard", ssls(with(small_ssl(), {{"sni", nullptr}, {"snis", {"a.*.example.com"}}})),
       "ssls[0].snis[0]", "'*' is only allowed as the leading label"},
      {"sni_port", ssls(with(small_ssl(), {{"sni", "a.example.com:443"}})), "ssls[0].sni",
       "must not contain a port"},
      {"certs_without_keys", ssls(with(small_ssl(), {{"certs", {rsa_c().cert}}})), "ssls[0].certs",
       "certs and keys must pair up: 1 certs, 0 keys"},
      {"keys_count",
       ssls(with(small_ssl(), {{"certs", {rsa_c().cert}}, {"keys", {rsa_c().key, ec_b().key}}})),
       "ssls[0].keys", "certs and keys must pair up: 1 certs, 2 keys"},
      {"certs_item_garbage", ssls(with(small_ssl(), {{"certs", {"x"}}, {"keys", {rsa_c().key}}})),
       "ssls[0].certs[0]", "not a PEM certificate"},
      {"keys_not_list", ssls(with(small_ssl(), {{"certs", json::array()}, {"keys", "x"}})), "ssls[0].keys",
       "wrong type: expected array, got string"},
      {"type_bad", ssls(with(small_ssl(), {{"type", "both"}})), "ssls[0].type",
       "matches none of the enum values"},
      {"status_bad", ssls(with(small_ssl(), {{"status", 2}})), "ssls[0].status",
       "matches none of the enum values"},
      {"labels_bad", ssls(with(small_ssl(), {{"labels", {{"a", ""}}}})), "ssls[0].labels.a",
       "string too short, expected at least 1, got 0"},
      {"client_ca_garbage", ssls(with(small_ssl(), {{"client", {{"ca", "x"}}}})), "ssls[0].client.ca",
       "not a PEM certificate"},
      {"client_no_ca", ssls(with(small_ssl(), {{"client", {{"depth", 2}}}})), "ssls[0].client.ca",
       "property \"ca\" is required"},
      {"client_depth_negative", ssls(with(small_ssl(), {{"client", {{"ca", cert}, {"depth", -1}}}})),
       "ssls[0].client.depth", "expected -1 to be at least 0"},
      {"ssl_protocols_tls11", ssls(with(small_ssl(), {{"ssl_protocols", {"TLSv1.3", "TLSv1.1"}}})),
       "ssls[0].ssl_protocols[1]", "TLSv1.1 is not supported: Portico speaks TLS 1.2 and 1.3 only"},
      {"ssl_protocols_unknown", ssls(with(small_ssl(), {{"ssl_protocols", {"SSLv3"}}})),
       "ssls[0].ssl_protocols[0]", "matches none of the enum values"},
      {"ssl_protocols_twice", ssls(with(small_ssl(), {{"ssl_protocols", {"TLSv1.2", "TLSv1.2"}}})),
       "ssls[0].ssl_protocols", "unique"},
      {"ssl_protocols_empty", ssls(with(small_ssl(), {{"ssl_protocols", json::array()}})),
       "ssls[0].ssl_protocols", "expect array to have at least 1 items"},
      {"skip_regex_invalid",
       ssls(with(small_ssl(), {{"client", {{"ca", cert}, {"skip_mtls_uri_regex", {"/ok", "/a(b"}}}}})),
       "ssls[0].client.skip_mtls_uri_regex[1]", "invalid regular expression at offset 4"},
      {"skip_regex_not_list",
       ssls(with(small_ssl(), {{"client", {{"ca", cert}, {"skip_mtls_uri_regex", "/a"}}}})),
       "ssls[0].client.skip_mtls_uri_regex", "wrong type: expected array, got string"},
      {"skip_regex_too_long",
       ssls(with(small_ssl(),
                 {{"client", {{"ca", cert}, {"skip_mtls_uri_regex", {std::string(1025, 'a')}}}}})),
       "ssls[0].client.skip_mtls_uri_regex[0]", "string too long"},
      {"skip_regex_without_ca", ssls(with(small_ssl(), {{"client", {{"skip_mtls_uri_regex", {"/a"}}}}})),
       "ssls[0].client.ca", "property \"ca\" is required"},
      {"unknown", ssls(with(small_ssl(), {{"validity_end", 1}})), "ssls[0].validity_end",
       "additional properties forbidden, found validity_end"},
      {"id_float", ssls(with(small_ssl(), {{"id", 3.0}})), "ssls[0].id",
       "an integer id must be written without a fraction or an exponent, got 3.0"},
      {"status_float_ok_but_type", ssls(with(small_ssl(), {{"status", "1"}})), "ssls[0].status",
       "wrong type: expected integer, got string"},
      {"duplicate_id",
       {{"ssls", json::array({small_ssl(), small_ssl()})}},
       "ssls[1].id",
       "duplicate SSL id \"s1\" (first defined at ssls[0])"},
  });
}

// tls.client_cert_id names an ssl of type client, wherever the upstream is: the whole document is refused
// with the field's path otherwise (the data plane would have no client certificate to present).
TEST(ConfigSsl, ClientCertIdNamesAClientSsl) {
  const json tls = {{"client_cert_id", "c1"}};
  const json upstream = {{"nodes", {{"10.0.0.1:443", 1}}}, {"scheme", "https"}, {"tls", tls}};
  const json client_ssl = with(small_ssl(), {{"id", "c1"}, {"type", "client"}, {"sni", nullptr}});
  const json server_ssl = with(small_ssl(), {{"id", "c1"}});
  auto doc = [&](const json& ssl) {
    json d = {{"upstreams", {with(upstream, {{"id", "u1"}})}},
              {"services", {{{"id", "s1"}, {"upstream", upstream}}}},
              {"routes", {{{"id", "r1"}, {"uri", "/r"}, {"upstream", upstream}}}}};
    if (!ssl.is_null()) d["ssls"] = json::array({ssl});
    return d;
  };
  LoadResult ok = load(doc(client_ssl));
  ASSERT_TRUE(ok.ok) << ok.describe();
  for (const auto& [ssl, reason] : {std::pair{json(), std::string("ssl \"c1\" is not defined in ssls")},
                                    std::pair{server_ssl, std::string("ssl \"c1\" is not of type client")}}) {
    SCOPED_TRACE(reason);
    LoadResult r = load(doc(ssl));
    ASSERT_FALSE(r.ok);
    ASSERT_EQ(r.errors.size(), 3u) << r.describe();
    std::vector<std::string> paths;
    for (const auto& e : r.errors) {
      paths.push_back(e.path);
      EXPECT_EQ(e.reason, reason) << r.describe();
    }
    std::sort(paths.begin(), paths.end());
    EXPECT_EQ(paths, (std::vector<std::string>{"routes[0].upstream.tls.client_cert_id",
                                               "services[0].upstream.tls.client_cert_id",
                                               "upstreams[0].tls.client_cert_id"}));
  }
}

TEST(ConfigSsl, SingleResourceApiPaths) {
  Errors errors;
  EXPECT_FALSE(validate_ssl(with(small_ssl(), {{"key", ec_b().key}}), "", errors));
  EXPECT_FALSE(validate_ssl(with(small_ssl(), {{"cert", "x"}}), "body", errors));
  ASSERT_EQ(errors.list().size(), 2u);
  EXPECT_EQ(errors.list()[0].path, "key");
  EXPECT_EQ(errors.list()[0].reason, "does not match cert");
  EXPECT_EQ(errors.list()[1].path, "body.cert");
  ValidateOptions options;
  options.id_required = false;
  EXPECT_TRUE(validate_ssl(with(small_ssl(), {{"id", nullptr}}), "", errors, options));
  EXPECT_EQ(errors.total(), 2u);
}

// ---- create_time / update_time on every kind ----

TEST(ConfigTimestamps, AcceptedOnEveryKind) {
  const json t = {{"create_time", 1700000000}, {"update_time", 1700000123}};
  json d = {{"upstreams", json::array({with(kUpstreams[0], t)})},
            {"services", json::array({with({{"id", "s1"}, {"upstream_id", "u1"}}, t)})},
            {"routes", json::array({route("r1", t)})},
            {"consumers", json::array({with({{"username", "jack"}}, t)})},
            {"ssls",
             json::array({with(
                 {{"id", "s1"}, {"cert", ec_a().cert}, {"key", ec_a().key}, {"sni", "a.example.com"}}, t)})},
            {"global_rules", json::array({with({{"id", "g1"}, {"plugins", json::object()}}, t)})},
            {"plugin_configs", json::array({with({{"id", "p1"}, {"plugins", json::object()}}, t)})}};
  LoadResult r = load(d);
  ASSERT_TRUE(r.ok) << r.describe();
  const Config& c = r.config;
  EXPECT_EQ(c.routes.size() + c.services.size() + c.upstreams.size() + c.consumers.size() + c.ssls.size() +
                c.global_rules.size() + c.plugin_configs.size(),
            7u);
  // Also through the single-resource API, as the Admin API calls it (id from the URL).
  ValidateOptions options;
  options.id_required = false;
  Errors errors;
  EXPECT_TRUE(validate_route(with({{"uri", "/a"}, {"upstream_id", "u1"}}, t), "", errors, options));
  EXPECT_TRUE(validate_service(t, "", errors, options));
  EXPECT_TRUE(validate_upstream(with({{"nodes", {{"a:1", 1}}}}, t), "", errors, options));
  EXPECT_TRUE(validate_consumer(t, "", errors, options));
  EXPECT_TRUE(validate_global_rule(with({{"plugins", json::object()}}, t), "", errors, options));
  EXPECT_TRUE(validate_plugin_config(with({{"plugins", json::object()}}, t), "", errors, options));
  EXPECT_EQ(errors.total(), 0u);
}

TEST(ConfigTimestamps, NegativeIsRejectedOnEveryKind) {
  Errors errors;
  const json bad = {{"create_time", -1}};
  validate_route(with({{"id", 1}, {"uri", "/a"}, {"upstream_id", "u1"}}, bad), "r", errors);
  validate_service(with({{"id", 1}}, bad), "s", errors);
  validate_upstream(with({{"id", 1}, {"nodes", {{"a:1", 1}}}}, bad), "u", errors);
  validate_consumer(with({{"username", "a"}}, bad), "c", errors);
  validate_ssl(with({{"id", 1}, {"cert", ec_a().cert}, {"key", ec_a().key}, {"sni", "a.b"}}, bad), "t",
               errors);
  validate_global_rule(with({{"id", 1}, {"plugins", json::object()}}, bad), "g", errors);
  validate_plugin_config(with({{"id", 1}, {"plugins", json::object()}}, bad), "p", errors);
  ASSERT_EQ(errors.list().size(), 7u);
  for (const FieldError& e : errors.list()) {
    EXPECT_TRUE(e.path.ends_with(".create_time")) << e.path;
    // Every kind is checked by its schema.
    EXPECT_NE(e.reason.find("expected -1 to be at least 0"), std::string::npos) << e.path << ": " << e.reason;
  }
}

// ---- a standalone file with every section ----

std::string indent(const std::string& text, const std::string& prefix) {
  std::istringstream in(text);
  std::string out, line;
  while (std::getline(in, line)) out += prefix + line + "\n";
  return out;
}

TEST(ConfigAllSections, StandaloneYamlAndJsonLoad) {
  const std::string yaml = R"(upstreams:
  - id: u1
    nodes: { "10.0.0.1:80": 1 }
    create_time: 1700000000
services:
  - id: s1
    upstream_id: u1
    plugins: { client-control: { max_body_size: 200 } }
routes:
  - { id: r1, uri: /a, service_id: s1, plugin_config_id: pc1 }
  - { id: r2, uri: /b, upstream_id: u1 }
plugin_configs:
  - id: pc1
    plugins: { client-control: { max_body_size: 100 } }
global_rules:
  - id: g1
    plugins: { client-control: { max_body_size: 300 } }
consumers:
  - username: jack
    labels: { team: mobile }
ssls:
  - id: 1
    snis: [API.example.com]
    cert: |
)" + indent(ec_a().cert, "      ") +
                           R"(    key: |
)" + indent(ec_a().key, "      ") +
                           R"(    update_time: 1700000001
#END
)";
  LoadResult y = parse_text(yaml, Format::yaml);
  ASSERT_TRUE(y.ok) << y.describe();
  const Config& c = y.config;
  ASSERT_EQ(c.routes.size(), 2u);
  ASSERT_EQ(c.services.size(), 1u);
  ASSERT_EQ(c.upstreams.size(), 1u);
  ASSERT_EQ(c.plugin_configs.size(), 1u);
  ASSERT_EQ(c.global_rules.size(), 1u);
  ASSERT_EQ(c.consumers.size(), 1u);
  ASSERT_EQ(c.ssls.size(), 1u);
  EXPECT_EQ(c.routes[0].max_body_size, 100);  // plugin config over service
  EXPECT_EQ(c.routes[1].max_body_size, 300);  // global rule
  EXPECT_EQ(c.ssls[0].id, "1");
  EXPECT_EQ(c.ssls[0].cert, ec_a().cert);  // the block scalar keeps the PEM text exactly
  EXPECT_EQ(c.ssls[0].snis, std::vector<std::string>{"api.example.com"});
  EXPECT_EQ(c.consumers[0].username, "jack");

  json d = {{"upstreams", kUpstreams},
            {"services", json::array({{{"id", "s1"}, {"upstream_id", "u1"}}})},
            {"routes", json::array({route("r1", {{"plugin_config_id", "pc1"}})})},
            {"plugin_configs", json::array({{{"id", "pc1"}, {"plugins", json::object()}}})},
            {"global_rules", json::array({{{"id", "g1"}, {"plugins", json::object()}}})},
            {"consumers", json::array({{{"username", "jack"}}})},
            {"ssls", json::array({small_ssl()})}};
  LoadResult j = load(d);
  ASSERT_TRUE(j.ok) << j.describe();
  Errors errors;
  std::optional<Config> whole = validate_config(d, errors);  // the non-streaming path agrees
  ASSERT_TRUE(whole);
  EXPECT_EQ(whole->ssls.size(), 1u);
  EXPECT_EQ(whole->consumers.size(), 1u);
  EXPECT_EQ(whole->routes[0].plugin_config_id, "pc1");
}

TEST(ConfigAllSections, ErrorsInStreamedSectionsCarryTheirPaths) {
  const std::string yaml = R"(consumers:
  - username: ok
  - username: "not ok"
plugin_configs:
  - id: pc1
    plugins: { ua-restriction: {} }
#END
)";
  LoadResult r = parse_text(yaml, Format::yaml);
  ASSERT_EQ(r.errors.size(), 2u) << r.describe();
  EXPECT_EQ(r.errors[0].path, "consumers[1].username");
  EXPECT_EQ(r.errors[1].path, "plugin_configs[0].plugins.ua-restriction");
}

}  // namespace
}  // namespace portico::config
