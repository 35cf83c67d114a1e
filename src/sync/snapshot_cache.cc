#include "sync/snapshot_cache.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <stdexcept>
#include <utility>
#include <vector>

#include "base/log.h"

namespace portico::sync {
namespace {

constexpr std::string_view kPrefix = "snapshot-";
constexpr std::string_view kSuffix = ".psnap";
constexpr std::string_view kTempPrefix = ".tmp-snapshot-";
constexpr std::string_view kSupersededSuffix = ".superseded";
constexpr size_t kRevisionDigits = 20;
constexpr time_t kStaleTempSeconds = 3600;

std::string errno_text(const char* what, const std::string& path, int err) {
  std::string s = what;
  s += ' ';
  s += path;
  s += ": ";
  s += std::strerror(err);
  return s;
}

std::string file_name(int64_t revision) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "snapshot-%020" PRId64 ".psnap", revision);
  return buf;
}

// The revision in a cache file's name, or -1 when `name` is not one.
int64_t parse_name(std::string_view name) {
  if (name.size() != kPrefix.size() + kRevisionDigits + kSuffix.size() || !name.starts_with(kPrefix) ||
      !name.ends_with(kSuffix)) {
    return -1;
  }
  int64_t r = 0;
  for (char c : name.substr(kPrefix.size(), kRevisionDigits)) {
    if (c < '0' || c > '9' || r > (INT64_MAX - 9) / 10) return -1;
    r = r * 10 + (c - '0');
  }
  return r;
}

// mkdir -p; directories it creates get mode 0700.
bool make_dirs(const std::string& dir, std::string& error) {
  struct stat st;
  if (::stat(dir.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return true;
    error = errno_text("cannot use", dir, ENOTDIR);
    return false;
  }
  size_t slash = dir.find_last_of('/');
  if (slash != std::string::npos && slash > 0 && !make_dirs(dir.substr(0, slash), error)) return false;
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) {
    error = errno_text("cannot create", dir, errno);
    return false;
  }
  return true;
}

bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::write(fd, data.data(), data.size());
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

bool fsync_dir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return false;
  bool ok = ::fsync(fd) == 0;
  ::close(fd);
  return ok;
}

enum class ReadResult { ok, failed, skipped };

// Reads the cache file `path` whole. Anything but a regular file is skipped (a FIFO would block open() and
// read() forever; a symlink could point anywhere): it is opened with O_NONBLOCK | O_NOFOLLOW, checked with
// fstat, and never renamed. At most `limit` bytes are read, whatever the size fstat reported (a file that
// grows meanwhile). `error` says why on failed and skipped.
ReadResult read_file(const std::string& path, size_t limit, std::string& out, std::string& error) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOFOLLOW);
  if (fd < 0) {
    int err = errno;
    error = std::strerror(err);
    if (err == ELOOP) error = "a symbolic link, not a regular file";
    return err == ELOOP || err == ENXIO ? ReadResult::skipped : ReadResult::failed;
  }
  struct stat st;
  if (::fstat(fd, &st) != 0) {
    error = std::strerror(errno);
    ::close(fd);
    return ReadResult::failed;
  }
  if (!S_ISREG(st.st_mode)) {
    error = "not a regular file";
    ::close(fd);
    return ReadResult::skipped;
  }
  if (static_cast<uint64_t>(st.st_size) > limit) {
    error = "larger than ";
    error += std::to_string(limit >> 20);
    error += " MiB";
    ::close(fd);
    return ReadResult::failed;
  }
  out.clear();
  out.resize(static_cast<size_t>(st.st_size));
  size_t off = 0;
  while (off < out.size()) {
    ssize_t n = ::read(fd, out.data() + off, out.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  char extra;
  ssize_t more = off == out.size() ? ::read(fd, &extra, 1) : 0;
  ::close(fd);
  if (off != out.size() || more > 0) {
    error = "changed while being read";
    return ReadResult::failed;
  }
  return ReadResult::ok;
}

struct Listing {
  std::vector<std::pair<int64_t, std::string>> snapshots;  // (revision, name), newest first
  std::vector<std::string> temps;                          // leftover temp files
  std::vector<std::string> superseded;                     // set aside by a move to another cluster
};

// `regular_only`: for pruning, which must leave alone whatever is not a regular file (loading lists
// everything and says what it skips).
bool list_dir(const std::string& dir, Listing& out, bool regular_only) {
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) return false;
  while (struct dirent* e = ::readdir(d)) {
    std::string_view name = e->d_name;
    // Only regular files are ours to keep, set aside or prune: a FIFO, directory or symlink under one of our
    // names is left alone (and must not count toward `keep`, evicting a genuine older state).
    if (regular_only && e->d_type != DT_REG) {
      struct stat st;
      if (e->d_type != DT_UNKNOWN || ::fstatat(::dirfd(d), e->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0 ||
          !S_ISREG(st.st_mode)) {
        continue;
      }
    }
    int64_t revision = parse_name(name);
    if (revision >= 0) {
      out.snapshots.emplace_back(revision, std::string(name));
    } else if (name.starts_with(kTempPrefix)) {
      out.temps.emplace_back(name);
    } else if (name.ends_with(kSupersededSuffix) &&
               parse_name(name.substr(0, name.size() - kSupersededSuffix.size())) >= 0) {
      out.superseded.emplace_back(name);
    }
  }
  ::closedir(d);
  std::sort(out.snapshots.begin(), out.snapshots.end(), std::greater<>());
  return true;
}

}  // namespace

