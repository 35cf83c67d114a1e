// Signed states: Ed25519 keys (generation, loading, key ids), signatures, the snapshot format, open_snapshot.
#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/mman.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "sync/envelope.h"

namespace portico::sync {
namespace {

namespace fs = std::filesystem;

class SyncEnvelope : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/portico-sync-envelope-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    bool generated = false;
    signer_ = Signer::load_or_generate(dir_ + "/a/signing.key", true, generated);
    other_ = Signer::load_or_generate(dir_ + "/b/signing.key", true, generated);
    std::string error;
    ASSERT_TRUE(verifier_.add_public_key_pem(signer_->public_key_pem(), error)) << error;
    set_.put("routes", "1", R"({"id":"1","uri":"/a"})");
    set_.put("upstreams", "u", R"({"id":"u","nodes":{"127.0.0.1:80":1}})");
  }
  void TearDown() override { fs::remove_all(dir_); }

  SignedState signed_state(int64_t revision = 42) {
    SignedState s;
    s.cluster_id = "3397744812459331135";
    s.revision = revision;
    s.content_hash = set_.content_hash();
    signer_->sign(s);
    return s;
  }
  std::string snapshot() { return encode_snapshot(signed_state(), set_.document()); }

  std::string dir_;
  std::unique_ptr<Signer> signer_, other_;
  Verifier verifier_;
  ResourceSet set_;
};

void write_file(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary) << text;
}

TEST_F(SyncEnvelope, SigningMessage) {
  SignedState s;
  s.cluster_id = "7";
  s.revision = 12;
  s.content_hash = "abc";
  EXPECT_EQ(s.signing_message(), "portico-config-v1\n7\n12\nabc\n");
}

