// SnapshotCache: atomic store, pruning, and load_latest skipping (and setting aside) what does not verify.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include "sync/snapshot_cache.h"

namespace portico::sync {
namespace {

namespace fs = std::filesystem;

class SyncCache : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/portico-sync-cache-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    dir_ = root_ + "/cache";
    bool generated = false;
    signer_ = Signer::load_or_generate(root_ + "/signing.key", true, generated);
    std::string error;
    ASSERT_TRUE(verifier_.add_public_key_pem(signer_->public_key_pem(), error)) << error;
  }
  void TearDown() override { fs::remove_all(root_); }

  ResourceSet set_at(int64_t revision) {
    ResourceSet s;
    s.put("routes", "1", R"({"id":"1","uri":"/r)" + std::to_string(revision) + "\"}");
    return s;
  }
  std::string snapshot(int64_t revision) {
    ResourceSet s = set_at(revision);
    SignedState st;
    st.cluster_id = "1";
    st.revision = revision;
    st.content_hash = s.content_hash();
    signer_->sign(st);
    return encode_snapshot(st, s.document());
  }
  std::string path(int64_t revision) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "/snapshot-%020lld.psnap", static_cast<long long>(revision));
    return dir_ + buf;
  }
  void store(SnapshotCache& cache, int64_t revision) {
    std::string error;
    ASSERT_TRUE(cache.store(snapshot(revision), revision, error)) << error;
  }
  std::vector<std::string> files() {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }
  static std::string read(const std::string& p) {
    std::ifstream in(p, std::ios::binary);
    return std::string((std::istreambuf_iterator<char>(in)), {});
  }
  static void write(const std::string& p, const std::string& text) {
    std::ofstream(p, std::ios::binary) << text;
  }

  std::string root_, dir_;
  std::unique_ptr<Signer> signer_;
  Verifier verifier_;
};

TEST_F(SyncCache, StoreAndLoadNewest) {
  SnapshotCache cache(dir_);
  EXPECT_EQ(cache.dir(), dir_);
  store(cache, 5);
  store(cache, 7);
  store(cache, 7);  // the same revision again replaces the file
  auto got = cache.load_latest(verifier_);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->state.revision, 7);
  EXPECT_EQ(got->path, path(7));
  EXPECT_EQ(got->set, set_at(7));
  EXPECT_EQ(read(path(7)), snapshot(7));
  struct stat st;
  ASSERT_EQ(::stat(dir_.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0700u);
  ASSERT_EQ(::stat(path(7).c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0600u);
  EXPECT_EQ(files(),
            (std::vector<std::string>{"snapshot-00000000000000000005.psnap",
                                      "snapshot-00000000000000000007.psnap"}));  // no temp files left
}

TEST_F(SyncCache, KeepsTheNewest) {
  SnapshotCache cache(dir_, 2);
  for (int64_t r = 1; r <= 5; ++r) store(cache, r);
  EXPECT_EQ(files(), (std::vector<std::string>{"snapshot-00000000000000000004.psnap",
                                               "snapshot-00000000000000000005.psnap"}));
  SnapshotCache one(dir_, 0);  // keep 0 means 1: the file just written always stays
  store(one, 6);
  EXPECT_EQ(files(), (std::vector<std::string>{"snapshot-00000000000000000006.psnap"}));
}

TEST_F(SyncCache, StoringALowerRevisionSetsHigherOnesAside) {
  // A replaced etcd cluster starts its revisions again; what was just stored must be what loads next, and
  // the last good state of the cluster left is kept (renamed, never loaded), not deleted.
  SnapshotCache cache(dir_, 3);
  store(cache, 100);
  store(cache, 101);
  store(cache, 5);
  EXPECT_EQ(files(), (std::vector<std::string>{"snapshot-00000000000000000005.psnap",
                                               "snapshot-00000000000000000100.psnap.superseded",
                                               "snapshot-00000000000000000101.psnap.superseded"}));
  EXPECT_EQ(read(path(101) + ".superseded"), snapshot(101));
  store(cache, 6);
  auto got = cache.load_latest(verifier_);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->state.revision, 6);
  // Set-aside files are bounded too: the `keep` most recently set aside stay.
  SnapshotCache one(dir_, 1);
  store(one, 2);
  size_t superseded = 0;
  for (const std::string& f : files()) superseded += f.ends_with(".superseded");
  EXPECT_EQ(superseded, 1u);
}