SnapshotCache::SnapshotCache(std::string dir, size_t keep)
    : dir_(std::move(dir)), keep_(std::max<size_t>(keep, 1)) {}

// Write protocol: temp file (mkstemp: O_EXCL, 0600) in the cache directory, write, fsync, rename over the
// final name, fsync the directory. Then prune: the `keep_` newest older than `revision` stay. None newer than
// `revision` may stay under its name: a higher revision than the one just stored comes from the etcd cluster
// the data plane has just left (it never moves back within one cluster) and would shadow the state just
// applied at the next start. Those are not deleted but renamed to *.superseded: the last good state of that
// cluster survives for an operator (the `keep_` most recently written of them are kept).
bool SnapshotCache::store(std::string_view encoded_snapshot, int64_t revision, std::string& error) {
  if (revision < 0) {
    error = "negative revision";
    return false;
  }
  if (!make_dirs(dir_, error)) return false;
  std::string tmp = in_dir(kTempPrefix);
  tmp += "XXXXXX";
  int fd = ::mkstemp(tmp.data());
  if (fd < 0) {
    error = errno_text("cannot create a file in", dir_, errno);
    return false;
  }
  bool ok = write_all(fd, encoded_snapshot) && ::fsync(fd) == 0;
  int saved = errno;
  if (::close(fd) != 0 && ok) {
    ok = false;
    saved = errno;
  }
  if (!ok) {
    ::unlink(tmp.c_str());
    error = errno_text("cannot write", tmp, saved);
    return false;
  }
  std::string name = file_name(revision);
  std::string path = in_dir(name);
  if (::rename(tmp.c_str(), path.c_str()) != 0) {
    saved = errno;
    ::unlink(tmp.c_str());
    error = errno_text("cannot rename a temp file to", path, saved);
    return false;
  }
  if (!fsync_dir(dir_)) {
    error = errno_text("cannot fsync", dir_, errno);
    return false;
  }

  Listing listing;
  if (!list_dir(dir_, listing, true)) return true;  // stored; pruning is best effort
  size_t kept = 0;
  std::vector<std::string> superseded = std::move(listing.superseded);
  for (const auto& [r, n] : listing.snapshots) {
    if (n == name || (r < revision && kept < keep_)) {
      ++kept;
      continue;
    }
    std::string old = in_dir(n);
    if (r > revision) {
      std::string aside = old;
      aside += kSupersededSuffix;
      if (::rename(old.c_str(), aside.c_str()) == 0) {
        PORTICO_LOG(info, "sync cache: %s is newer than revision %lld just stored: kept aside as %s",
                    old.c_str(), static_cast<long long>(revision), aside.c_str());
        superseded.push_back(n + std::string(kSupersededSuffix));
        continue;
      }
    }
    if (::unlink(old.c_str()) != 0) {
      PORTICO_LOG(warn, "sync cache: cannot remove %s: %s", old.c_str(), std::strerror(errno));
    }
  }
  if (superseded.size() > keep_) {
    std::vector<std::pair<time_t, std::string>> by_age;  // most recently written first
    for (std::string& n : superseded) {
      struct stat st;
      if (::stat(in_dir(n).c_str(), &st) == 0) by_age.emplace_back(st.st_mtime, std::move(n));
    }
    std::sort(by_age.begin(), by_age.end(), std::greater<>());
    for (size_t i = keep_; i < by_age.size(); ++i) ::unlink(in_dir(by_age[i].second).c_str());
  }
  time_t now = std::time(nullptr);
  for (const std::string& t : listing.temps) {  // left by a crash between mkstemp and rename
    const std::string p = in_dir(t);
    struct stat st;
    if (::stat(p.c_str(), &st) == 0 && now - st.st_mtime > kStaleTempSeconds) ::unlink(p.c_str());
  }
  return true;
}

