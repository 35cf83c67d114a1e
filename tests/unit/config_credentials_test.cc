// Credentials (APISIX 3.x) in documents, and consumer secrets on the Admin API's side: encrypted before they
// are stored, decrypted only by the validator, shown only as tokens.
#include <gtest/gtest.h>

#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "config/loader.h"
#include "config/plugin_catalog.h"
#include "config/plugin_secrets.h"
#include "config/secret_box.h"
#include "config/secrets.h"

namespace portico::config {
namespace {

using nlohmann::json;

std::shared_ptr<const Keyring> make_keyring(const std::string& id) {
  std::string error;
  std::optional<Keyring> k = Keyring::parse(id + " " + Keyring::generate_key() + "\n", "test", &error);
  EXPECT_TRUE(k) << error;
  return std::make_shared<const Keyring>(std::move(*k));
}

// Installs a keyring for one test and removes it after.
class WithKeyring : public ::testing::Test {
 protected:
  void SetUp() override {
    keyring_ = make_keyring("k1");
    set_process_keyring(keyring_);
  }
  void TearDown() override { set_process_keyring(nullptr); }
  std::string token(const std::string& plain) {
    std::string out;
    EXPECT_TRUE(encrypt_secret(plain, out, nullptr));
    return out;
  }
  std::shared_ptr<const Keyring> keyring_;
};

std::string document(const std::string& consumer_key, const std::string& credential_key) {
  return R"({"consumers": [{"username": "jack", "plugins": {"key-auth": {"key": ")" + consumer_key +
         R"("}}}], "credentials": [{"id": "jack/credentials/c-1", "desc": "one", "labels": {"team": "a"},
         "plugins": {"key-auth": {"key": ")" +
         credential_key + R"("}}}]})";
}

TEST_F(WithKeyring, ADocumentsCredentialsAreLoadedWithTheirSecretsDecrypted) {
  LoadResult r = parse_text(document(token("own-key"), token("cred-key")), Format::json);
  ASSERT_TRUE(r.ok) << r.describe();
  ASSERT_EQ(r.config.credentials.size(), 1u);
  const Credential& c = r.config.credentials[0];
  EXPECT_EQ(c.id, "jack/credentials/c-1");
  EXPECT_EQ(c.username, "jack");
  EXPECT_EQ(c.credential_id, "c-1");
  EXPECT_EQ(c.desc, "one");
  ASSERT_EQ(c.labels.size(), 1u);
  ASSERT_EQ(c.plugins.size(), 1u);
  EXPECT_EQ(c.plugins[0].conf->at("key"), "cred-key");
  EXPECT_EQ(r.config.consumers[0].plugins[0].conf->at("key"), "own-key");
}

TEST_F(WithKeyring, AFileMayHoldSecretsInClear) {
  LoadResult r = parse_text(document("own-key", "cred-key"), Format::json);
  ASSERT_TRUE(r.ok) << r.describe();
  EXPECT_EQ(r.config.credentials[0].plugins[0].conf->at("key"), "cred-key");
}

TEST(Credentials, EncryptedSecretsWithoutAKeyringAreRefusedNamingTheOption) {
  std::string stored;
  {
    auto keyring = make_keyring("k1");
    ASSERT_TRUE(keyring->encrypt("cred-key", stored));
  }
  LoadResult r = parse_text(document("own-key", stored), Format::json);
  ASSERT_FALSE(r.ok);
  ASSERT_EQ(r.errors.size(), 1u);
  EXPECT_EQ(r.errors[0].path, "credentials[0].plugins.key-auth.key");
  EXPECT_NE(r.errors[0].reason.find("--data-encryption-keyring"), std::string::npos) << r.errors[0].reason;
}

TEST_F(WithKeyring, WritesEncryptClearSecretsAndKeepTokensThisKeyringReads) {
  json plugins = {{"key-auth", {{"key", "clear-key"}}}, {"client-control", {{"max_body_size", 5}}}};
  std::string field, error;
  ASSERT_TRUE(encrypt_secret_fields(plugins, true, field, error)) << error;
  const std::string stored = plugins["key-auth"]["key"];
  ASSERT_TRUE(Keyring::is_encrypted(stored));
  std::string plain;
  ASSERT_TRUE(keyring_->decrypt(stored, plain));
  EXPECT_EQ(plain, "clear-key");
  EXPECT_EQ(plugins["client-control"]["max_body_size"], 5);  // not an auth plugin: untouched
  // GET then PUT: the token is kept as it is (not encrypted twice).
  ASSERT_TRUE(encrypt_secret_fields(plugins, true, field, error)) << error;
  EXPECT_EQ(plugins["key-auth"]["key"], stored);
}

TEST_F(WithKeyring, WritesRefuseATokenThisKeyringCannotRead) {
  std::string foreign;
  ASSERT_TRUE(make_keyring("other")->encrypt("x", foreign));
  json plugins = {{"key-auth", {{"key", foreign}}}};
  std::string field, error;
  EXPECT_FALSE(encrypt_secret_fields(plugins, true, field, error));
  EXPECT_EQ(field, "key-auth.key");
  EXPECT_NE(error.find("cannot decrypt"), std::string::npos) << error;
  json damaged = {{"key-auth", {{"key", "$ENC$v1$k1$AAAA"}}}};
  EXPECT_FALSE(encrypt_secret_fields(damaged, true, field, error));
}

