// Secrets at rest: a keyring of AES-256 keys, and the authenticated encryption of one credential field (a
// key-auth `key`, a basic-auth `password`, a jwt-auth `secret`) into a printable token, so that etcd, the
// data plane's snapshot cache and S3 snapshots hold only ciphertext. docs/secrets.md has the threat model,
// the file format, rotation, and the comparison with APISIX's `data_encryption.keyring`.
//
// Contract:
// - A Keyring is built only from a keyring file (load_file) or its text (parse) and is never empty: the
//   first key encrypts, every key decrypts. It is immutable once built, so any thread may call its const
//   methods concurrently (each call makes its own OpenSSL context). To reload, build a new Keyring and swap a
//   std::shared_ptr<const Keyring>; tokens stay valid across a reload as long as their key id is kept.
// - The Keyring owns the key bytes and wipes them (OPENSSL_cleanse) when destroyed. It is move-only so that
//   copies of the keys are not made by accident; a moved-from Keyring may only be destroyed or assigned to.
// - Token: `$ENC$v1$<key id>$<base64url, no padding, of nonce(12) || ciphertext || tag(16)>`. AES-256-GCM
//   with a random 96-bit nonce per call; the whole prefix `$ENC$v1$<key id>$` is the additional
//   authenticated data, so neither the version nor the key id can be changed without decrypt refusing it.
//   The same plaintext encrypts to a different token each time: compare plaintexts, never tokens.
// - Error texts never contain key bytes nor plaintext.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace portico::config {

class Keyring {
 public:
  static constexpr size_t kKeyBytes = 32;     // AES-256
  static constexpr size_t kMaxKeys = 64;      // a keyring holds a few keys during a rotation
  static constexpr size_t kMaxIdLength = 32;  // key ids: 1 to 32 of A-Z a-z 0-9 _ . -
  static constexpr size_t kMaxFileBytes = 64 * 1024;
  // The largest plaintext encrypt() takes (the size of an SSL key, the largest secret the config holds), and
  // so the largest token decrypt() reads: bounds the work one stored value can cause.
  static constexpr size_t kMaxPlaintext = 64 * 1024;
  static constexpr std::string_view kPrefix = "$ENC$";

  // Reads and parses the keyring file at `path`. Refuses (nullopt, `error` set) a file that is not a regular
  // file, is larger than kMaxFileBytes, can be written by its group or by others, or can be read by others:
  // a keyring any local user can read protects nothing. A group-readable file (e.g. root:portico 0640) is
  // accepted with a warning appended to `warnings` (when given) for the caller to log. Then as parse().
  static std::optional<Keyring> load_file(const std::string& path, std::string* error,
                                          std::vector<std::string>* warnings = nullptr);

  // Parses keyring text: one key per line, `<key id> <standard base64 of 32 bytes>`, fields separated by
  // spaces or tabs, optionally followed by a `#` comment; blank lines and `#` lines are ignored; CRLF is
  // accepted. Refuses, naming the line (`<source>: line 3: ...`): a line of another shape, a bad key id, a
  // key that is not strict padded base64 of exactly 32 bytes, a duplicate id, the same key bytes under two
  // ids, more than kMaxKeys keys, and a text with no key at all.
  static std::optional<Keyring> parse(std::string_view text, std::string_view source, std::string* error);

  // A new random key in the file's encoding (44 characters of base64), for a CLI helper that prints
  // `<id> <key>`. Empty if the random generator fails.
  static std::string generate_key();

  Keyring(Keyring&&) noexcept;
  Keyring& operator=(Keyring&&) noexcept;
  Keyring(const Keyring&) = delete;
  Keyring& operator=(const Keyring&) = delete;
  ~Keyring();

  const std::string& primary_id() const;  // the key that encrypts (the file's first)
  size_t size() const;
  bool has_key(std::string_view id) const;

  // Encrypts `plain` (any bytes, at most kMaxPlaintext) with the primary key into `token`. False, with
  // `error` set when given and `token` cleared, when `plain` is too large or OpenSSL fails; there is no
  // fallback: a caller must never store the plaintext, nor an empty value, in place of a token.
  [[nodiscard]] bool encrypt(std::string_view plain, std::string& token, std::string* error = nullptr) const;

  // Decrypts a token made by encrypt() with any key of this keyring. False, with `plain` cleared and `error`
  // set when given, for: a value without the `$ENC$` prefix, a version other than v1, a key id this keyring
  // does not hold, a payload that is not canonical unpadded base64url, a truncated or oversized token, and a
  // failed authentication (the token was altered, or its id names a different key than the one it was made
  // with). The plaintext of a token that fails authentication is never returned.
  [[nodiscard]] bool decrypt(std::string_view stored, std::string& plain, std::string* error = nullptr) const;

  // Whether `stored` claims to be a token: it starts with `$ENC$`. Deliberately only the prefix, so that a
  // damaged token is refused by decrypt() instead of being taken for a plaintext credential; an Admin API
  // write whose credential starts with `$ENC$` must therefore be refused or encrypted, never passed through.
  static bool is_encrypted(std::string_view stored);

  // The key id a token names (`k2` in `$ENC$v1$k2$...`), or empty when `stored` has no v1 token prefix.
  static std::string_view key_id_of(std::string_view stored);

  // Whether a rewrite would change how `stored` is protected: it is not a token, or not made with the
  // primary key. After a rotation, the values for which this is true are the ones still to re-write.
  bool needs_reencryption(std::string_view stored) const;

 private:
  struct Key;
  explicit Keyring(std::vector<Key> keys);
  const Key* find(std::string_view id) const;

  std::vector<Key> keys_;
};

}  // namespace portico::config
