// config::Keyring (secret_box.h): the keyring file's rules, AES-256-GCM tokens, rotation, and every way a
// stored token can be refused.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "config/secret_box.h"

namespace portico::config {
namespace {

// Fixed keys for readable tests; generate_key() is tested on its own.
constexpr char kKeyA[] = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";  // bytes 0..31
constexpr char kKeyB[] = "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8=";  // bytes 32..63

Keyring must_parse(const std::string& text) {
  std::string error;
  std::optional<Keyring> keyring = Keyring::parse(text, "test", &error);
  EXPECT_TRUE(keyring) << error;
  if (!keyring) std::abort();
  return std::move(*keyring);
}

std::string parse_error(const std::string& text) {
  std::string error;
  EXPECT_FALSE(Keyring::parse(text, "test", &error));
  return error;
}

std::string seal(const Keyring& keyring, std::string_view plain) {
  std::string token, error;
  EXPECT_TRUE(keyring.encrypt(plain, token, &error)) << error;
  return token;
}

// Decrypts and returns the error, or "" on success (then `plain` holds the value).
std::string open_error(const Keyring& keyring, std::string_view token, std::string* plain = nullptr) {
  std::string out = "not cleared", error;
  bool ok = keyring.decrypt(token, out, &error);
  if (plain) *plain = out;
  if (!ok) {
    EXPECT_EQ(out, "") << "a refused token must leave no plaintext";
    EXPECT_FALSE(error.empty());
  }
  return ok ? std::string() : error;
}

TEST(SecretBox, RoundTrip) {
  Keyring keyring = must_parse(std::string("k1 ") + kKeyA + "\n");
  EXPECT_EQ(keyring.primary_id(), "k1");
  EXPECT_EQ(keyring.size(), 1u);
  std::string binary("a\0b\xff\n$", 6);
  for (std::string_view value :
       {std::string_view("s3cr3t"), std::string_view(""), std::string_view(binary)}) {
    std::string token = seal(keyring, value);
    EXPECT_TRUE(token.starts_with("$ENC$v1$k1$")) << token;
    EXPECT_TRUE(Keyring::is_encrypted(token));
    EXPECT_EQ(Keyring::key_id_of(token), "k1");
    EXPECT_FALSE(keyring.needs_reencryption(token));
    for (char c : token) EXPECT_TRUE(c > 0x20 && c < 0x7f) << "token must be printable";
    std::string plain;
    EXPECT_EQ(open_error(keyring, token, &plain), "");
    EXPECT_EQ(plain, value);
  }
  // A random nonce: the same value never gives the same token, and the plaintext does not show.
  std::string t1 = seal(keyring, "password-password"), t2 = seal(keyring, "password-password");
  EXPECT_NE(t1, t2);
  EXPECT_EQ(t1.find("password"), std::string::npos);
}

TEST(SecretBox, LargestValue) {
  Keyring keyring = must_parse(std::string("k1 ") + kKeyA);
  std::string big(Keyring::kMaxPlaintext, 'x');
  std::string plain, token = seal(keyring, big);
  EXPECT_EQ(open_error(keyring, token, &plain), "");
  EXPECT_EQ(plain, big);

  std::string error;
  token = "stale";
  EXPECT_FALSE(keyring.encrypt(big + "x", token, &error));
  EXPECT_EQ(token, "");
  EXPECT_NE(error.find("at most 65536"), std::string::npos) << error;
  // A stored value longer than any token is refused before it is decoded.
  std::string huge = "$ENC$v1$k1$" + std::string(Keyring::kMaxPlaintext * 2, 'A');
  EXPECT_EQ(open_error(keyring, huge), "encrypted value too large");
}

// A token made outside this code (Python's cryptography AESGCM: key bytes 0..31, nonce bytes 100..111, AAD
// the prefix), so the format is pinned: values already in etcd must decrypt after any refactoring.
TEST(SecretBox, DecryptsKnownToken) {
  Keyring keyring = must_parse(std::string("2024-01 ") + kKeyA);
  std::string plain;
  EXPECT_EQ(open_error(keyring, "$ENC$v1$2024-01$ZGVmZ2hpamtsbW5vOyi9FEqddu5fESyftRcOElwLbKcUWJy4Sr2MZgHfDw",
                       &plain),
            "");
  EXPECT_EQ(plain, "s3cr3t password");
}

TEST(SecretBox, Rotation) {
  Keyring old_ring = must_parse(std::string("old ") + kKeyA);
  std::string old_token = seal(old_ring, "jack-key");

  // Step 1: the new key goes first; the old one stays so existing values still decrypt.
  Keyring both = must_parse(std::string("# rotated\nnew ") + kKeyB + "  # since today\nold " + kKeyA + "\n");
  EXPECT_EQ(both.primary_id(), "new");
  EXPECT_TRUE(both.has_key("old"));
  std::string plain;
  EXPECT_EQ(open_error(both, old_token, &plain), "");
  EXPECT_EQ(plain, "jack-key");
  EXPECT_TRUE(both.needs_reencryption(old_token));
  EXPECT_TRUE(both.needs_reencryption("plain-text-key"));

  // Step 2: a re-write uses the new key.
  std::string new_token = seal(both, plain);
  EXPECT_TRUE(new_token.starts_with("$ENC$v1$new$")) << new_token;
  EXPECT_FALSE(both.needs_reencryption(new_token));

  // Step 3: once the old key is dropped, only re-written values decrypt.
  Keyring new_ring = must_parse(std::string("new ") + kKeyB);
  EXPECT_EQ(open_error(new_ring, new_token, &plain), "");
  EXPECT_EQ(plain, "jack-key");
  EXPECT_EQ(open_error(new_ring, old_token), "encrypted with key 'old', which is not in the keyring");
  // A process not yet given the new key cannot read the new values (why keys are distributed first).
  EXPECT_NE(open_error(old_ring, new_token), "");
}

TEST(SecretBox, TamperingIsDetected) {
  Keyring keyring = must_parse(std::string("a ") + kKeyA + "\nb " + kKeyB);
  std::string token = seal(keyring, "basic-auth password");
  size_t payload = token.rfind('$') + 1;
  // Every character of the payload (nonce, ciphertext, tag) is covered.
  for (size_t i = payload; i < token.size(); ++i) {
    std::string altered = token;
    altered[i] = altered[i] == 'A' ? 'B' : 'A';
    EXPECT_NE(open_error(keyring, altered), "") << "position " << i;
  }
  // Relabelling the token with another id of the same keyring fails authentication.
  std::string relabelled = "$ENC$v1$b$" + token.substr(payload);
  EXPECT_EQ(
      open_error(keyring, relabelled),
      "encrypted value failed authentication with key 'b' (altered, or made with another key of that id)");
  // So does the same id bound to other key bytes (a keyring edited by mistake).
  Keyring impostor = must_parse(std::string("a ") + kKeyB);
  EXPECT_NE(open_error(impostor, token).find("failed authentication"), std::string::npos);
  // Another version is refused, not guessed at.
  std::string v2 = token;
  v2.replace(0, 8, "$ENC$v2$");
  EXPECT_EQ(open_error(keyring, v2), "unsupported encrypted value version");
}

TEST(SecretBox, MalformedTokens) {
  Keyring keyring = must_parse(std::string("a ") + kKeyA);
  std::string token = seal(keyring, "x");
  EXPECT_EQ(open_error(keyring, "plain"), "not an encrypted value (no $ENC$ prefix)");
  EXPECT_EQ(open_error(keyring, ""), "not an encrypted value (no $ENC$ prefix)");
  EXPECT_EQ(open_error(keyring, "$ENC$"), "malformed encrypted value (truncated header)");
  EXPECT_EQ(open_error(keyring, "$ENC$v1$a"), "malformed encrypted value (truncated header)");
  EXPECT_EQ(open_error(keyring, "$ENC$v1$a$"), "malformed encrypted value (truncated)");
  EXPECT_EQ(open_error(keyring, "$ENC$v1$$AAAA"), "malformed encrypted value (bad key id)");
  EXPECT_EQ(open_error(keyring, "$ENC$v1$zz$AAAA"), "encrypted with key 'zz', which is not in the keyring");
  // Truncated anywhere in the payload: too short, an impossible base64 length, or a failed tag.
  for (size_t cut = 1; cut < token.size() - 11; ++cut) {
    EXPECT_NE(open_error(keyring, token.substr(0, token.size() - cut)), "") << "cut " << cut;
  }
  EXPECT_EQ(open_error(keyring, token + "="), "malformed encrypted value (payload is not base64url)");
  EXPECT_EQ(open_error(keyring, token + "+"), "malformed encrypted value (payload is not base64url)");
  // 12 + 1 + 16 = 29 bytes leave 2 spare bits in the last character: a non-zero one is not canonical.
  static constexpr std::string_view kUrl = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string spare = token;
  spare.back() = kUrl[kUrl.find(spare.back()) | 1];
  EXPECT_EQ(open_error(keyring, spare), "malformed encrypted value (payload is not base64url)");

  EXPECT_TRUE(Keyring::is_encrypted("$ENC$anything"));
  EXPECT_FALSE(Keyring::is_encrypted("$enc$v1$a$x"));
  EXPECT_EQ(Keyring::key_id_of("$ENC$v2$a$x"), "");
  EXPECT_EQ(Keyring::key_id_of("plain"), "");
}

TEST(SecretBox, FileFormat) {
  Keyring keyring = must_parse(std::string("\r\n# comment\n\t  \n  first\t") + kKeyA + "\r\n" +
                               "second.key_2-x " + kKeyB + " # old\n");
  EXPECT_EQ(keyring.primary_id(), "first");
  EXPECT_EQ(keyring.size(), 2u);
  EXPECT_TRUE(keyring.has_key("second.key_2-x"));
  EXPECT_FALSE(keyring.has_key("third"));
}

TEST(SecretBox, MalformedFile) {
  std::string a = kKeyA, b = kKeyB;
  EXPECT_EQ(parse_error(a), "test: line 1: expected '<key id> <base64 key>' (and an optional # comment)");
  EXPECT_EQ(parse_error("k1 " + a + " extra"),
            "test: line 1: expected '<key id> <base64 key>' (and an optional # comment)");
  // A bad id is not echoed: a swapped line would print the key.
  std::string error = parse_error(a + " k1");
  EXPECT_EQ(error, "test: line 1: the key id must be 1 to 32 characters of A-Z a-z 0-9 _ . -");
  EXPECT_EQ(parse_error("k$1 " + a), error);
  EXPECT_EQ(parse_error(std::string(33, 'k') + " " + a), error);
  EXPECT_EQ(parse_error("k1 " + a.substr(0, 43)), "test: line 1: key 'k1' is not padded standard base64");
  EXPECT_EQ(parse_error("k1 " + a.substr(0, 43) + "-"),
            "test: line 1: key 'k1' is not padded standard base64");
  EXPECT_EQ(parse_error("k1 AAECAwQFBgcICQoLDA0ODw=="),
            "test: line 1: key 'k1' is 16 bytes; it must be 32 (generate one with: openssl rand -base64 32)");
  EXPECT_EQ(parse_error("k1 " + a + "\n\nk1 " + b), "test: line 3: duplicate key id 'k1' (first on line 1)");
  EXPECT_EQ(parse_error("k1 " + a + "\nk2 " + a), "test: line 2: key 'k2' is the same key as 'k1' (line 1)");
  std::string many;
  for (size_t i = 0; i <= Keyring::kMaxKeys; ++i) {
    many += 'k';
    many += std::to_string(i);
    many += ' ';
    many += Keyring::generate_key();
    many += '\n';
  }
  EXPECT_EQ(parse_error(many), "test: line 65: more than 64 keys");
}

TEST(SecretBox, EmptyKeyringIsRefused) {
  std::string no_key = "test: no key (a keyring needs at least one line '<key id> <base64 key>')";
  EXPECT_EQ(parse_error(""), no_key);
  EXPECT_EQ(parse_error("# only a comment\n\n   \n"), no_key);
}

TEST(SecretBox, GenerateKey) {
  std::string k1 = Keyring::generate_key(), k2 = Keyring::generate_key();
  EXPECT_EQ(k1.size(), 44u);
  EXPECT_NE(k1, k2);
  Keyring keyring = must_parse("g1 " + k1 + "\ng2 " + k2);
  std::string plain;
  EXPECT_EQ(open_error(keyring, seal(keyring, "v"), &plain), "");
  EXPECT_EQ(plain, "v");
}

class SecretBoxFile : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/portico-keyring-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string write(const std::string& text, mode_t mode) {
    std::string path = dir_ + "/keyring";
    std::ofstream(path, std::ios::trunc) << text;
    EXPECT_EQ(::chmod(path.c_str(), mode), 0);
    return path;
  }

