// S3Client, S3Fallback and the SyncClient's S3 fallback against a real S3-compatible server: s3rver from the
// repo's node_modules (scripts/install-deps.sh), wrapped by tests/tools/s3rver-sigv4.js, which checks every
// request's SigV4 signature (stock s3rver 3.x does not). The server runs on a free loopback port with a temp
// directory, once for the whole suite. A missing node or s3rver fails the suite (it is not skipped).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <thread>

#include "sync/s3_fallback.h"
#include "sync/sync_client.h"

extern char** environ;

namespace portico::sync {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

const std::string kRoot = fs::path(PORTICO_TEST_DATA).parent_path().parent_path();
constexpr const char* kBucket = "portico-test";

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

int free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  ::close(fd);
  return ntohs(a.sin_port);
}

class SyncS3 : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    char tmpl[] = "/tmp/portico-sync-s3-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    const std::string s3rver = kRoot + "/node_modules/.bin/s3rver";
    ASSERT_TRUE(fs::exists(s3rver)) << s3rver
                                    << " is missing: run scripts/install-deps.sh (npm ci installs it)";
    std::ofstream(root_ + "/creds") << "test-access-key\ntest-secret-key-0123\n";
    port_ = free_port();
    const std::string log = root_ + "/s3rver.log";
    std::vector<std::string> args = {"node",
                                     kRoot + "/tests/tools/s3rver-sigv4.js",
                                     "--port",
                                     std::to_string(port_),
                                     "--directory",
                                     root_ + "/data",
                                     "--bucket",
                                     kBucket,
                                     "--credentials-file",
                                     root_ + "/creds"};
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_adddup2(&actions, 1, 2);
    int rc = posix_spawnp(&pid_, "node", &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ASSERT_EQ(rc, 0) << "cannot run node: " << std::strerror(rc);
    Clock::time_point deadline = Clock::now() + std::chrono::seconds(20);
    while (read_file(log).find("listening on") == std::string::npos) {
      int status = 0;
      ASSERT_EQ(::waitpid(pid_, &status, WNOHANG), 0) << "s3rver exited: " << read_file(log);
      ASSERT_LT(Clock::now(), deadline) << "s3rver did not start: " << read_file(log);
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
  }
  static void TearDownTestSuite() {
    if (pid_ > 0) {
      ::kill(pid_, SIGTERM);
      ::waitpid(pid_, nullptr, 0);
      pid_ = 0;
    }
    fs::remove_all(root_);
  }

  void SetUp() override {
    ASSERT_GT(pid_, 0);
    bool generated = false;
    signer_ = Signer::load_or_generate(root_ + "/signing.key", true, generated);
    std::string error;
    ASSERT_TRUE(verifier_.add_public_key_pem(signer_->public_key_pem(), error)) << error;
    // Every test has its own prefix, so tests never see each other's objects.
    prefix_ = std::string("t/") + ::testing::UnitTest::GetInstance()->current_test_info()->name() + "/";
  }

  static S3Options options(const std::string& secret = "test-secret-key-0123") {
    S3Options o;
    o.endpoint = "http://127.0.0.1:" + std::to_string(port_);
    o.bucket = kBucket;
    o.access_key = "test-access-key";
    o.secret_key = secret;
    o.timeout = 10;
    return o;
  }
  std::string snapshot(int64_t revision, const std::string& cluster = "7") {
    ResourceSet s;
    s.put("routes", "1", R"({"id":"1","uri":"/r)" + std::to_string(revision) + "\"}");
    SignedState st;
    st.cluster_id = cluster;
    st.revision = revision;
    st.content_hash = s.content_hash();
    signer_->sign(st);
    return encode_snapshot(st, s.document());
  }
  void put(S3Client& c, const std::string& key, const std::string& body) {
    std::string error;
    ASSERT_TRUE(c.put(key, body, error)) << key << ": " << error;
  }
  std::vector<std::string> keys(S3Client& c) {
    std::vector<S3Object> objects;
    std::string error;
    EXPECT_TRUE(c.list(prefix_, objects, error)) << error;
    std::vector<std::string> out;
    for (const S3Object& o : objects) out.push_back(o.key);
    return out;
  }

  static inline std::string root_;
  static inline int port_ = 0;
  static inline pid_t pid_ = 0;
  std::unique_ptr<Signer> signer_;
  Verifier verifier_;
  std::string prefix_;
};