TEST_F(SyncCache, NonRegularFilesAreSkippedPromptly) {
  // A FIFO named like the newest snapshot would block open() (and a read) forever; a symlink could point
  // anywhere. Both are skipped without being renamed, and the valid older file loads at once.
  SnapshotCache cache(dir_);
  store(cache, 3);
  ASSERT_EQ(::mkfifo(path(9).c_str(), 0600), 0);
  write(root_ + "/elsewhere", snapshot(3));
  fs::create_symlink(root_ + "/elsewhere", path(8));
  fs::create_directory(path(7));
  auto start = std::chrono::steady_clock::now();
  std::optional<CachedSnapshot> got;
  std::thread loader([&] { got = cache.load_latest(verifier_); });
  // Unblocks a loader stuck in open() on the FIFO, so that the test fails instead of hanging.
  std::atomic<bool> done{false};
  std::thread rescue([&] {
    for (int i = 0; i < 100 && !done; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(50));
    if (!done) {
      int fd = ::open(path(9).c_str(), O_WRONLY | O_NONBLOCK);
      if (fd >= 0) ::close(fd);
    }
  });
  loader.join();
  done = true;
  rescue.join();
  double took = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  EXPECT_LT(took, 2.0);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->state.revision, 3);
  EXPECT_TRUE(fs::is_fifo(path(9)));
  EXPECT_TRUE(fs::is_symlink(path(8)));
  EXPECT_TRUE(fs::is_directory(path(7)));
  EXPECT_FALSE(fs::exists(path(9) + ".bad"));
}

TEST_F(SyncCache, PruningLeavesNonRegularEntriesAloneAndKeepsGenuineStates) {
  // Entries that are not regular files were pruned like snapshots: they counted toward `keep` (evicting a
  // genuine older state) and were unlinked or set aside.
  SnapshotCache cache(dir_, 2);  // the state stored and one older
  store(cache, 1);
  ASSERT_EQ(::mkfifo(path(2).c_str(), 0600), 0);  // between: would take the one older place
  fs::create_directory(path(9));                  // newer: would be set aside
  store(cache, 3);
  EXPECT_TRUE(fs::is_fifo(path(2)));
  EXPECT_TRUE(fs::is_directory(path(9)));
  EXPECT_FALSE(fs::exists(path(9) + ".superseded"));
  EXPECT_TRUE(fs::is_regular_file(path(1)));  // the genuine older state is the one kept
  EXPECT_TRUE(fs::is_regular_file(path(3)));
}

TEST_F(SyncCache, CorruptNewestIsSetAsideAndOlderLoaded) {
  SnapshotCache cache(dir_);
  store(cache, 1);
  store(cache, 2);
  std::string text = read(path(2));
  text[text.find("/r2")] ^= 0x01;  // one flipped bit in the document (a route's uri)
  write(path(2), text);
  auto got = cache.load_latest(verifier_);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->state.revision, 1);
  EXPECT_FALSE(fs::exists(path(2)));
  EXPECT_TRUE(fs::exists(path(2) + ".bad"));
  EXPECT_EQ(read(path(2) + ".bad"), text);  // kept as it was, for inspection
  SignedState st;
  ResourceSet set;
  std::string error;
  EXPECT_FALSE(open_snapshot(text, verifier_, st, set, error));
  EXPECT_EQ(error, "content does not match its hash");
  got = cache.load_latest(verifier_);  // never tried again
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->state.revision, 1);
}