  std::string dir_;
};

TEST_F(SecretBoxFile, PrivateFileLoads) {
  std::string path = write(std::string("k1 ") + kKeyA + "\n", 0600);
  std::string error;
  std::vector<std::string> warnings;
  std::optional<Keyring> keyring = Keyring::load_file(path, &error, &warnings);
  ASSERT_TRUE(keyring) << error;
  EXPECT_EQ(keyring->primary_id(), "k1");
  EXPECT_TRUE(warnings.empty());
  ::chmod(path.c_str(), 0400);
  EXPECT_TRUE(Keyring::load_file(path, &error, &warnings));
  EXPECT_TRUE(warnings.empty());
}

TEST_F(SecretBoxFile, GroupReadableWarns) {
  std::string path = write(std::string("k1 ") + kKeyA + "\n", 0640);
  std::string error;
  std::vector<std::string> warnings;
  EXPECT_TRUE(Keyring::load_file(path, &error, &warnings)) << error;
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_EQ(warnings[0], "keyring " + path +
                             ": mode 0640 lets its group read it; 0600 or 0400 is enough unless "
                             "that group must");
}

TEST_F(SecretBoxFile, OpenModesAreRefused) {
  for (mode_t mode : {0644, 0604, 0601, 0620, 0666}) {
    std::string path = write(std::string("k1 ") + kKeyA + "\n", mode);
    std::string error;
    EXPECT_FALSE(Keyring::load_file(path, &error)) << std::oct << mode;
    EXPECT_NE(error.find("lets other users read or change it; chmod 600 it"), std::string::npos) << error;
  }
}

TEST_F(SecretBoxFile, OtherFilesAreRefused) {
  std::string error;
  EXPECT_FALSE(Keyring::load_file(dir_ + "/missing", &error));
  EXPECT_EQ(error, "keyring " + dir_ + "/missing: cannot open: No such file or directory");
  ::chmod(dir_.c_str(), 0700);
  EXPECT_FALSE(Keyring::load_file(dir_, &error));
  EXPECT_EQ(error, "keyring " + dir_ + ": not a regular file");
  std::string path = write(std::string(Keyring::kMaxFileBytes + 1, '#'), 0600);
  EXPECT_FALSE(Keyring::load_file(path, &error));
  EXPECT_EQ(error, "keyring " + path + ": larger than 65536 bytes");
  path = write("# no key yet\n", 0600);
  EXPECT_FALSE(Keyring::load_file(path, &error));
  EXPECT_EQ(error,
            "keyring " + path + ": no key (a keyring needs at least one line '<key id> <base64 key>')");
  path = write("k1 short\n", 0600);
  EXPECT_FALSE(Keyring::load_file(path, &error));
  EXPECT_EQ(error, "keyring " + path + ": line 1: key 'k1' is not padded standard base64");
}

}  // namespace
}  // namespace portico::config
