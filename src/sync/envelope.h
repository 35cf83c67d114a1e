// Signed configuration states and the snapshot format that carries them (wire, local cache, S3).
//
// A control plane signs, with Ed25519, the statement "cluster C at revision R has content hash H"
// (SignedState::signing_message). A data plane trusts a configured set of public keys; it accepts a state
// only if the signature verifies under one of them AND the content it holds hashes to H. The same signed
// state travels with full snapshots and with deltas (the data plane recomputes the hash after applying a
// delta), so a data plane never serves, caches or exports content no control plane vouched for.
//
// Snapshot format (text; the header is ASCII lines, the document follows a blank line):
//   portico-snapshot 1
//   cluster_id: 3397744812459331135
//   revision: 42
//   sha256: <content hash, hex>
//   key_id: <first 16 hex digits of SHA-256 of the signer's raw public key>
//   signature: <base64 Ed25519 signature of signing_message()>
//   <blank line>
//   <ResourceSet::document()>
//
// Signer and Verifier are immutable after construction; any thread may use them concurrently.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sync/resource_set.h"

namespace portico::sync {

// The largest snapshot a data plane reads, from any source (a control plane, its cache, S3): a larger body
// is refused before it is buffered. A 100k-route configuration is 22-30 MB, and a data plane peaks at about
// 22 times the snapshot's size while it loads one (scan, validation, the built router: 500 MB at 100k
// routes), so the bound leaves room for a configuration four times that large, and no more
// (docs/sync-protocol.md, "Bounds").
inline constexpr size_t kMaxSnapshotBytes = size_t{128} << 20;
// The largest /changes answer a data plane reads. A delta is parsed into a DOM (about 20 bytes of memory
// per byte of text) where a snapshot is scanned, so a larger delta is not worth its memory: the data plane
// aborts it and fetches the snapshot instead. 32 MiB holds a change of every route of a 100k-route
// configuration.
inline constexpr size_t kMaxDeltaBytes = size_t{32} << 20;

struct SignedState {
  std::string cluster_id;  // etcd cluster id (decimal), so a state from another cluster is recognisable
  int64_t revision = 0;    // etcd revision of the content
  std::string content_hash;
  std::string key_id;
  std::string signature;  // base64

  // "portico-config-v1\n" cluster_id "\n" revision "\n" content_hash "\n"
  std::string signing_message() const;
};

class Signer {
 public:
  // Loads an Ed25519 private key (PEM, PKCS#8) from `path`; when the file does not exist and `generate` is
  // set, creates one there with mode 0600 (directory created 0700) and sets `generated`. Throws
  // std::runtime_error naming the file on failure.
  static std::unique_ptr<Signer> load_or_generate(const std::string& path, bool generate, bool& generated);
  ~Signer();

  // Fills key_id and signature of `state` from its other fields.
  void sign(SignedState& state) const;
  std::string public_key_pem() const;  // SubjectPublicKeyInfo PEM, what data planes are given
  const std::string& key_id() const { return key_id_; }

 private:
  Signer() = default;
  struct Key;
  std::unique_ptr<Key> key_;
  std::string key_id_;
};

class Verifier {
 public:
  Verifier();
  ~Verifier();
  Verifier(Verifier&&) noexcept;
  Verifier& operator=(Verifier&&) noexcept;

  // Adds a trusted Ed25519 public key (PEM). False with `error` when it is not one.
  bool add_public_key_pem(std::string_view pem, std::string& error);
  // Reads a file holding one or more public key PEM blocks.
  bool add_public_key_file(const std::string& path, std::string& error);
  size_t key_count() const;

  // True when `state.signature` is a valid signature of state.signing_message() by a trusted key
  // (state.key_id selects it; an unknown key_id fails).
  bool verify(const SignedState& state, std::string& error) const;

 private:
  struct Keys;
  std::unique_ptr<Keys> keys_;
};

std::string encode_snapshot(const SignedState& state, std::string_view document);

// Parses the header and splits off the document; checks the format only (no hash, no signature).
bool decode_snapshot(std::string_view text, SignedState& state, std::string_view& document,
                     std::string& error);

// decode_snapshot + ResourceSet::from_document + content hash equals state.content_hash + verifier.verify.
// The one function a data plane calls on anything it did not compute itself (network, cache, S3).
bool open_snapshot(std::string_view text, const Verifier& verifier, SignedState& state, ResourceSet& set,
                   std::string& error);

}  // namespace portico::sync