std::optional<CachedSnapshot> SnapshotCache::load_latest(const Verifier& verifier) {
  try {
    Listing listing;
    if (!list_dir(dir_, listing, false)) {
      if (errno != ENOENT) {
        PORTICO_LOG(warn, "sync cache: cannot list %s: %s", dir_.c_str(), std::strerror(errno));
      }
      return std::nullopt;
    }
    for (const auto& [revision, name] : listing.snapshots) {
      std::string path = in_dir(name);
      std::string text, error;
      CachedSnapshot snap;
      ReadResult read = read_file(path, kMaxSnapshotBytes, text, error);
      if (read == ReadResult::skipped) {
        // Not ours (we only ever write regular files): left alone, for whoever put it there.
        PORTICO_LOG(warn, "sync cache: %s skipped: %s", path.c_str(), error.c_str());
        continue;
      }
      if (read == ReadResult::ok && open_snapshot(text, verifier, snap.state, snap.set, error)) {
        if (snap.state.revision == revision) {
          snap.path = std::move(path);
          return snap;
        }
        error = "revision ";
        error += std::to_string(snap.state.revision);
        error += " does not match the file name";
      }
      std::string bad = path;
      bad += ".bad";
      if (::rename(path.c_str(), bad.c_str()) == 0) {
        PORTICO_LOG(warn, "sync cache: %s: %s; renamed to %s", path.c_str(), error.c_str(), bad.c_str());
      } else {
        PORTICO_LOG(warn, "sync cache: %s: %s; cannot rename it: %s", path.c_str(), error.c_str(),
                    std::strerror(errno));
      }
    }
  } catch (const std::exception& e) {  // allocation failure on a huge file
    PORTICO_LOG(warn, "sync cache: %s: %s", dir_.c_str(), e.what());
  }
  return std::nullopt;
}

CacheWriter::~CacheWriter() {
  stop();
}

void CacheWriter::submit(const std::unique_lock<std::mutex>& held, SignedState state,
                         std::string encoded_snapshot) {
  enqueue(held, Job{std::move(state), std::move(encoded_snapshot), nullptr});
}

void CacheWriter::submit(const std::unique_lock<std::mutex>& held, SignedState state,
                         std::function<std::string()> document) {
  enqueue(held, Job{std::move(state), std::string(), std::move(document)});
}

void CacheWriter::discard(const std::unique_lock<std::mutex>& held) {
  if (held.mutex() != &mu_ || !held.owns_lock())
    throw std::logic_error("CacheWriter::discard without lock()");
  job_.reset();
  cv_.notify_all();
}

void CacheWriter::enqueue(const std::unique_lock<std::mutex>& held, Job job) {
  if (held.mutex() != &mu_ || !held.owns_lock()) throw std::logic_error("CacheWriter::submit without lock()");
  if (stopping_) return;
  job_ = std::move(job);  // an older state not yet started is dropped: only the newest is worth writing
  if (!thread_.joinable()) thread_ = std::thread([this] { run(); });
  cv_.notify_all();
}

void CacheWriter::run() {
  std::unique_lock lock(mu_);
  auto next_write = std::chrono::steady_clock::now();
  while (true) {
    cv_.wait(lock, [this] { return job_.has_value() || stopping_; });
    if (!job_) return;  // stopping, and everything submitted is written
    // Until the interval has passed, newer states replace the pending one.
    cv_.wait_until(lock, next_write, [this] { return stopping_; });
    if (!job_) continue;
    Job job = std::move(*job_);
    job_.reset();
    busy_ = true;
    std::string error;
    bool ok = false;
    try {
      // The document is read under the lock (its owner changes it in place under the same lock); the rest is
      // done without it, so the owner waits at most for one serialization.
      std::string document;
      if (job.document) document = job.document();
      lock.unlock();
      std::string encoded = job.document ? encode_snapshot(job.state, document) : std::move(job.encoded);
      std::string().swap(document);  // not two copies of tens of MB during the write
      ok = cache_.store(encoded, job.state.revision, error);
    } catch (const std::exception& e) {  // allocation failure at a huge size
      error = e.what();
    }
    if (!ok) {
      PORTICO_LOG(warn, "sync: cannot cache revision %lld: %s", static_cast<long long>(job.state.revision),
                  error.c_str());
    }
    if (!lock.owns_lock()) lock.lock();
    busy_ = false;
    next_write =
        std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                               std::chrono::duration<double>(min_interval_));
    cv_.notify_all();
  }
}

bool CacheWriter::wait_idle(double seconds) {
  std::unique_lock lock(mu_);
  return cv_.wait_for(lock, std::chrono::duration<double>(seconds),
                      [this] { return !job_.has_value() && !busy_; });
}

void CacheWriter::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
    cv_.notify_all();
  }
  std::lock_guard lock(join_mu_);
  if (thread_.joinable() && thread_.get_id() != std::this_thread::get_id()) thread_.join();
}

}  // namespace portico::sync