TEST_F(SyncCache, TamperedContentWithRecomputedHashIsSetAside) {
  SnapshotCache cache(dir_);
  store(cache, 1);
  store(cache, 2);
  SignedState st;
  std::string_view doc;
  std::string error;
  std::string text = read(path(2));
  ASSERT_TRUE(decode_snapshot(text, st, doc, error)) << error;
  ResourceSet evil = set_at(2);
  evil.put("routes", "666", R"({"id":"666","uri":"/evil"})");
  st.content_hash = evil.content_hash();  // consistent hash, but the signature is the old one
  write(path(2), encode_snapshot(st, evil.document()));
  auto got = cache.load_latest(verifier_);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->state.revision, 1);
  EXPECT_TRUE(fs::exists(path(2) + ".bad"));
}

TEST_F(SyncCache, MisnamedAndUntrustedFiles) {
  SnapshotCache cache(dir_);
  store(cache, 3);
  fs::rename(path(3), path(9));  // a valid snapshot under another revision's name
  write(dir_ + "/notes.txt", "ignored");
  write(dir_ + "/snapshot-1.psnap", "ignored: not a cache file name");
  auto got = cache.load_latest(verifier_);
  EXPECT_FALSE(got.has_value());
  EXPECT_TRUE(fs::exists(path(9) + ".bad"));
  EXPECT_TRUE(fs::exists(dir_ + "/snapshot-1.psnap"));

  store(cache, 4);
  EXPECT_FALSE(cache.load_latest(Verifier()).has_value());  // no trusted key
  EXPECT_TRUE(fs::exists(path(4) + ".bad"));
}

TEST_F(SyncCache, EmptyOrMissingDirectory) {
  SnapshotCache missing(dir_);
  EXPECT_FALSE(missing.load_latest(verifier_).has_value());
  fs::create_directory(dir_);
  SnapshotCache empty(dir_);
  EXPECT_FALSE(empty.load_latest(verifier_).has_value());
}

TEST_F(SyncCache, UnwritableDirectory) {
  write(root_ + "/file", "x");
  SnapshotCache cache(root_ + "/file/cache");  // under a regular file: fails even for root
  std::string error;
  EXPECT_FALSE(cache.store(snapshot(1), 1, error));
  EXPECT_NE(error.find(root_ + "/file"), std::string::npos) << error;
  EXPECT_FALSE(cache.load_latest(verifier_).has_value());
  SnapshotCache file_as_dir(root_ + "/file");
  EXPECT_FALSE(file_as_dir.store(snapshot(1), 1, error));
  EXPECT_NE(error.find("Not a directory"), std::string::npos) << error;
  SnapshotCache ok(dir_);
  EXPECT_FALSE(ok.store(snapshot(1), -1, error));
}

SignedState signed_state(Signer& signer, int64_t revision, const ResourceSet& set) {
  SignedState st;
  st.cluster_id = "1";
  st.revision = revision;
  st.content_hash = set.content_hash();
  signer.sign(st);
  return st;
}

TEST_F(SyncCache, WriterStoresOnlyTheNewestPendingState) {
  SnapshotCache cache(dir_);
  CacheWriter writer(cache);
  std::atomic<int> documents_read{0};
  {
    // While the lock is held the writer cannot start: every state but the last is replaced unwritten.
    std::unique_lock lock = writer.lock();
    for (int64_t r = 1; r <= 3; ++r) {
      ResourceSet set = set_at(r);
      writer.submit(lock, signed_state(*signer_, r, set), [&documents_read, set] {
        ++documents_read;
        return set.document();
      });
    }
    writer.submit(lock, signed_state(*signer_, 4, set_at(4)), snapshot(4));  // signed bytes, as received
  }
  ASSERT_TRUE(writer.wait_idle(10));
  EXPECT_EQ(documents_read.load(), 0);
  EXPECT_EQ(files(), (std::vector<std::string>{"snapshot-00000000000000000004.psnap"}));
  EXPECT_EQ(read(path(4)), snapshot(4));  // stored as given

  {
    std::unique_lock lock = writer.lock();
    ResourceSet set = set_at(5);
    writer.submit(lock, signed_state(*signer_, 5, set), [set] { return set.document(); });
  }
  ASSERT_TRUE(writer.wait_idle(10));
  auto got = cache.load_latest(verifier_);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->state.revision, 5);
  EXPECT_EQ(got->set, set_at(5));
  EXPECT_EQ(read(path(5)), snapshot(5));  // encoded with its state: the same bytes as a snapshot
}

