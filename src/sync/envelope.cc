#include "sync/envelope.h"

#include <fcntl.h>
#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <stdexcept>

#include "base/log.h"

namespace portico::sync {
namespace {

constexpr size_t kSignatureBytes = 64;  // Ed25519

struct PkeyFree {
  void operator()(EVP_PKEY* p) const { EVP_PKEY_free(p); }
};
using PkeyPtr = std::unique_ptr<EVP_PKEY, PkeyFree>;
using BioPtr = std::unique_ptr<BIO, decltype(&BIO_free)>;
using MdCtxPtr = std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)>;

std::string cat(std::initializer_list<std::string_view> parts) {
  std::string s;
  for (std::string_view p : parts) s += p;
  return s;
}

// The oldest queued OpenSSL error as text (the queue is cleared), or `fallback` when there is none.
std::string openssl_error(const char* fallback) {
  unsigned long e = ERR_get_error();
  ERR_clear_error();
  if (e == 0) return fallback;
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// Refuses to prompt on the terminal for an encrypted key.
int no_password(char*, int, int, void*) {
  return -1;
}

BioPtr memory_bio(std::string_view data) {
  return BioPtr(BIO_new_mem_buf(data.data(), static_cast<int>(data.size())), BIO_free);
}

std::string bio_contents(BIO* bio) {
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<size_t>(n)) : std::string();
}

std::string base64_encode(const unsigned char* data, size_t n) {
  std::string out(4 * ((n + 2) / 3) + 1, '\0');
  int len = EVP_EncodeBlock(reinterpret_cast<unsigned char*>(out.data()), data, static_cast<int>(n));
  out.resize(len > 0 ? static_cast<size_t>(len) : 0);
  return out;
}

// Strict standard base64 (padded, no whitespace). False on anything else.
bool base64_decode(std::string_view text, std::string& out) {
  if (text.empty() || text.size() % 4 != 0) return false;
  size_t pad = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    char c = text[i];
    bool alpha =
        (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '+' || c == '/';
    if (c == '=' && i + 2 >= text.size()) {
      ++pad;
    } else if (!alpha || pad > 0) {
      return false;
    }
  }
  std::string buf(text.size() / 4 * 3, '\0');
  int n = EVP_DecodeBlock(reinterpret_cast<unsigned char*>(buf.data()),
                          reinterpret_cast<const unsigned char*>(text.data()), static_cast<int>(text.size()));
  if (n < 0 || static_cast<size_t>(n) < pad) return false;
  buf.resize(static_cast<size_t>(n) - pad);  // EVP_DecodeBlock counts the padding as zero bytes
  out = std::move(buf);
  return true;
}

// First 16 hex digits of SHA-256 of the raw public key; empty when `key` is not Ed25519.
std::string compute_key_id(EVP_PKEY* key) {
  if (EVP_PKEY_get_id(key) != EVP_PKEY_ED25519) return {};
  unsigned char raw[32];
  size_t len = sizeof raw;
  unsigned char md[EVP_MAX_MD_SIZE];
  unsigned int md_len = 0;
  if (EVP_PKEY_get_raw_public_key(key, raw, &len) != 1 ||
      EVP_Digest(raw, len, md, &md_len, EVP_sha256(), nullptr) != 1) {
    ERR_clear_error();
    return {};
  }
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string id;
  for (size_t i = 0; i < 8; ++i) {
    id += kDigits[md[i] >> 4];
    id += kDigits[md[i] & 0xf];
  }
  return id;
}

// Reads a whole (small) file; false with errno set on failure.
bool read_small_file(const std::string& path, std::string& out) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::string data;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 || data.size() > (size_t{1} << 20)) {
      int saved = n < 0 ? errno : EFBIG;
      ::close(fd);
      errno = saved;
      return false;
    }
    if (n == 0) break;
    data.append(buf, static_cast<size_t>(n));
  }
  ::close(fd);
  out = std::move(data);
  return true;
}

std::runtime_error file_error(const std::string& path, std::string_view what, int err = 0) {
  return std::runtime_error(cat({"signing key ", path, ": ", what, err ? std::strerror(err) : ""}));
}

