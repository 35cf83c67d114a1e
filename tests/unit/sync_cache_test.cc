// SnapshotCache: atomic store, pruning, and load_latest skipping (and setting aside) what does not verify.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

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

TEST_F(SyncCache, StoringALowerRevisionDropsHigherOnes) {
  // A replaced etcd cluster starts its revisions again; what was just stored must be what loads next.
  SnapshotCache cache(dir_, 3);
  store(cache, 100);
  store(cache, 101);
  store(cache, 5);
  EXPECT_EQ(files(), (std::vector<std::string>{"snapshot-00000000000000000005.psnap"}));
  store(cache, 6);
  auto got = cache.load_latest(verifier_);
  ASSERT_TRUE(got.has_value());
  EXPECT_EQ(got->state.revision, 6);
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

}  // namespace
}  // namespace portico::sync