TEST(Credentials, WritesMoveATokenOfAnOlderKeyToTheFirstKey) {
  const std::string old_key = Keyring::generate_key();
  std::string error;
  auto before = Keyring::parse("old " + old_key + "\n", "test", &error);
  auto after = Keyring::parse("new " + Keyring::generate_key() + "\nold " + old_key + "\n", "test", &error);
  ASSERT_TRUE(before && after) << error;
  std::string stored;
  ASSERT_TRUE(before->encrypt("rotated-key", stored));
  set_process_keyring(std::make_shared<const Keyring>(std::move(*after)));
  json plugins = {{"key-auth", {{"key", stored}}}};
  std::string field;
  ASSERT_TRUE(encrypt_secret_fields(plugins, true, field, error)) << error;
  const std::string now = plugins["key-auth"]["key"];
  EXPECT_EQ(Keyring::key_id_of(now), "new");
  std::string plain;
  ASSERT_TRUE(decrypt_secret(now, plain, nullptr));
  EXPECT_EQ(plain, "rotated-key");
  set_process_keyring(nullptr);
}

TEST(Credentials, WritesWithoutAKeyringStoreNothingInClear) {
  set_process_keyring(nullptr);
  json plugins = {{"key-auth", {{"key", "clear-key"}}}};
  std::string field, error;
  EXPECT_FALSE(encrypt_secret_fields(plugins, true, field, error));
  EXPECT_EQ(field, "key-auth.key");
}

TEST_F(WithKeyring, AnswersConcealSecretsLeftInClear) {
  const std::string stored = token("k");
  json plugins = {{"key-auth", {{"key", "written-by-hand"}}}, {"basic", {{"key", "x"}}}};
  json tokens = {{"key-auth", {{"key", stored}}}};
  conceal_secret_fields(plugins, true);
  conceal_secret_fields(tokens, true);
  EXPECT_TRUE(Keyring::is_encrypted(plugins["key-auth"]["key"].get<std::string>()));
  EXPECT_EQ(plugins["basic"]["key"], "x");  // not a plugin of the catalog
  EXPECT_EQ(tokens["key-auth"]["key"], stored);
  set_process_keyring(nullptr);
  json again = {{"key-auth", {{"key", "written-by-hand"}}}};
  conceal_secret_fields(again, true);
  EXPECT_EQ(again["key-auth"]["key"], "******");
}

// APISIX encrypts every plugin's encrypt_fields wherever it is configured: a limit plugin's redis_password
// on a route as on a consumer; an auth plugin's only on the consumer side (its route side holds no secret).
TEST_F(WithKeyring, EveryResourcesPluginSecretsAreEncryptedAndConcealed) {
  json plugins = {{"limit-count", {{"count", 1}, {"policy", "redis"}, {"redis_password", "pw"}}},
                  {"limit-req", {{"redis_password", "pw2"}}},
                  {"key-auth", {{"header", "apikey"}}}};
  std::string field, error;
  ASSERT_TRUE(encrypt_secret_fields(plugins, false, field, error)) << error;
  for (const char* name : {"limit-count", "limit-req"}) {
    std::string plain;
    ASSERT_TRUE(keyring_->decrypt(plugins[name]["redis_password"].get<std::string>(), plain)) << name;
  }
  EXPECT_EQ(plugins["key-auth"], json({{"header", "apikey"}}));
  json on_consumer = {{"limit-conn", {{"redis_password", "pw"}}}};
  ASSERT_TRUE(encrypt_secret_fields(on_consumer, true, field, error)) << error;
  EXPECT_TRUE(Keyring::is_encrypted(on_consumer["limit-conn"]["redis_password"].get<std::string>()));
  json by_hand = {{"limit-count", {{"redis_password", "written-by-hand"}}}};
  conceal_secret_fields(by_hand, false);
  EXPECT_TRUE(Keyring::is_encrypted(by_hand["limit-count"]["redis_password"].get<std::string>()));
}

TEST_F(WithKeyring, ARoutesEncryptedRedisPasswordIsLoadedInClear) {
  const std::string doc = R"({"routes": [{"id": "r1", "uri": "/a", "upstream": {"nodes": {"127.0.0.1:1": 1}},
      "plugins": {"limit-count": {"count": 1, "time_window": 60, "policy": "redis",
                                  "redis_host": "127.0.0.1", "redis_password": ")" +
                          token("redis-pw") + R"("}}}]})";
  LoadResult r = parse_text(doc, Format::json);
  ASSERT_TRUE(r.ok) << r.describe();
  EXPECT_EQ(r.config.routes[0].plugins[0].conf->at("redis_password"), "redis-pw");
  set_process_keyring(nullptr);
  LoadResult refused = parse_text(doc, Format::json);
  ASSERT_FALSE(refused.ok);
  EXPECT_EQ(refused.errors[0].path, "routes[0].plugins.limit-count.redis_password");
}

TEST(PluginSchemaDocument, TheConsumerSchemaNamesItsEncryptedFields) {
  json consumer = plugin_schema_document("key-auth", true);
  EXPECT_EQ(consumer["encrypt_fields"], json::array({"key"}));
  EXPECT_EQ(consumer["required"], json::array({"key"}));
  json route = plugin_schema_document("key-auth", false);
  EXPECT_FALSE(route.contains("encrypt_fields"));
  EXPECT_TRUE(route["properties"].contains("_meta"));
  EXPECT_TRUE(plugin_schema_document("no-such-plugin", false).is_null());
}

}  // namespace
}  // namespace portico::config