// mkdir -p with mode 0700 for every directory it creates.
bool make_dirs(const std::string& dir) {
  if (dir.empty()) return true;
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    errno = ENOTDIR;
    return S_ISDIR(st.st_mode);
  }
  size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0 && !make_dirs(dir.substr(0, slash))) return false;
  return ::mkdir(dir.c_str(), 0700) == 0 || errno == EEXIST;
}

// Writes `pem` to `path` only if `path` does not exist: temp file (mode 0600, O_EXCL) in the same
// directory, fsync, then link(2), which fails with EEXIST if another process got there first — so no reader
// ever sees a partly written key, and a crash leaves no torn file. Returns false (EEXIST) when it lost.
bool create_exclusive(const std::string& path, const std::string& pem) {
  std::string tmp = path + ".tmp-XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) throw file_error(path, "cannot create a file beside it: ", errno);
  bool ok = ::fchmod(fd, 0600) == 0;
  for (size_t off = 0; ok && off < pem.size();) {
    ssize_t n = ::write(fd, pem.data() + off, pem.size() - off);
    if (n < 0 && errno == EINTR) continue;
    ok = n > 0;
    if (ok) off += static_cast<size_t>(n);
  }
  ok = ok && ::fsync(fd) == 0;
  int saved = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(tmp.c_str());
    throw file_error(path, "cannot write: ", saved);
  }
  int rc = ::link(tmp.c_str(), path.c_str());
  saved = errno;
  ::unlink(tmp.c_str());
  if (rc != 0 && saved == EEXIST) return false;
  if (rc != 0) throw file_error(path, "cannot create: ", saved);
  size_t slash = path.find_last_of('/');
  std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    ::fsync(dfd);
    ::close(dfd);
  }
  return true;
}

}  // namespace

std::string SignedState::signing_message() const {
  return cat({"portico-config-v1\n", cluster_id, "\n", std::to_string(revision), "\n", content_hash, "\n"});
}

// ---- Signer ----

struct Signer::Key {
  PkeyPtr pkey;
};

Signer::~Signer() = default;

std::unique_ptr<Signer> Signer::load_or_generate(const std::string& path, bool generate, bool& generated) {
  generated = false;
  std::string pem;
  PkeyPtr key;
  if (!read_small_file(path, pem)) {
    if (errno != ENOENT || !generate) throw file_error(path, "", errno);
    size_t slash = path.find_last_of('/');
    if (slash != std::string::npos && slash > 0 && !make_dirs(path.substr(0, slash))) {
      throw file_error(path, "cannot create its directory: ", errno);
    }
    key.reset(EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519"));
    BioPtr bio(BIO_new(BIO_s_mem()), BIO_free);
    if (!key || !bio ||
        PEM_write_bio_PrivateKey(bio.get(), key.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
      throw file_error(path, openssl_error("cannot generate an Ed25519 key"));
    }
    generated = create_exclusive(path, bio_contents(bio.get()));
    // Otherwise another process created it meanwhile: use theirs.
    if (!generated && !read_small_file(path, pem)) throw file_error(path, "", errno);
  }
  if (!generated) {
    struct stat st;
    if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 077) != 0) {
      PORTICO_LOG(warn, "signing key %s is accessible by other users (mode %03o); it should be 0600",
                  path.c_str(), static_cast<unsigned>(st.st_mode & 0777));
    }
    BioPtr bio = memory_bio(pem);
    key.reset(bio ? PEM_read_bio_PrivateKey(bio.get(), nullptr, no_password, nullptr) : nullptr);
    if (!key) throw file_error(path, openssl_error("not a PEM private key"));
    if (EVP_PKEY_get_id(key.get()) != EVP_PKEY_ED25519) throw file_error(path, "not an Ed25519 key");
  }
  auto signer = std::unique_ptr<Signer>(new Signer());
  signer->key_id_ = compute_key_id(key.get());
  signer->key_ = std::make_unique<Key>(Key{std::move(key)});
  return signer;
}