TEST_F(SyncS3, PutGetListDelete) {
  S3Client c(options());
  put(c, prefix_ + "a", "alpha");
  put(c, prefix_ + "dir/b c+d=e&f.txt", std::string(300000, 'x'));  // needs encoding; larger than one read
  std::string body, error;
  ASSERT_TRUE(c.get(prefix_ + "a", body, error)) << error;
  EXPECT_EQ(body, "alpha");
  ASSERT_TRUE(c.get(prefix_ + "dir/b c+d=e&f.txt", body, error)) << error;
  EXPECT_EQ(body.size(), 300000u);
  EXPECT_EQ(keys(c), (std::vector<std::string>{prefix_ + "a", prefix_ + "dir/b c+d=e&f.txt"}));

  long status = 0;
  EXPECT_FALSE(c.get(prefix_ + "missing", body, error, &status));
  EXPECT_EQ(status, 404);
  EXPECT_NE(error.find("NoSuchKey"), std::string::npos) << error;

  ASSERT_TRUE(c.remove(prefix_ + "a", error)) << error;
  ASSERT_TRUE(c.remove(prefix_ + "a", error)) << error;  // already gone: still fine
  EXPECT_EQ(keys(c), (std::vector<std::string>{prefix_ + "dir/b c+d=e&f.txt"}));

  std::string head;
  ASSERT_TRUE(c.get_head(prefix_ + "dir/b c+d=e&f.txt", 100, head, error)) << error;
  EXPECT_EQ(head, std::string(100, 'x'));
}

TEST_F(SyncS3, ListFollowsContinuationTokens) {
  S3Client c(options());
  std::vector<std::string> want;
  for (int i = 0; i < 7; ++i) {
    want.push_back(prefix_ + "k" + std::to_string(i));
    put(c, want.back(), "v");
  }
  put(c, "t/elsewhere", "v");  // outside the prefix
  std::vector<S3Object> objects;
  std::string error;
  ASSERT_TRUE(c.list(prefix_, objects, error, 2)) << error;  // four pages
  std::vector<std::string> got;
  for (const S3Object& o : objects) got.push_back(o.key);
  EXPECT_EQ(got, want);
  EXPECT_EQ(objects[0].size, 1);
}

TEST_F(SyncS3, WrongCredentialsAre403) {
  S3Client wrong_secret(options("not-the-secret-key"));
  std::string error;
  EXPECT_FALSE(wrong_secret.put(prefix_ + "x", "v", error));
  EXPECT_NE(error.find("HTTP 403 SignatureDoesNotMatch"), std::string::npos) << error;
  std::vector<S3Object> objects;
  EXPECT_FALSE(wrong_secret.list(prefix_, objects, error));
  EXPECT_NE(error.find("HTTP 403"), std::string::npos) << error;
  EXPECT_EQ(error.find("not-the-secret-key"), std::string::npos) << "the secret leaked into: " << error;

  S3Options o = options();
  o.access_key = "unknown-key";
  S3Client wrong_key(o);
  EXPECT_FALSE(wrong_key.put(prefix_ + "x", "v", error));
  EXPECT_NE(error.find("HTTP 403 InvalidAccessKeyId"), std::string::npos) << error;
  S3Client right(options());
  EXPECT_TRUE(keys(right).empty());
}

TEST_F(SyncS3, TransportErrorsAndCancel) {
  S3Options o = options();
  o.endpoint = "http://127.0.0.1:" + std::to_string(free_port());
  S3Client down(o);
  std::string body, error;
  EXPECT_FALSE(down.get("k", body, error));
  EXPECT_FALSE(error.empty());

  S3Client c(options());
  c.cancel();
  EXPECT_FALSE(c.put(prefix_ + "x", "v", error));
  EXPECT_EQ(error, "canceled");
}

TEST_F(SyncS3, CredentialsFile) {
  S3Options o;
  const std::string path = root_ + "/creds-test";
  std::ofstream(path) << "  AKIDEXAMPLE \r\nsecret/with+chars\n";
  ::chmod(path.c_str(), 0600);
  load_s3_credentials(path, o);
  EXPECT_EQ(o.access_key, "AKIDEXAMPLE");
  EXPECT_EQ(o.secret_key, "secret/with+chars");

  std::ofstream(path) << "only-one-line\n";
  try {
    load_s3_credentials(path, o);
    FAIL() << "a one-line file was accepted";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("line 2"), std::string::npos) << e.what();
  }
  EXPECT_THROW(load_s3_credentials(root_ + "/no-such-file", o), std::runtime_error);
}

TEST_F(SyncS3, KeysNameRevisions) {
  EXPECT_EQ(s3_snapshot_key("p/", 42), "p/snapshot-00000000000000000042.psnap");
  EXPECT_EQ(parse_s3_snapshot_key("p/", "p/snapshot-00000000000000000042.psnap"), 42);
  EXPECT_EQ(parse_s3_snapshot_key("p/", "q/snapshot-00000000000000000042.psnap"), -1);
  EXPECT_EQ(parse_s3_snapshot_key("p/", "p/snapshot-42.psnap"), -1);
  EXPECT_EQ(parse_s3_snapshot_key("p/", "p/snapshot-00000000000000000042.psnap.bad"), -1);
  EXPECT_EQ(parse_s3_snapshot_key("", "snapshot-00000000000000000007.psnap"), 7);
}

