#include "config/secret_box.h"

#include <fcntl.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <memory>

namespace portico::config {

struct Keyring::Key {
  std::string id;
  std::array<unsigned char, kKeyBytes> bytes{};
  int line = 0;

  Key() = default;
  Key(const Key&) = default;
  Key& operator=(const Key&) = default;
  // Every copy wipes its own bytes, so a vector's reallocation leaves no key behind in freed memory.
  ~Key() { OPENSSL_cleanse(bytes.data(), bytes.size()); }
};

namespace {

constexpr std::string_view kVersion = "v1";
constexpr size_t kNonceBytes = 12;
constexpr size_t kTagBytes = 16;

using CipherCtx = std::unique_ptr<EVP_CIPHER_CTX, decltype(&EVP_CIPHER_CTX_free)>;

// ---- base64 ----

constexpr char kStd[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
constexpr char kUrl[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

std::string base64_encode(const unsigned char* data, size_t n, const char* alphabet, bool pad) {
  std::string out;
  out.reserve((n + 2) / 3 * 4);
  size_t i = 0;
  for (; i + 3 <= n; i += 3) {
    uint32_t v = uint32_t{data[i]} << 16 | uint32_t{data[i + 1]} << 8 | data[i + 2];
    for (int shift = 18; shift >= 0; shift -= 6) out += alphabet[(v >> shift) & 63];
  }
  if (size_t rest = n - i; rest > 0) {
    uint32_t v = uint32_t{data[i]} << 16 | (rest == 2 ? uint32_t{data[i + 1]} << 8 : 0);
    out += alphabet[(v >> 18) & 63];
    out += alphabet[(v >> 12) & 63];
    if (rest == 2) out += alphabet[(v >> 6) & 63];
    if (pad) out.append(rest == 2 ? 1 : 2, '=');
  }
  return out;
}

int base64_value(char c, const char* alphabet) {
  const char* p = std::strchr(alphabet, c);
  return c != '\0' && p != nullptr ? static_cast<int>(p - alphabet) : -1;
}

// Strict decoding: only `alphabet`, padding exactly when `pad` (and then required), and the unused low bits
// of the last character zero, so each byte string has exactly one accepted text (a token cannot be altered in
// its spare bits and still be accepted).
bool base64_decode(std::string_view text, const char* alphabet, bool pad, std::string& out) {
  if (pad) {
    if (text.size() % 4 != 0) return false;
    size_t pads = 0;
    while (pads < 2 && pads < text.size() && text[text.size() - 1 - pads] == '=') ++pads;
    text.remove_suffix(pads);
  } else if (text.size() % 4 == 1) {
    return false;
  }
  out.clear();
  out.reserve(text.size() / 4 * 3 + 2);
  uint32_t acc = 0;
  int bits = 0;
  for (char c : text) {
    int v = base64_value(c, alphabet);
    if (v < 0) return false;
    acc = (acc << 6) | static_cast<uint32_t>(v);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out += static_cast<char>((acc >> bits) & 0xff);
    }
  }
  return (acc & ((1u << bits) - 1)) == 0 && text.size() % 4 != 1;
}

// ---- keyring text ----

bool valid_key_id(std::string_view id) {
  if (id.empty() || id.size() > Keyring::kMaxIdLength) return false;
  for (char c : id) {
    bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
              c == '-' || c == '.';
    if (!ok) return false;
  }
  return true;
}

std::vector<std::string_view> fields_of(std::string_view line) {
  std::vector<std::string_view> fields;
  size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i == line.size()) break;
    if (line[i] == '#') break;  // the rest of the line is a comment
    size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    fields.push_back(line.substr(start, i - start));
  }
  return fields;
}

std::string cat(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (std::string_view p : parts) s += p;
  return s;
}

bool fail(std::string* error, std::string message) {
  if (error) *error = std::move(message);
  return false;
}

std::string mode_text(mode_t mode) {
  char buf[8];
  std::snprintf(buf, sizeof buf, "%04o", static_cast<unsigned>(mode & 07777));
  return buf;
}

// The prefix `$ENC$v1$<id>$` and the payload after it; false when `stored` does not have that shape.
struct TokenParts {
  std::string_view version, id, aad, payload;
};

bool split_token(std::string_view stored, TokenParts& parts) {
  if (!Keyring::is_encrypted(stored)) return false;
  std::string_view rest = stored.substr(Keyring::kPrefix.size());
  size_t dollar = rest.find('$');
  if (dollar == std::string_view::npos) return false;
  parts.version = rest.substr(0, dollar);
  rest.remove_prefix(dollar + 1);
  dollar = rest.find('$');
  parts.id = rest.substr(0, dollar);
  parts.payload = dollar == std::string_view::npos ? std::string_view() : rest.substr(dollar + 1);
  parts.aad = stored.substr(0, stored.size() - parts.payload.size());
  return dollar != std::string_view::npos;
}

// The longest token: prefix with the longest id, then base64url (4 characters per 3 bytes, rounded up).
constexpr size_t kMaxTokenBytes = Keyring::kPrefix.size() + kVersion.size() + 1 + Keyring::kMaxIdLength + 1 +
                                  ((kNonceBytes + Keyring::kMaxPlaintext + kTagBytes) * 4 + 2) / 3;

}  // namespace