void Signer::sign(SignedState& state) const {
  state.key_id = key_id_;
  std::string message = state.signing_message();
  MdCtxPtr ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  unsigned char sig[kSignatureBytes];
  size_t len = sizeof sig;
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_->pkey.get()) != 1 ||
      EVP_DigestSign(ctx.get(), sig, &len, reinterpret_cast<const unsigned char*>(message.data()),
                     message.size()) != 1) {
    throw std::runtime_error(openssl_error("Ed25519 signing failed"));
  }
  state.signature = base64_encode(sig, len);
}

std::string Signer::public_key_pem() const {
  BioPtr bio(BIO_new(BIO_s_mem()), BIO_free);
  if (!bio || PEM_write_bio_PUBKEY(bio.get(), key_->pkey.get()) != 1) {
    throw std::runtime_error(openssl_error("cannot write the public key"));
  }
  return bio_contents(bio.get());
}

// ---- Verifier ----

struct Verifier::Keys {
  std::map<std::string, PkeyPtr, std::less<>> by_id;
};

Verifier::Verifier() : keys_(std::make_unique<Keys>()) {}
Verifier::~Verifier() = default;
Verifier::Verifier(Verifier&&) noexcept = default;
Verifier& Verifier::operator=(Verifier&&) noexcept = default;

bool Verifier::add_public_key_pem(std::string_view pem, std::string& error) {
  if (!keys_) keys_ = std::make_unique<Keys>();  // moved-from
  BioPtr bio = memory_bio(pem);
  PkeyPtr key(bio ? PEM_read_bio_PUBKEY(bio.get(), nullptr, no_password, nullptr) : nullptr);
  if (!key) {
    error = cat({"not a PEM public key: ", openssl_error("no key found")});
    return false;
  }
  std::string id = compute_key_id(key.get());
  if (id.empty()) {
    error = "not an Ed25519 public key";
    return false;
  }
  keys_->by_id.insert_or_assign(std::move(id), std::move(key));
  return true;
}

bool Verifier::add_public_key_file(const std::string& path, std::string& error) {
  std::string all;
  if (!read_small_file(path, all)) {
    error = cat({path, ": ", std::strerror(errno)});
    return false;
  }
  static constexpr std::string_view kBegin = "-----BEGIN ";
  static constexpr std::string_view kEnd = "-----END ";
  Verifier staged;  // all or nothing
  size_t count = 0;
  for (size_t pos = all.find(kBegin); pos != std::string::npos; pos = all.find(kBegin, pos)) {
    size_t end = all.find(kEnd, pos);
    size_t eol = end == std::string::npos ? std::string::npos : all.find('\n', end);
    std::string_view block =
        std::string_view(all).substr(pos, eol == std::string::npos ? all.npos : eol + 1 - pos);
    std::string why;
    if (!staged.add_public_key_pem(block, why)) {
      error = cat({path, ": key ", std::to_string(count + 1), ": ", why});
      return false;
    }
    ++count;
    if (eol == std::string::npos) break;
    pos = eol;
  }
  if (count == 0) {
    error = cat({path, ": no PEM public key in it"});
    return false;
  }
  if (!keys_) keys_ = std::make_unique<Keys>();  // moved-from
  for (auto& [id, key] : staged.keys_->by_id) keys_->by_id.insert_or_assign(id, std::move(key));
  return true;
}

size_t Verifier::key_count() const {
  return keys_ ? keys_->by_id.size() : 0;
}

bool Verifier::verify(const SignedState& state, std::string& error) const {
  EVP_PKEY* key = nullptr;
  if (keys_) {
    auto it = keys_->by_id.find(state.key_id);
    if (it != keys_->by_id.end()) key = it->second.get();
  }
  if (key == nullptr) {
    error = cat({"unknown signing key ", state.key_id});
    return false;
  }
  std::string sig;
  if (!base64_decode(state.signature, sig) || sig.size() != kSignatureBytes) {
    error = "signature is not a base64 Ed25519 signature";
    return false;
  }
  std::string message = state.signing_message();
  MdCtxPtr ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key) == 1 &&
            EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(message.data()), message.size()) == 1;
  if (!ok) {
    ERR_clear_error();
    error = "signature does not verify";
    return false;
  }
  return true;
}