TEST_F(SyncCache, WriterWritesAtMostOncePerInterval) {
  // At a high change rate every state but the newest within an interval is skipped; the newest is written
  // when the interval has passed.
  SnapshotCache cache(dir_, 100);
  CacheWriter writer(cache, 0.5);
  std::atomic<int> documents_read{0};
  auto submit = [&](int64_t r) {
    std::unique_lock lock = writer.lock();
    ResourceSet set = set_at(r);
    writer.submit(lock, signed_state(*signer_, r, set), [&documents_read, set] {
      ++documents_read;
      return set.document();
    });
  };
  submit(1);
  ASSERT_TRUE(writer.wait_idle(10));  // the first is written at once
  for (int64_t r = 2; r <= 6; ++r) submit(r);
  ASSERT_TRUE(writer.wait_idle(10));
  EXPECT_EQ(documents_read.load(), 2);  // 1, then only 6
  EXPECT_EQ(files(), (std::vector<std::string>{"snapshot-00000000000000000001.psnap",
                                               "snapshot-00000000000000000006.psnap"}));
}

TEST_F(SyncCache, WriterReadsTheDocumentUnderItsLock) {
  // The owner changes its set in place under lock() and submits the state it reached before releasing it:
  // the writer never sees a set between two states, so every file it writes verifies.
  SnapshotCache cache(dir_, 100);
  CacheWriter writer(cache);
  ResourceSet held = set_at(0);
  std::atomic<bool> changing{false};
  std::atomic<int> torn{0};
  for (int64_t r = 1; r <= 200; ++r) {
    std::unique_lock lock = writer.lock();
    changing = true;
    held.put("routes", "1", R"({"id":"1","uri":"/r)" + std::to_string(r) + "\"}");
    std::this_thread::yield();
    changing = false;
    writer.submit(lock, signed_state(*signer_, r, held), [&] {
      if (changing) ++torn;
      return held.document();
    });
  }
  ASSERT_TRUE(writer.wait_idle(10));
  EXPECT_EQ(torn.load(), 0);
  for (const auto& name : files()) {
    std::string text = read(dir_ + "/" + name), error;
    SignedState st;
    ResourceSet set;
    EXPECT_TRUE(open_snapshot(text, verifier_, st, set, error)) << name << ": " << error;
  }
  auto got = cache.load_latest(verifier_);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->state.revision, 200);  // the newest is always written
  EXPECT_EQ(got->set, set_at(200));
}

TEST_F(SyncCache, WriterStopWritesThePendingStateAndThenNothing) {
  SnapshotCache cache(dir_);
  auto writer = std::make_unique<CacheWriter>(cache);
  {
    std::unique_lock lock = writer->lock();
    ResourceSet set = set_at(8);
    writer->submit(lock, signed_state(*signer_, 8, set), [set] { return set.document(); });
  }
  writer->stop();  // no wait: stop() itself writes what is pending
  EXPECT_EQ(read(path(8)), snapshot(8));
  {
    std::unique_lock lock = writer->lock();
    writer->submit(lock, signed_state(*signer_, 9, set_at(9)), snapshot(9));  // after stop(): dropped
  }
  writer->stop();  // idempotent
  writer.reset();
  EXPECT_FALSE(fs::exists(path(9)));
}

TEST_F(SyncCache, WriterSurvivesAFailedWrite) {
  write(root_ + "/file", "x");
  SnapshotCache bad(root_ + "/file/cache");  // cannot be created: logged, and the writer goes on
  CacheWriter writer(bad);
  {
    std::unique_lock lock = writer.lock();
    writer.submit(lock, signed_state(*signer_, 1, set_at(1)), snapshot(1));
  }
  ASSERT_TRUE(writer.wait_idle(10));
  {
    std::unique_lock lock = writer.lock();
    writer.submit(lock, signed_state(*signer_, 2, set_at(2)), snapshot(2));
  }
  ASSERT_TRUE(writer.wait_idle(10));
  EXPECT_FALSE(fs::exists(root_ + "/file/cache"));
}

}  // namespace
}  // namespace portico::sync