// ---- construction ----

Keyring::Keyring(std::vector<Key> keys) : keys_(std::move(keys)) {}
Keyring::Keyring(Keyring&&) noexcept = default;
Keyring& Keyring::operator=(Keyring&&) noexcept = default;
Keyring::~Keyring() = default;

std::optional<Keyring> Keyring::parse(std::string_view text, std::string_view source, std::string* error) {
  std::vector<Key> keys;
  int line_number = 0;
  while (!text.empty()) {
    ++line_number;
    size_t end = text.find('\n');
    std::string_view line = text.substr(0, end);
    text.remove_prefix(end == std::string_view::npos ? text.size() : end + 1);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);

    std::vector<std::string_view> fields = fields_of(line);
    if (fields.empty()) continue;
    std::string where = cat({source, ": line ", std::to_string(line_number), ": "});
    // Nothing read from a bad line is echoed: a swapped or mistyped line may hold key bytes.
    if (fields.size() != 2) {
      fail(error, where + "expected '<key id> <base64 key>' (and an optional # comment)");
      return std::nullopt;
    }
    if (!valid_key_id(fields[0])) {
      fail(error, where + "the key id must be 1 to 32 characters of A-Z a-z 0-9 _ . -");
      return std::nullopt;
    }
    std::string id(fields[0]);
    std::string bytes;
    bool decoded = base64_decode(fields[1], kStd, /*pad=*/true, bytes);
    size_t length = bytes.size();
    Key key;
    if (decoded && length == kKeyBytes) std::memcpy(key.bytes.data(), bytes.data(), kKeyBytes);
    OPENSSL_cleanse(bytes.data(), bytes.size());
    if (!decoded) {
      fail(error, where + "key '" + id + "' is not padded standard base64");
      return std::nullopt;
    }
    if (length != kKeyBytes) {
      fail(error, where + "key '" + id + "' is " + std::to_string(length) +
                      " bytes; it must be 32 (generate one with: openssl rand -base64 32)");
      return std::nullopt;
    }
    if (keys.size() == kMaxKeys) {
      fail(error, where + "more than " + std::to_string(kMaxKeys) + " keys");
      return std::nullopt;
    }
    for (const Key& other : keys) {
      if (other.id == id) {
        fail(error,
             where + "duplicate key id '" + id + "' (first on line " + std::to_string(other.line) + ")");
        return std::nullopt;
      }
      if (CRYPTO_memcmp(other.bytes.data(), key.bytes.data(), kKeyBytes) == 0) {
        fail(error, where + "key '" + id + "' is the same key as '" + other.id + "' (line " +
                        std::to_string(other.line) + ")");
        return std::nullopt;
      }
    }
    key.id = std::move(id);
    key.line = line_number;
    keys.push_back(std::move(key));
  }
  if (keys.empty()) {
    fail(error, cat({source, ": no key (a keyring needs at least one line '<key id> <base64 key>')"}));
    return std::nullopt;
  }
  return Keyring(std::move(keys));
}