// ---- Snapshot format ----

std::string encode_snapshot(const SignedState& state, std::string_view document) {
  return cat({"portico-snapshot 1\ncluster_id: ", state.cluster_id,
              "\nrevision: ", std::to_string(state.revision), "\nsha256: ", state.content_hash,
              "\nkey_id: ", state.key_id, "\nsignature: ", state.signature, "\n\n", document});
}

namespace {

// True when `s` is not empty and holds only characters of `set`.
bool only(std::string_view s, std::string_view set) {
  return !s.empty() && s.find_first_not_of(set) == std::string_view::npos;
}
constexpr std::string_view kDigits = "0123456789";
constexpr std::string_view kLowerHex = "0123456789abcdef";
constexpr std::string_view kIdChars = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ._-";

}  // namespace

bool decode_snapshot(std::string_view text, SignedState& state, std::string_view& document,
                     std::string& error) {
  if (text.size() > kMaxSnapshotBytes) {
    error = cat({"snapshot is larger than ", std::to_string(kMaxSnapshotBytes >> 20), " MiB"});
    return false;
  }
  static constexpr std::string_view kFields[] = {"cluster_id", "revision", "sha256", "key_id", "signature"};
  static constexpr const char* kExpect[] = {
      "\"cluster_id: <id>\" (1-64 of [0-9A-Za-z._-])", "\"revision: <decimal>\"",
      "\"sha256: <64 lower-case hex digits>\"", "\"key_id: <16 lower-case hex digits>\"",
      "\"signature: <base64 Ed25519 signature>\""};
  SignedState s;
  size_t pos = 0;
  auto fail = [&](size_t line, const char* expected) {
    error = cat({"snapshot header line ", std::to_string(line), ": expected ", expected});
    return false;
  };
  auto next_line = [&](std::string_view& line) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string_view::npos) return false;
    line = text.substr(pos, nl - pos);
    pos = nl + 1;
    return true;
  };
  std::string_view line;
  if (!next_line(line) || line != "portico-snapshot 1") return fail(1, "\"portico-snapshot 1\"");
  for (size_t f = 0; f < std::size(kFields); ++f) {
    size_t n = f + 2;
    if (!next_line(line) || line.size() < kFields[f].size() + 2 ||
        line.substr(0, kFields[f].size()) != kFields[f] || line.substr(kFields[f].size(), 2) != ": ") {
      return fail(n, kExpect[f]);
    }
    std::string_view v = line.substr(kFields[f].size() + 2);
    bool ok = false;
    switch (f) {
      case 0:
        ok = v.size() <= 64 && only(v, kIdChars);
        s.cluster_id = v;
        break;
      case 1: {
        ok = only(v, kDigits) && (v.size() == 1 || v[0] != '0');
        auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), s.revision);
        ok = ok && ec == std::errc() && end == v.data() + v.size();
        break;
      }
      case 2:
        ok = v.size() == 64 && only(v, kLowerHex);
        s.content_hash = v;
        break;
      case 3:
        ok = v.size() == 16 && only(v, kLowerHex);
        s.key_id = v;
        break;
      case 4: {
        std::string raw;
        ok = base64_decode(v, raw) && raw.size() == kSignatureBytes;
        s.signature = v;
        break;
      }
    }
    if (!ok) return fail(n, kExpect[f]);
  }
  if (!next_line(line) || !line.empty()) return fail(std::size(kFields) + 2, "an empty line");
  state = std::move(s);
  document = text.substr(pos);
  return true;
}

bool open_snapshot(std::string_view text, const Verifier& verifier, SignedState& state, ResourceSet& set,
                   std::string& error) {
  SignedState s;
  std::string_view document;
  if (!decode_snapshot(text, s, document, error)) return false;
  ResourceSet parsed;
  if (!ResourceSet::from_document(document, parsed, error)) return false;
  if (parsed.content_hash() != s.content_hash) {
    error = "content does not match its hash";
    return false;
  }
  if (!verifier.verify(s, error)) return false;
  state = std::move(s);
  set = std::move(parsed);
  return true;
}

}  // namespace portico::sync
