#include "sync/s3_fallback.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <utility>
#include <vector>

#include "base/log.h"

namespace portico::sync {
namespace {

constexpr std::string_view kName = "snapshot-";
constexpr std::string_view kSuffix = ".psnap";
constexpr size_t kRevisionDigits = 20;

}  // namespace

std::string s3_snapshot_key(const std::string& prefix, int64_t revision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "snapshot-%020" PRId64 ".psnap", revision);
  std::string key = prefix;
  key += buf;
  return key;
}

int64_t parse_s3_snapshot_key(const std::string& prefix, const std::string& key) {
  if (!key.starts_with(prefix)) return -1;
  std::string_view name(key);
  name.remove_prefix(prefix.size());
  if (name.size() != kName.size() + kRevisionDigits + kSuffix.size() || !name.starts_with(kName) ||
      !name.ends_with(kSuffix)) {
    return -1;
  }
  int64_t r = 0;
  for (char c : name.substr(kName.size(), kRevisionDigits)) {
    if (c < '0' || c > '9' || r > (INT64_MAX - 9) / 10) return -1;
    r = r * 10 + (c - '0');
  }
  return r;
}

S3Fallback::S3Fallback(S3Options options, std::string prefix)
    : client_(std::move(options)), prefix_(std::move(prefix)) {}

std::optional<S3Snapshot> S3Fallback::load_latest(const Verifier& verifier, std::string& error) {
  std::vector<S3Object> objects;
  if (!client_.list(prefix_, objects, error)) {
    std::string message = "cannot list ";
    message += where();
    message += ": ";
    error.insert(0, message);
    return std::nullopt;
  }
  std::vector<std::pair<int64_t, std::string>> candidates;
  size_t bad = 0;
  for (S3Object& o : objects) {
    int64_t revision = parse_s3_snapshot_key(prefix_, o.key);
    if (revision < 0) continue;
    if (static_cast<uint64_t>(o.size) >
        kMaxSnapshotBytes) {  // not worth a download (nor read past the bound)
      PORTICO_LOG(warn, "sync: S3 object %s skipped: %lld bytes, more than %zu MiB", o.key.c_str(),
                  static_cast<long long>(o.size), kMaxSnapshotBytes >> 20);
      ++bad;
      continue;
    }
    candidates.emplace_back(revision, std::move(o.key));
  }
  std::sort(candidates.begin(), candidates.end(), std::greater<>());
  for (const auto& [revision, key] : candidates) {
    S3Snapshot out;
    std::string why;
    if (!client_.get(key, out.encoded, why, nullptr, kMaxSnapshotBytes)) {
      if (why == "canceled") {
        error = why;
        return std::nullopt;
      }
      // Listed but unreadable (deleted by retention meanwhile, or a transient error): try the next one.
      PORTICO_LOG(warn, "sync: S3 object %s skipped: cannot read it: %s", key.c_str(), why.c_str());
      ++bad;
      continue;
    }
    if (!open_snapshot(out.encoded, verifier, out.state, out.set, why)) {
      PORTICO_LOG(warn, "sync: S3 object %s skipped: %s", key.c_str(), why.c_str());
      ++bad;
      continue;
    }
    if (out.state.revision != revision) {
      PORTICO_LOG(warn, "sync: S3 object %s skipped: it holds revision %lld, not the one in its name",
                  key.c_str(), static_cast<long long>(out.state.revision));
      ++bad;
      continue;
    }
    out.key = key;
    return out;
  }
  if (candidates.empty() && bad == 0) {
    error = "no snapshot under ";
    error += where();
  } else {
    error = "none of the ";
    error += std::to_string(bad);
    error += " snapshots under ";
    error += where();
    error += " verifies";
  }
  return std::nullopt;
}

}  // namespace portico::sync