std::optional<Keyring> Keyring::load_file(const std::string& path, std::string* error,
                                          std::vector<std::string>* warnings) {
  // Opened first and checked with fstat, so the checks are about the file that is read (a Kubernetes secret
  // volume's symlinks are followed, as they must be).
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0) {
    fail(error, cat({"keyring ", path, ": cannot open: ", std::strerror(errno)}));
    return std::nullopt;
  }
  struct FdCloser {
    int fd;
    ~FdCloser() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0) {
    fail(error, cat({"keyring ", path, ": cannot stat: ", std::strerror(errno)}));
    return std::nullopt;
  }
  if (!S_ISREG(st.st_mode)) {
    fail(error, cat({"keyring ", path, ": not a regular file"}));
    return std::nullopt;
  }
  if ((st.st_mode & (S_IRWXO | S_IWGRP)) != 0) {
    fail(error, cat({"keyring ", path, ": mode ", mode_text(st.st_mode),
                     " lets other users read or change it; chmod 600 it (in Kubernetes, mount the secret "
                     "with defaultMode 0400)"}));
    return std::nullopt;
  }
  if (static_cast<uintmax_t>(st.st_size) > kMaxFileBytes) {
    fail(error, cat({"keyring ", path, ": larger than ", std::to_string(kMaxFileBytes), " bytes"}));
    return std::nullopt;
  }
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      int saved = errno;
      OPENSSL_cleanse(text.data(), text.size());
      fail(error, cat({"keyring ", path, ": cannot read: ", std::strerror(saved)}));
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxFileBytes) break;  // it grew after fstat
  }
  OPENSSL_cleanse(buf, sizeof buf);
  std::optional<Keyring> keyring;
  if (text.size() > kMaxFileBytes) {
    fail(error, cat({"keyring ", path, ": larger than ", std::to_string(kMaxFileBytes), " bytes"}));
  } else {
    keyring = parse(text, cat({"keyring ", path}), error);
  }
  OPENSSL_cleanse(text.data(), text.size());
  if (keyring && (st.st_mode & S_IRGRP) != 0 && warnings) {
    warnings->push_back(cat({"keyring ", path, ": mode ", mode_text(st.st_mode),
                             " lets its group read it; 0600 or 0400 is enough unless that group must"}));
  }
  return keyring;
}

std::string Keyring::generate_key() {
  std::array<unsigned char, kKeyBytes> raw{};
  if (RAND_bytes(raw.data(), static_cast<int>(raw.size())) != 1) {
    ERR_clear_error();
    return {};
  }
  std::string key = base64_encode(raw.data(), raw.size(), kStd, /*pad=*/true);
  OPENSSL_cleanse(raw.data(), raw.size());
  return key;
}

// ---- accessors ----

const std::string& Keyring::primary_id() const {
  return keys_.front().id;
}

size_t Keyring::size() const {
  return keys_.size();
}

const Keyring::Key* Keyring::find(std::string_view id) const {
  for (const Key& key : keys_) {
    if (key.id == id) return &key;
  }
  return nullptr;
}

bool Keyring::has_key(std::string_view id) const {
  return find(id) != nullptr;
}

bool Keyring::is_encrypted(std::string_view stored) {
  return stored.starts_with(kPrefix);
}

std::string_view Keyring::key_id_of(std::string_view stored) {
  TokenParts parts;
  if (!split_token(stored, parts) || parts.version != kVersion || !valid_key_id(parts.id)) return {};
  return parts.id;
}

bool Keyring::needs_reencryption(std::string_view stored) const {
  return key_id_of(stored) != primary_id();
}

// ---- encryption ----