TEST_F(SyncS3, FallbackLoadsNewestThatVerifies) {
  S3Client c(options());
  S3Fallback fallback(options(), prefix_);
  std::string error;
  EXPECT_FALSE(fallback.load_latest(verifier_, error));
  EXPECT_NE(error.find("no snapshot under"), std::string::npos) << error;

  for (int64_t r : {5, 9, 12, 20}) put(c, s3_snapshot_key(prefix_, r), snapshot(r));
  put(c, prefix_ + "README", "not a snapshot");  // ignored: not a snapshot key
  // Newest: tampered content (the hash check catches it).
  std::string tampered = snapshot(20);
  tampered.replace(tampered.find("/r20"), 4, "/evl");
  put(c, s3_snapshot_key(prefix_, 20), tampered);
  // Next: a valid snapshot whose revision is not the one in its name.
  put(c, s3_snapshot_key(prefix_, 15), snapshot(12));
  // Next: signed by a key nobody trusts.
  bool generated = false;
  std::unique_ptr<Signer> stranger = Signer::load_or_generate(root_ + "/stranger.key", true, generated);
  {
    ResourceSet s;
    s.put("routes", "1", R"({"id":"1","uri":"/x"})");
    SignedState st{"7", 14, s.content_hash(), "", ""};
    stranger->sign(st);
    put(c, s3_snapshot_key(prefix_, 14), encode_snapshot(st, s.document()));
  }

  std::optional<S3Snapshot> got = fallback.load_latest(verifier_, error);
  ASSERT_TRUE(got) << error;
  EXPECT_EQ(got->state.revision, 12);
  EXPECT_EQ(got->key, s3_snapshot_key(prefix_, 12));
  EXPECT_EQ(got->encoded, snapshot(12));
  EXPECT_NE(got->set.find("routes", "1"), nullptr);

  // Nothing valid at all: a clear error, nothing loaded.
  for (int64_t r : {5, 9, 12}) ASSERT_TRUE(c.remove(s3_snapshot_key(prefix_, r), error)) << error;
  EXPECT_FALSE(fallback.load_latest(verifier_, error));
  EXPECT_NE(error.find("none of the 3 snapshots"), std::string::npos) << error;
}

TEST_F(SyncS3, SyncClientFallsBackToS3AndKeepsTryingControlPlanes) {
  S3Client c(options());
  put(c, s3_snapshot_key(prefix_, 30), snapshot(30));
  put(c, s3_snapshot_key(prefix_, 31), "garbage");

  SyncOptions o;
  o.control_planes = {"http://127.0.0.1:" + std::to_string(free_port())};  // nothing listens there
  o.node_id = "dp";
  o.token = "token-0123456789";
  o.cache_dir = root_ + "/dp-cache-" + prefix_.substr(2, prefix_.size() - 3);
  o.retry_backoff = 0.05;
  o.s3 = options();
  o.s3_prefix = prefix_;
  std::atomic<int> applied{0};
  std::atomic<int64_t> revision{0};
  std::atomic<Source> source{Source::none};
  SyncClient client(
      o, std::move(verifier_),
      [&](const SignedState& st, const ResourceSet&, const SyncClient::Delta*, Source s, std::string&) {
        revision = st.revision;
        source = s;
        ++applied;
        return true;
      });
  EXPECT_FALSE(client.start_from_cache());
  client.start();
  Clock::time_point deadline = Clock::now() + std::chrono::seconds(10);
  while (client.status().source == Source::none && Clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  ASSERT_EQ(applied.load(), 1);
  EXPECT_EQ(revision.load(), 30);
  EXPECT_EQ(source.load(), Source::s3);
  SyncStatus st = client.status();
  EXPECT_EQ(st.source, Source::s3);
  EXPECT_EQ(st.revision, 30);
  EXPECT_FALSE(st.connected);
  // Cached like any applied snapshot, so a restart starts from the cache.
  const std::string cached = o.cache_dir + "/snapshot-00000000000000000030.psnap";
  while (read_file(cached).empty() && Clock::now() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  EXPECT_EQ(read_file(cached), snapshot(30));
  // Once served, S3 is not asked again; the control planes still are (nothing else gets applied).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  EXPECT_EQ(applied.load(), 1);
  Clock::time_point stop_started = Clock::now();
  client.stop();
  EXPECT_LT(Clock::now() - stop_started, std::chrono::seconds(2));
}

}  // namespace
}  // namespace portico::sync