TEST_F(SyncEnvelope, GeneratesPrivateKeyFileAndReloadsIt) {
  std::string path = dir_ + "/state/keys/signing.key";
  bool generated = false;
  auto s1 = Signer::load_or_generate(path, true, generated);
  EXPECT_TRUE(generated);
  struct stat st;
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  ASSERT_EQ(::stat((dir_ + "/state/keys").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  EXPECT_EQ(fs::directory_iterator(dir_ + "/state/keys")->path().filename(), "signing.key");  // nothing else
  std::ifstream in(path);
  std::string first;
  std::getline(in, first);
  EXPECT_EQ(first, "-----BEGIN PRIVATE KEY-----");  // PKCS#8

  auto s2 = Signer::load_or_generate(path, true, generated);
  EXPECT_FALSE(generated);
  EXPECT_EQ(s1->key_id(), s2->key_id());
  EXPECT_EQ(s1->public_key_pem(), s2->public_key_pem());
  EXPECT_EQ(s1->key_id().size(), 16u);
  EXPECT_NE(s1->key_id(), signer_->key_id());
  EXPECT_EQ(s1->public_key_pem().rfind("-----BEGIN PUBLIC KEY-----", 0), 0u);
  // Ed25519 signatures are deterministic: the reloaded key signs identically.
  SignedState a = signed_state(), b = a;
  s1->sign(a);
  s2->sign(b);
  EXPECT_EQ(a.signature, b.signature);
}

TEST_F(SyncEnvelope, LoadFailures) {
  bool generated = true;
  EXPECT_THROW(Signer::load_or_generate(dir_ + "/missing.key", false, generated), std::runtime_error);
  EXPECT_FALSE(generated);
  EXPECT_FALSE(fs::exists(dir_ + "/missing.key"));
  write_file(dir_ + "/garbage.key", "not a key\n");
  try {
    Signer::load_or_generate(dir_ + "/garbage.key", true, generated);
    FAIL() << "no exception";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("garbage.key"), std::string::npos) << e.what();
  }
  EVP_PKEY* ec = EVP_PKEY_Q_keygen(nullptr, nullptr, "EC", "P-256");
  ASSERT_NE(ec, nullptr);
  BIO* bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(bio, ec, nullptr, nullptr, 0, nullptr, nullptr);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  write_file(dir_ + "/ec.key", std::string(data, n));
  BIO_free(bio);
  bio = BIO_new(BIO_s_mem());
  PEM_write_bio_PUBKEY(bio, ec);
  n = BIO_get_mem_data(bio, &data);
  std::string ec_pub(data, n);
  BIO_free(bio);
  EVP_PKEY_free(ec);
  EXPECT_THROW(Signer::load_or_generate(dir_ + "/ec.key", false, generated), std::runtime_error);
  Verifier v;
  std::string error;
  EXPECT_FALSE(v.add_public_key_pem(ec_pub, error));
  EXPECT_EQ(error, "not an Ed25519 public key");
  EXPECT_FALSE(v.add_public_key_pem("junk", error));
  EXPECT_FALSE(v.add_public_key_pem("", error));
  EXPECT_EQ(v.key_count(), 0u);
  // Under a regular file no directory can be created.
  EXPECT_THROW(Signer::load_or_generate(dir_ + "/garbage.key/x/signing.key", true, generated),
               std::runtime_error);
}

TEST_F(SyncEnvelope, PublicKeyFile) {
  write_file(dir_ + "/trusted.pem",
             "# two keys\n" + signer_->public_key_pem() + "\n" + other_->public_key_pem());
  Verifier v;
  std::string error;
  ASSERT_TRUE(v.add_public_key_file(dir_ + "/trusted.pem", error)) << error;
  EXPECT_EQ(v.key_count(), 2u);
  EXPECT_TRUE(v.verify(signed_state(), error)) << error;

  write_file(dir_ + "/empty.pem", "nothing here\n");
  EXPECT_FALSE(v.add_public_key_file(dir_ + "/empty.pem", error));
  EXPECT_NE(error.find("no PEM public key"), std::string::npos) << error;
  std::ifstream in(dir_ + "/a/signing.key");
  std::string priv((std::istreambuf_iterator<char>(in)), {});
  write_file(dir_ + "/private.pem", signer_->public_key_pem() + priv);  // a private key by mistake
  EXPECT_FALSE(v.add_public_key_file(dir_ + "/private.pem", error));
  EXPECT_NE(error.find("key 2"), std::string::npos) << error;
  Verifier fresh;
  EXPECT_FALSE(fresh.add_public_key_file(dir_ + "/private.pem", error));
  EXPECT_EQ(fresh.key_count(), 0u);  // all or nothing
  EXPECT_FALSE(v.add_public_key_file(dir_ + "/none.pem", error));
  EXPECT_NE(error.find("none.pem"), std::string::npos) << error;

  Verifier moved = std::move(v);
  EXPECT_EQ(moved.key_count(), 2u);
  EXPECT_TRUE(moved.verify(signed_state(), error)) << error;
}

TEST_F(SyncEnvelope, SignAndVerify) {
  SignedState s = signed_state();
  EXPECT_EQ(s.key_id, signer_->key_id());
  std::string error;
  EXPECT_TRUE(verifier_.verify(s, error)) << error;

  SignedState t = s;
  t.revision = 43;  // tampered revision
  EXPECT_FALSE(verifier_.verify(t, error));
  EXPECT_EQ(error, "signature does not verify");
  t = s;
  t.cluster_id = "1";
  EXPECT_FALSE(verifier_.verify(t, error));
  t = s;
  t.content_hash[0] = t.content_hash[0] == '0' ? '1' : '0';
  EXPECT_FALSE(verifier_.verify(t, error));

  SignedState wrong = s;  // signed by a key that claims the trusted key's id
  other_->sign(wrong);
  wrong.key_id = signer_->key_id();
  EXPECT_FALSE(verifier_.verify(wrong, error));
  EXPECT_EQ(error, "signature does not verify");

  other_->sign(t = s);  // an untrusted key
  EXPECT_FALSE(verifier_.verify(t, error));
  EXPECT_EQ(error, "unknown signing key " + other_->key_id());
  EXPECT_FALSE(Verifier().verify(s, error));

  t = s;
  t.signature = "!!!!";
  EXPECT_FALSE(verifier_.verify(t, error));
  EXPECT_EQ(error, "signature is not a base64 Ed25519 signature");
}

TEST_F(SyncEnvelope, EncodeDecodeRoundTrip) {
  SignedState s = signed_state();
  std::string text = encode_snapshot(s, set_.document());
  EXPECT_EQ(text.rfind("portico-snapshot 1\ncluster_id: 3397744812459331135\nrevision: 42\nsha256: ", 0), 0u);
  SignedState d;
  std::string_view doc;
  std::string error;
  ASSERT_TRUE(decode_snapshot(text, d, doc, error)) << error;
  EXPECT_EQ(d.cluster_id, s.cluster_id);
  EXPECT_EQ(d.revision, 42);
  EXPECT_EQ(d.content_hash, s.content_hash);
  EXPECT_EQ(d.key_id, s.key_id);
  EXPECT_EQ(d.signature, s.signature);
  EXPECT_EQ(doc, set_.document());

  SignedState o;
  ResourceSet set;
  ASSERT_TRUE(open_snapshot(text, verifier_, o, set, error)) << error;
  EXPECT_EQ(set, set_);
  EXPECT_EQ(o.revision, 42);
  SignedState zero = signed_state(0);
  ASSERT_TRUE(open_snapshot(encode_snapshot(zero, set_.document()), verifier_, o, set, error)) << error;
  EXPECT_EQ(o.revision, 0);
}

TEST_F(SyncEnvelope, DecodeIsStrict) {
  const std::string good = snapshot();
  auto replace_line = [&](int line, const std::string& with) {
    size_t b = 0;
    for (int i = 1; i < line; ++i) b = good.find('\n', b) + 1;
    size_t e = good.find('\n', b);
    return good.substr(0, b) + with + good.substr(e);
  };
  struct Case {
    std::string text;
    std::string error_has;
  } cases[] = {
      {"", "line 1"},
      {good.substr(0, 40), "line 2"},  // truncated header
      {good.substr(0, good.find("\n\n") + 1), "line 7"},
      {replace_line(1, "portico-snapshot 2"), "line 1"},
      {replace_line(2, "cluster: 1"), "line 2"},
      {replace_line(2, "cluster_id: "), "line 2"},
      {replace_line(2, "cluster_id: a b"), "line 2"},
      {replace_line(3, "revision: -1"), "line 3"},
      {replace_line(3, "revision: 042"), "line 3"},
      {replace_line(3, "revision: 99999999999999999999"), "line 3"},
      {replace_line(3, "revision:42"), "line 3"},
      {replace_line(3, "revision: 42 "), "line 3"},
      {replace_line(4, "sha256: abc"), "line 4"},
      {replace_line(4, "sha256: " + std::string(64, 'A')), "line 4"},
      {replace_line(5, "key_id: 0123"), "line 5"},
      {replace_line(6, "signature: not*base64"), "line 6"},
      {replace_line(6, "signature: QUJD"), "line 6"},  // valid base64, not 64 bytes
      {replace_line(6, "signature: " + signed_state().signature.substr(4)), "line 6"},
      {replace_line(7, "extra: 1"), "line 7"},
      {replace_line(3, "sha256: x"), "line 3"},  // lines out of order
  };
  for (const Case& c : cases) {
    SignedState s;
    std::string_view doc;
    std::string error;
    EXPECT_FALSE(decode_snapshot(c.text, s, doc, error)) << c.text;
    EXPECT_NE(error.find(c.error_has), std::string::npos) << error << " / want " << c.error_has;
  }
  // Bad padding in the signature: one '=' moved into the middle.
  std::string sig = signed_state().signature;
  ASSERT_EQ(sig.back(), '=');
  std::string moved = sig.substr(0, 10) + "=" + sig.substr(10, sig.size() - 11);
  SignedState s;
  std::string_view doc;
  std::string error;
  EXPECT_FALSE(decode_snapshot(replace_line(6, "signature: " + moved), s, doc, error));
}

TEST_F(SyncEnvelope, RefusesMoreThanTheBound) {
  size_t size = kMaxSnapshotBytes + 1;
  void* p = ::mmap(nullptr, size, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  ASSERT_NE(p, MAP_FAILED);
  SignedState s;
  std::string_view doc;
  std::string error;
  EXPECT_FALSE(decode_snapshot(std::string_view(static_cast<const char*>(p), size), s, doc, error));
  EXPECT_EQ(error, "snapshot is larger than 128 MiB");
  ::munmap(p, size);
}

TEST_F(SyncEnvelope, OpenSnapshotRefusesTampering) {
  const std::string good = snapshot();
  SignedState s;
  ResourceSet set;
  set.put("routes", "previous", "{}");
  std::string error;

  std::string t = good;  // one byte of the document changed: what a corrupted file looks like
  t[t.find(R"("uri":"/a")", t.find("\n\n")) + 8] = 'b';  // in the document: the base64 signature may hold "/a" too
  EXPECT_FALSE(open_snapshot(t, verifier_, s, set, error));
  EXPECT_EQ(error, "content does not match its hash");

  t = good;  // the revision changed: the signature covers it
  t.replace(t.find("revision: 42"), 12, "revision: 43");
  EXPECT_FALSE(open_snapshot(t, verifier_, s, set, error));
  EXPECT_EQ(error, "signature does not verify");

  ResourceSet evil = set_;  // other content with its hash recomputed, the old signature kept
  evil.put("routes", "2", R"({"id":"2","uri":"/evil"})");
  SignedState forged = signed_state();
  forged.content_hash = evil.content_hash();
  EXPECT_FALSE(open_snapshot(encode_snapshot(forged, evil.document()), verifier_, s, set, error));
  EXPECT_EQ(error, "signature does not verify");

  SignedState untrusted = signed_state();
  other_->sign(untrusted);
  EXPECT_FALSE(open_snapshot(encode_snapshot(untrusted, set_.document()), verifier_, s, set, error));
  EXPECT_EQ(error, "unknown signing key " + other_->key_id());

  EXPECT_FALSE(open_snapshot(encode_snapshot(signed_state(), "{\"routes\":7}"), verifier_, s, set, error));
  EXPECT_EQ(error, "routes is not an array");
  t = good;
  t.resize(t.size() - 5);  // truncated document
  EXPECT_FALSE(open_snapshot(t, verifier_, s, set, error));
  EXPECT_EQ(error.rfind("document is not valid JSON: ", 0), 0u) << error;

  EXPECT_EQ(set.size(), 1u);  // outputs untouched on failure
  EXPECT_NE(set.find("routes", "previous"), nullptr);
}

}  // namespace
}  // namespace portico::sync