bool Keyring::encrypt(std::string_view plain, std::string& token, std::string* error) const {
  token.clear();
  if (plain.size() > kMaxPlaintext) {
    return fail(error, "the value is " + std::to_string(plain.size()) + " bytes; at most " +
                           std::to_string(kMaxPlaintext) + " can be encrypted");
  }
  const Key& key = keys_.front();
  std::string aad = cat({kPrefix, kVersion, "$", key.id, "$"});
  std::vector<unsigned char> sealed(kNonceBytes + plain.size() + kTagBytes);
  unsigned char* nonce = sealed.data();
  unsigned char* body = nonce + kNonceBytes;
  unsigned char* tag = body + plain.size();
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int n = 0;
  // A random nonce per value: with 2^32 values per key the chance of a repeat stays below 2^-32 (NIST SP
  // 800-38D), far more than a gateway's credentials; rotation resets the count anyway.
  bool ok = ctx && RAND_bytes(nonce, kNonceBytes) == 1 &&
            EVP_EncryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
            EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
            EVP_EncryptInit_ex(ctx.get(), nullptr, nullptr, key.bytes.data(), nonce) == 1 &&
            EVP_EncryptUpdate(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(aad.data()),
                              static_cast<int>(aad.size())) == 1 &&
            EVP_EncryptUpdate(ctx.get(), body, &n, reinterpret_cast<const unsigned char*>(plain.data()),
                              static_cast<int>(plain.size())) == 1 &&
            static_cast<size_t>(n) == plain.size() && EVP_EncryptFinal_ex(ctx.get(), body + n, &n) == 1 &&
            n == 0 && EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, kTagBytes, tag) == 1;
  if (!ok) {
    ERR_clear_error();
    return fail(error, "encryption failed (OpenSSL)");
  }
  token = aad + base64_encode(sealed.data(), sealed.size(), kUrl, /*pad=*/false);
  return true;
}

bool Keyring::decrypt(std::string_view stored, std::string& plain, std::string* error) const {
  plain.clear();
  TokenParts parts;
  if (!is_encrypted(stored)) return fail(error, "not an encrypted value (no $ENC$ prefix)");
  if (stored.size() > kMaxTokenBytes) return fail(error, "encrypted value too large");
  if (!split_token(stored, parts)) return fail(error, "malformed encrypted value (truncated header)");
  if (parts.version != kVersion) return fail(error, "unsupported encrypted value version");
  if (!valid_key_id(parts.id)) return fail(error, "malformed encrypted value (bad key id)");
  const Key* key = find(parts.id);
  if (key == nullptr) {
    return fail(error, cat({"encrypted with key '", parts.id, "', which is not in the keyring"}));
  }
  std::string sealed;
  if (!base64_decode(parts.payload, kUrl, /*pad=*/false, sealed)) {
    return fail(error, "malformed encrypted value (payload is not base64url)");
  }
  if (sealed.size() < kNonceBytes + kTagBytes) return fail(error, "malformed encrypted value (truncated)");
  const auto* nonce = reinterpret_cast<const unsigned char*>(sealed.data());
  const unsigned char* body = nonce + kNonceBytes;
  size_t body_size = sealed.size() - kNonceBytes - kTagBytes;
  // EVP_CTRL_GCM_SET_TAG takes a non-const pointer but only reads it.
  auto* tag = reinterpret_cast<unsigned char*>(sealed.data()) + kNonceBytes + body_size;

  plain.resize(body_size);
  auto* out = reinterpret_cast<unsigned char*>(plain.data());
  CipherCtx ctx(EVP_CIPHER_CTX_new(), EVP_CIPHER_CTX_free);
  int n = 0;
  bool setup =
      ctx && EVP_DecryptInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, nullptr, nullptr) == 1 &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_IVLEN, kNonceBytes, nullptr) == 1 &&
      EVP_DecryptInit_ex(ctx.get(), nullptr, nullptr, key->bytes.data(), nonce) == 1 &&
      EVP_DecryptUpdate(ctx.get(), nullptr, &n, reinterpret_cast<const unsigned char*>(parts.aad.data()),
                        static_cast<int>(parts.aad.size())) == 1 &&
      EVP_DecryptUpdate(ctx.get(), out, &n, body, static_cast<int>(body_size)) == 1 &&
      static_cast<size_t>(n) == body_size &&
      EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, kTagBytes, tag) == 1;
  bool authentic = setup && EVP_DecryptFinal_ex(ctx.get(), out + n, &n) == 1;
  ERR_clear_error();
  if (!authentic) {
    // The unauthenticated plaintext is wiped, never handed out.
    OPENSSL_cleanse(plain.data(), plain.size());
    plain.clear();
    return fail(error, setup ? cat({"encrypted value failed authentication with key '", parts.id,
                                    "' (altered, or made with another key of that id)"})
                             : std::string("decryption failed (OpenSSL)"));
  }
  return true;
}

}  // namespace portico::config
