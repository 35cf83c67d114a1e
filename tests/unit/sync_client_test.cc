// SyncClient against fake control planes: an in-test HTTP/1.1 server (one request per connection) that serves
// /snapshot, long-polled /changes (deltas from ResourceSet::diff) and /report from a shared, signed history.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include <nlohmann/json.hpp>

#include "sync/cp_http.h"
#include "sync/snapshot_cache.h"
#include "sync/sync_client.h"
#include "sync_test_data.h"

namespace portico::sync {
namespace {

namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

constexpr const char* kToken = "dp-token-1";

// Polls `done` every 5 ms until it holds or `seconds` pass.
bool eventually(const std::function<bool()>& done, double seconds = 5) {
  Clock::time_point deadline = Clock::now() + std::chrono::milliseconds(static_cast<int>(seconds * 1000));
  while (!done()) {
    if (Clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

// The configuration history every fake control plane of one test serves (as replicas share etcd).
struct Cluster {
  explicit Cluster(const std::string& dir) {
    bool generated = false;
    signer = Signer::load_or_generate(dir + "/signing.key", true, generated);
  }

  int64_t publish(const ResourceSet& set) {
    std::lock_guard lock(mu);
    revision += 3;  // etcd revisions move for other keys too
    states[revision] = set;
    cv.notify_all();
    return revision;
  }
  // Caller holds mu.
  SignedState signed_state(int64_t rev) const {
    SignedState s;
    s.cluster_id = id;
    s.revision = rev;
    s.content_hash = states.at(rev).content_hash();
    signer->sign(s);
    return s;
  }

  std::mutex mu;
  std::condition_variable cv;
  std::unique_ptr<Signer> signer;
  std::string id = "3397744812459331135";
  std::map<int64_t, ResourceSet> states;  // guarded by mu
  int64_t revision = 0;                   // guarded by mu
};

// endless_changes: every /changes answer is a body that never ends (a hostile or broken control plane).
enum class Fault { none, delta_content, delta_signature, endless_changes };

class FakeCp {
 public:
  FakeCp(Cluster& cluster, double max_wait = 1) : cluster_(cluster), max_wait_(max_wait) {
    listen_fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof addr;
    if (::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), len) != 0 || ::listen(listen_fd_, 64) != 0 ||
        ::getsockname(listen_fd_, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
      ADD_FAILURE() << "cannot listen";
    }
    url_ = "http://127.0.0.1:" + std::to_string(ntohs(addr.sin_port));
    acceptor_ = std::thread([this] { accept_loop(); });
  }
  ~FakeCp() { stop(); }

  const std::string& url() const { return url_; }

  // Dies: the listener and every open connection (a waiting long poll included) close at once.
  void stop() {
    if (stopping_.exchange(true)) return;
    ::shutdown(listen_fd_, SHUT_RDWR);  // wakes accept()
    acceptor_.join();
    ::close(listen_fd_);
    {
      std::lock_guard lock(mu_);
      for (int fd : open_) ::shutdown(fd, SHUT_RDWR);
    }
    {
      std::lock_guard lock(cluster_.mu);  // wakes long polls; they see stopping_
      cluster_.cv.notify_all();
    }
    std::vector<std::thread> threads;
    {
      std::lock_guard lock(mu_);
      threads.swap(threads_);
    }
    for (auto& t : threads) t.join();
  }

  void set_fault(Fault f) {
    std::lock_guard lock(mu_);
    fault_ = f;
  }
  // Serve the snapshot of revision `rev` instead of the newest (0: the newest again).
  void pin_snapshot(int64_t rev) {
    std::lock_guard lock(mu_);
    pinned_ = rev;
  }
  // When the last /changes answer that carried changes was sent, and when the /changes request after it
  // arrived (time_point{} while none has).
  std::pair<Clock::time_point, Clock::time_point> delta_times() {
    std::lock_guard lock(mu_);
    return {delta_sent_, after_delta_};
  }
  std::vector<Json> reports() {
    std::lock_guard lock(mu_);
    return reports_;
  }
  int count(const std::string& path) {
    std::lock_guard lock(mu_);
    return counts_[path];
  }
  int waiting() { return waiting_.load(); }

 private:
  struct Reply {
    int status = 200;
    std::string body;
    std::string content_type = "application/json";
  };

  void accept_loop() {
    while (true) {
      int fd = ::accept(listen_fd_, nullptr, nullptr);
      if (fd < 0) {
        if (stopping_) return;
        continue;
      }
      std::lock_guard lock(mu_);
      if (stopping_) {
        ::close(fd);
        return;
      }
      open_.insert(fd);
      threads_.emplace_back([this, fd] { serve(fd); });
    }
  }

  void serve(int fd) {
    std::string in;
    char buf[4096];
    size_t head_end;
    while ((head_end = in.find("\r\n\r\n")) == std::string::npos) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return close_conn(fd);
      in.append(buf, n);
    }
    std::string head = in.substr(0, head_end);
    std::string body = in.substr(head_end + 4);
    std::string method = head.substr(0, head.find(' '));
    std::string target =
        head.substr(method.size() + 1, head.find(' ', method.size() + 1) - method.size() - 1);
    std::string lower = head;
    for (char& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    size_t length = 0;
    if (size_t p = lower.find("\r\ncontent-length:"); p != std::string::npos) {
      length = std::stoul(head.substr(p + 17));
    }
    while (body.size() < length) {
      ssize_t n = ::recv(fd, buf, sizeof buf, 0);
      if (n <= 0) return close_conn(fd);
      body.append(buf, n);
    }
    std::string auth;
    if (size_t p = lower.find("\r\nauthorization:"); p != std::string::npos) {
      size_t start = head.find_first_not_of(' ', p + 16);
      auth = head.substr(start, head.find("\r\n", start) - start);
    }
    if (target.starts_with("/portico/v1/changes") && fault() == Fault::endless_changes) {
      return endless(fd);
    }
    std::optional<Reply> reply = handle(method, target, auth, body);
    if (reply && target.starts_with("/portico/v1/changes") &&
        reply->body.find("\"changes\":[{") != std::string::npos) {
      std::lock_guard lock(mu_);
      delta_sent_ = Clock::now();
      after_delta_ = {};
    }
    if (reply) {
      static const std::map<int, const char*> kReasons = {
          {200, "OK"}, {204, "No Content"}, {401, "Unauthorized"}, {409, "Conflict"}, {503, "Unavailable"}};
      std::string out = "HTTP/1.1 " + std::to_string(reply->status) + " " + kReasons.at(reply->status);
      out += "\r\nContent-Type: " + reply->content_type;
      out += "\r\nContent-Length: " + std::to_string(reply->body.size());
      out += "\r\nConnection: close\r\n\r\n";
      out += reply->body;
      for (size_t sent = 0; sent < out.size();) {
        ssize_t n = ::send(fd, out.data() + sent, out.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += n;
      }
    }
    close_conn(fd);
  }

  Fault fault() {
    std::lock_guard lock(mu_);
    return fault_;
  }

  // A 200 without a length whose body goes on until the client hangs up (or 1 GiB, a test's bound).
  void endless(int fd) {
    std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n";
    ::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
    std::string chunk = "{\"changes\":[" + std::string(64 * 1024, ' ');
    size_t sent = 0;
    while (!stopping_ && sent < (size_t{1} << 30)) {
      ssize_t n = ::send(fd, chunk.data(), chunk.size(), MSG_NOSIGNAL);
      if (n <= 0) break;
      sent += static_cast<size_t>(n);
    }
    {
      std::lock_guard lock(mu_);
      endless_sent_.push_back(sent);
    }
    close_conn(fd);
  }

 public:
  // The bytes of each endless body sent before the client hung up.
  std::vector<size_t> endless_sent() {
    std::lock_guard lock(mu_);
    return endless_sent_;
  }

 private:
  void close_conn(int fd) {
    std::lock_guard lock(mu_);
    open_.erase(fd);
    ::close(fd);
  }

  // nullopt: close without answering (the server is going down).
  std::optional<Reply> handle(const std::string& method, const std::string& target, const std::string& auth,
                              const std::string& body) {
    std::string path = target.substr(0, target.find('?'));
    std::map<std::string, std::string> query;
    if (size_t q = target.find('?'); q != std::string::npos) {
      std::string rest = target.substr(q + 1);
      for (size_t start = 0; start <= rest.size();) {
        size_t amp = rest.find('&', start);
        std::string kv = rest.substr(start, amp == std::string::npos ? std::string::npos : amp - start);
        size_t eq = kv.find('=');
        query[kv.substr(0, eq)] = eq == std::string::npos ? "" : kv.substr(eq + 1);
        if (amp == std::string::npos) break;
        start = amp + 1;
      }
    }
    {
      std::lock_guard lock(mu_);
      ++counts_[path];
      if (path == "/portico/v1/changes" && delta_sent_ != Clock::time_point{} &&
          after_delta_ == Clock::time_point{}) {
        after_delta_ = Clock::now();
      }
    }
    if (auth != std::string("Bearer ") + kToken) return Reply{401, R"({"error_msg":"unknown token"})"};
    if (method == "POST" && path == "/portico/v1/report") {
      std::lock_guard lock(mu_);
      reports_.push_back(Json::parse(body, nullptr, false));
      return Reply{204, ""};
    }
    if (method == "GET" && path == "/portico/v1/snapshot") {
      int64_t pinned;
      {
        std::lock_guard lock(mu_);
        pinned = pinned_;
      }
      std::lock_guard lock(cluster_.mu);
      if (cluster_.revision == 0) return Reply{503, R"({"error_msg":"not ready"})"};
      int64_t rev = pinned != 0 ? pinned : cluster_.revision;
      return Reply{200, encode_snapshot(cluster_.signed_state(rev), cluster_.states.at(rev).document()),
                   "application/vnd.portico.snapshot"};
    }
    if (method == "GET" && path == "/portico/v1/changes") return changes(query);
    return Reply{404, R"({"error_msg":"not found"})"};
  }

  std::optional<Reply> changes(std::map<std::string, std::string>& query) {
    int64_t since = std::stoll(query["since"]);
    double wait = std::min(std::stod(query["wait"]), max_wait_);
    std::unique_lock lock(cluster_.mu);
    auto state_json = [this](int64_t rev) {
      SignedState s = cluster_.signed_state(rev);
      return Json{{"cluster_id", s.cluster_id},
                  {"revision", s.revision},
                  {"sha256", s.content_hash},
                  {"key_id", s.key_id},
                  {"signature", s.signature}};
    };
    if (query["cluster"] != cluster_.id || (since < cluster_.revision && !cluster_.states.count(since))) {
      return Reply{409, R"({"error_msg":"full snapshot needed","full":true})"};
    }
    Json answer = {{"cluster_id", cluster_.id}, {"from", since}, {"changes", Json::array()}};
    if (since > cluster_.revision) {
      answer["revision"] = cluster_.revision;
      answer["state"] = state_json(cluster_.revision);
      answer["behind"] = true;
      return Reply{200, answer.dump()};
    }
    ++waiting_;
    cluster_.cv.wait_for(lock, std::chrono::milliseconds(static_cast<int>(wait * 1000)),
                         [&] { return stopping_ || cluster_.revision > since; });
    --waiting_;
    if (stopping_) return std::nullopt;
    int64_t rev = cluster_.revision;
    answer["revision"] = rev;
    answer["state"] = state_json(rev);
    for (const ResourceChange& c : ResourceSet::diff(cluster_.states.at(since), cluster_.states.at(rev))) {
      answer["changes"].push_back(
          {{"kind", c.kind}, {"id", c.id}, {"value", c.value ? Json::parse(*c.value) : Json(nullptr)}});
    }
    std::lock_guard fault_lock(mu_);
    if (rev > since && fault_ == Fault::delta_content) {
      answer["changes"][0]["value"]["tampered"] = true;  // content no control plane signed
      fault_ = Fault::none;
    } else if (rev > since && fault_ == Fault::delta_signature) {
      std::string& sig = answer["state"]["signature"].get_ref<std::string&>();
      sig[0] = sig[0] == 'A' ? 'B' : 'A';
      fault_ = Fault::none;
    }
    return Reply{200, answer.dump()};
  }

  Cluster& cluster_;
  const double max_wait_;
  int listen_fd_ = -1;
  std::string url_;
  std::atomic<bool> stopping_{false};
  std::atomic<int> waiting_{0};
  std::thread acceptor_;

  std::mutex mu_;
  std::set<int> open_;                 // guarded by mu_
  std::vector<std::thread> threads_;   // guarded by mu_
  Fault fault_ = Fault::none;          // guarded by mu_
  int64_t pinned_ = 0;                 // guarded by mu_
  Clock::time_point delta_sent_{};     // guarded by mu_
  Clock::time_point after_delta_{};    // guarded by mu_
  std::vector<Json> reports_;          // guarded by mu_
  std::vector<size_t> endless_sent_;   // guarded by mu_
  std::map<std::string, int> counts_;  // guarded by mu_
};

// What the client handed to Apply.
struct Applied {
  struct Call {
    int64_t revision;
    std::string hash;
    Source source;
    ResourceSet set;
    std::optional<std::string> base_hash;  // the delta's, when the state came as a delta
    std::vector<ResourceChange> changes;   // the delta's
  };
  std::mutex mu;
  std::vector<Call> calls;    // accepted ones only
  std::vector<Call> refused;  // the others

  SyncClient::Apply fn() {
    return [this](const SignedState& state, const ResourceSet& set, const SyncClient::Delta* delta,
                  Source source, std::string& error) {
      Call call{state.revision, state.content_hash, source, set, std::nullopt, {}};
      if (delta != nullptr) {
        // The delta must lead from the state named by base_hash to `set`.
        call.base_hash = delta->base_hash;
        call.changes = delta->changes;
      }
      std::lock_guard lock(mu);
      // The one validation rule of these tests: a route named "bad" is invalid.
      if (set.find("routes", "bad") != nullptr) {
        error = "route bad: upstream missing";
        refused.push_back(std::move(call));
        return false;
      }
      calls.push_back(std::move(call));
      return true;
    };
  }
  size_t count() {
    std::lock_guard lock(mu);
    return calls.size();
  }
  Call last() {
    std::lock_guard lock(mu);
    return calls.back();
  }
};

ResourceSet routes(std::initializer_list<std::string> ids, const std::string& tag = "a") {
  ResourceSet s;
  for (const std::string& id : ids) {
    std::string value;
    EXPECT_TRUE(
        canonicalize(R"({"id":")" + id + R"(","uri":"/)" + id + R"(","desc":")" + tag + "\"}", value));
    s.put("routes", id, value);
  }
  std::string upstream;
  EXPECT_TRUE(canonicalize(R"({"id":"u1","nodes":{"127.0.0.1:80":1},"type":"roundrobin"})", upstream));
  s.put("upstreams", "u1", upstream);
  return s;
}

class SyncClientTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/portico-sync-client-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    root_ = tmpl;
    cluster_ = std::make_unique<Cluster>(root_);
  }
  void TearDown() override { fs::remove_all(root_); }

  SyncOptions options(std::vector<std::string> cps) {
    SyncOptions o;
    o.control_planes = std::move(cps);
    o.node_id = "dp-1";
    o.token = kToken;
    o.cache_dir = root_ + "/cache";
    o.hostname = "host-1";
    o.version = "0.1.0";
    o.long_poll = 1;
    o.connect_timeout = 0.5;
    o.report_interval = 0.3;
    o.retry_backoff = 0.05;
    return o;
  }
  Verifier verifier() {
    Verifier v;
    std::string error;
    EXPECT_TRUE(v.add_public_key_pem(cluster_->signer->public_key_pem(), error)) << error;
    return v;
  }
  std::unique_ptr<SyncClient> client(std::vector<std::string> cps, Applied& applied) {
    return std::make_unique<SyncClient>(options(std::move(cps)), verifier(), applied.fn());
  }
  // A started client of `cp` that holds `revision` and waits in a long poll; null if it does not get there.
  std::unique_ptr<SyncClient> polling_client(FakeCp& cp, Applied& applied, int64_t revision) {
    auto c = client({cp.url()}, applied);
    c->start();
    if (!at_revision(*c, revision) || !eventually([&] { return cp.waiting() == 1; })) return nullptr;
    return c;
  }
  bool at_revision(SyncClient& c, int64_t rev, double seconds = 5) {
    return eventually([&] { return c.status().revision == rev; }, seconds);
  }
  const ResourceSet& state(int64_t rev) {
    std::lock_guard lock(cluster_->mu);
    return cluster_->states.at(rev);
  }

  void tampered_delta(Fault fault);
  void refused_delta_keeps_base(Fault fault);
  // The newest snapshot in the client's cache that verifies (nullopt: none).
  std::optional<CachedSnapshot> cached() { return SnapshotCache(root_ + "/cache").load_latest(verifier()); }
  // Waits until the client's cache holds revision `rev` (the writer thread stores it after the apply).
  bool cached_at(int64_t rev, double seconds = 5) {
    return eventually(
        [&] {
          std::optional<CachedSnapshot> c = cached();
          return c && c->state.revision == rev;
        },
        seconds);
  }
  // Writes the cluster's state at `rev` to the client's cache directory.
  void cache_state(int64_t rev) {
    std::string snapshot;
    {
      std::lock_guard lock(cluster_->mu);
      snapshot = encode_snapshot(cluster_->signed_state(rev), cluster_->states.at(rev).document());
    }
    std::string error;
    ASSERT_TRUE(SnapshotCache(root_ + "/cache").store(snapshot, rev, error)) << error;
  }

  std::string root_;
  std::unique_ptr<Cluster> cluster_;
};

TEST_F(SyncClientTest, SnapshotFirstThenDeltasPushedAtOnce) {
  int64_t r1 = cluster_->publish(routes({"1", "2"}));
  FakeCp cp(*cluster_);
  Applied applied;
  auto c = client({cp.url()}, applied);
  EXPECT_FALSE(c->start_from_cache());  // empty cache dir
  c->start();
  ASSERT_TRUE(at_revision(*c, r1));
  SyncStatus s = c->status();
  EXPECT_EQ(s.source, Source::control_plane);
  EXPECT_EQ(s.cluster_id, cluster_->id);
  EXPECT_EQ(s.content_hash, state(r1).content_hash());
  EXPECT_EQ(s.control_plane, cp.url());
  EXPECT_TRUE(s.connected);
  EXPECT_EQ(s.last_error, "");
  EXPECT_EQ(applied.last().source, Source::control_plane);
  EXPECT_TRUE(applied.last().set == state(r1));
  EXPECT_FALSE(applied.last().base_hash.has_value());  // a snapshot: no delta
  EXPECT_EQ(cp.count("/portico/v1/snapshot"), 1);
  // The writer thread caches the snapshot as it was received.
  ASSERT_TRUE(cached_at(r1));
  EXPECT_TRUE(cached()->set == state(r1));

  // A change (one route changed, one removed, one added) arrives on the open long poll.
  ASSERT_TRUE(eventually([&] { return cp.waiting() == 1; }));
  Clock::time_point published = Clock::now();
  int64_t r2 = cluster_->publish(routes({"1", "3"}, "b"));
  ASSERT_TRUE(at_revision(*c, r2, 1));
  EXPECT_LT(Clock::now() - published, std::chrono::seconds(1));
  EXPECT_TRUE(applied.last().set == state(r2));
  EXPECT_EQ(cp.count("/portico/v1/snapshot"), 1);  // a delta, not a second snapshot
  // Apply was told the delta: from r1's content, the three changes.
  EXPECT_EQ(applied.last().base_hash, state(r1).content_hash());
  ResourceSet replayed = state(r1);
  replayed.apply(applied.last().changes);
  EXPECT_TRUE(replayed == state(r2));
  EXPECT_EQ(applied.last().changes.size(), 3u);
  // The delta's result is cached too, encoded with its signed state.
  ASSERT_TRUE(cached_at(r2));
  EXPECT_TRUE(cached()->set == state(r2));

  // The report after the apply carries the new state.
  ASSERT_TRUE(eventually([&] {
    for (const Json& r : cp.reports()) {
      if (r.value("revision", int64_t{0}) == r2) return true;
    }
    return false;
  }));
  Json report = cp.reports().back();
  EXPECT_EQ(report["hostname"], "host-1");
  EXPECT_EQ(report["version"], "0.1.0");
  EXPECT_EQ(report["node_id"], "dp-1");
  EXPECT_EQ(report["source"], "control_plane");
  EXPECT_EQ(report["content_hash"], state(r2).content_hash());
  EXPECT_EQ(report["sync_errors"], 0);
  EXPECT_EQ(report["last_error"], "");

  // With nothing new the long poll ends in a heartbeat, which counts as a sync.
  double last_sync = c->status().last_sync;
  ASSERT_TRUE(eventually([&] { return c->status().last_sync > last_sync; }, 3));
  EXPECT_EQ(c->status().revision, r2);
  EXPECT_EQ(c->status().sync_errors, 0u);
  c->stop();
  c->stop();  // idempotent
}

TEST_F(SyncClientTest, FailsOverToTheNextControlPlane) {
  int64_t r1 = cluster_->publish(routes({"1"}));
  FakeCp first(*cluster_);
  FakeCp second(*cluster_);
  Applied applied;
  auto c = client({first.url(), second.url()}, applied);
  c->start();
  ASSERT_TRUE(at_revision(*c, r1));
  EXPECT_EQ(c->status().control_plane, first.url());
  EXPECT_EQ(second.count("/portico/v1/changes"), 0);

  ASSERT_TRUE(eventually([&] { return first.waiting() == 1; }));
  first.stop();  // kills the long poll in flight
  int64_t r2 = cluster_->publish(routes({"1", "2"}));
  ASSERT_TRUE(at_revision(*c, r2, 3));
  EXPECT_EQ(c->status().control_plane, second.url());
  EXPECT_EQ(second.count("/portico/v1/snapshot"), 0);  // the delta from where we were
  int64_t r3 = cluster_->publish(routes({"2"}));
  ASSERT_TRUE(at_revision(*c, r3, 2));
  EXPECT_TRUE(applied.last().set == state(r3));
  EXPECT_TRUE(c->status().connected);
  EXPECT_EQ(c->status().last_error, "");
}

TEST_F(SyncClientTest, WrongTokenIsReported) {
  cluster_->publish(routes({"1"}));
  FakeCp cp(*cluster_);
  Applied applied;
  SyncOptions o = options({cp.url()});
  o.token = "stolen";
  SyncClient c(o, verifier(), applied.fn());
  c.start();
  ASSERT_TRUE(eventually([&] { return c.status().sync_errors >= 2; }));
  SyncStatus s = c.status();
  EXPECT_NE(s.last_error.find("refused our token"), std::string::npos) << s.last_error;
  EXPECT_NE(s.last_error.find("401"), std::string::npos) << s.last_error;
  EXPECT_FALSE(s.connected);
  EXPECT_EQ(s.revision, 0);
  EXPECT_EQ(s.source, Source::none);
  EXPECT_EQ(applied.count(), 0u);
}

// A delta whose content or signature was tampered with is never applied; a full snapshot repairs the gap.
void SyncClientTest::tampered_delta(Fault fault) {
  int64_t r1 = cluster_->publish(routes({"1"}));
  FakeCp cp(*cluster_);
  Applied applied;
  auto c = polling_client(cp, applied, r1);
  ASSERT_TRUE(c);
  cp.set_fault(fault);
  int64_t r2 = cluster_->publish(routes({"1", "2"}));
  ASSERT_TRUE(eventually([&] { return c->status().sync_errors >= 1; }));
  ASSERT_TRUE(at_revision(*c, r2));
  EXPECT_EQ(cp.count("/portico/v1/snapshot"), 2);  // the first contact and the repair
  SyncStatus s = c->status();
  EXPECT_EQ(s.sync_errors, 1u);
  EXPECT_EQ(s.last_error, "");  // the repair went well
  std::lock_guard lock(applied.mu);
  ASSERT_EQ(applied.calls.size(), 2u);  // r1, then the repaired r2: nothing tampered reached Apply
  EXPECT_TRUE(applied.calls[1].set == state(r2));
  EXPECT_EQ(applied.calls[1].hash, state(r2).content_hash());
}

TEST_F(SyncClientTest, TamperedDeltaContentIsRefusedAndRepaired) {
  tampered_delta(Fault::delta_content);
}

TEST_F(SyncClientTest, TamperedDeltaSignatureIsRefusedAndRepaired) {
  tampered_delta(Fault::delta_signature);
}

// A delta refused for its content hash or its signature is undone: the client's set is again exactly the
// base it was applied to, so the next delta from that base applies (here the control plane's snapshot is
// pinned at the base, so the repair is a delta again, not a snapshot that would replace the set whole).
void SyncClientTest::refused_delta_keeps_base(Fault fault) {
  int64_t r1 = cluster_->publish(routes({"1", "2"}));
  FakeCp cp(*cluster_);
  Applied applied;
  auto c = polling_client(cp, applied, r1);
  ASSERT_TRUE(c);
  cp.pin_snapshot(r1);
  cp.set_fault(fault);
  int64_t r2 = cluster_->publish(routes({"1", "3"}, "b"));
  ASSERT_TRUE(at_revision(*c, r2));
  EXPECT_EQ(c->status().sync_errors, 1u);
  EXPECT_EQ(cp.count("/portico/v1/snapshot"), 2);  // the first contact, and the re-check that matched r1
  std::lock_guard lock(applied.mu);
  ASSERT_EQ(applied.calls.size(), 2u);  // r1, then r2 from a delta against the restored r1
  EXPECT_TRUE(applied.calls[1].set == state(r2));
  EXPECT_EQ(applied.calls[1].base_hash, state(r1).content_hash());
  EXPECT_TRUE(applied.refused.empty());
}

TEST_F(SyncClientTest, DeltaWithWrongHashLeavesTheBaseAsItWas) {
  refused_delta_keeps_base(Fault::delta_content);
}

TEST_F(SyncClientTest, DeltaWithBadSignatureLeavesTheBaseAsItWas) {
  refused_delta_keeps_base(Fault::delta_signature);
}

// A delta refused by Apply: the set served goes back exactly to its state (what the cache writer stores of
// it), and the refused state, copied aside, is the base of the next delta.
TEST_F(SyncClientTest, DeltaRefusedByApplyLeavesTheServedSetAsItWas) {
  int64_t r1 = cluster_->publish(routes({"1", "2"}));
  FakeCp cp(*cluster_);
  Applied applied;
  auto c = polling_client(cp, applied, r1);
  ASSERT_TRUE(c);
  int64_t r2 = cluster_->publish(routes({"1", "2", "3"}));  // a delta: cached from the set held in place
  ASSERT_TRUE(at_revision(*c, r2));
  ASSERT_TRUE(eventually([&] { return cp.waiting() == 1; }));
  int64_t bad = cluster_->publish(routes({"1", "bad", "3"}, "b"));
  ASSERT_TRUE(eventually([&] { return c->status().sync_errors == 1; }));
  EXPECT_EQ(c->status().revision, r2);
  {
    std::lock_guard lock(applied.mu);
    ASSERT_EQ(applied.refused.size(), 1u);
    EXPECT_EQ(applied.refused[0].revision, bad);
    EXPECT_TRUE(applied.refused[0].set == state(bad));
    EXPECT_EQ(applied.refused[0].base_hash, state(r2).content_hash());
  }
  // What is cached of the served state is r2 exactly (it verifies against r2's signed hash).
  ASSERT_TRUE(cached_at(r2));
  EXPECT_TRUE(cached()->set == state(r2));

  // The next delta starts from the refused state; the result is served and cached.
  ASSERT_TRUE(eventually([&] { return cp.count("/portico/v1/snapshot") == 2 && cp.waiting() == 1; }));
  int64_t fixed = cluster_->publish(routes({"1", "4", "3"}, "b"));
  ASSERT_TRUE(at_revision(*c, fixed));
  EXPECT_TRUE(applied.last().set == state(fixed));
  EXPECT_EQ(applied.last().base_hash, state(bad).content_hash());
  ASSERT_TRUE(cached_at(fixed));
  EXPECT_TRUE(cached()->set == state(fixed));
  EXPECT_EQ(cp.count("/portico/v1/snapshot"), 2);
  c->stop();
  EXPECT_EQ(cached()->state.revision, fixed);
}

TEST_F(SyncClientTest, StateRefusedByApplyIsReportedAndKept) {
  int64_t r1 = cluster_->publish(routes({"1"}));
  FakeCp cp(*cluster_);
  Applied applied;
  auto c = polling_client(cp, applied, r1);
  ASSERT_TRUE(c);
  int64_t bad = cluster_->publish(routes({"1", "bad"}));
  ASSERT_TRUE(eventually([&] { return c->status().sync_errors == 1; }));
  SyncStatus s = c->status();
  EXPECT_EQ(s.revision, r1);  // the last good state keeps serving
  EXPECT_EQ(s.content_hash, state(r1).content_hash());
  EXPECT_NE(s.last_error.find("route bad: upstream missing"), std::string::npos) << s.last_error;
  EXPECT_NE(s.last_error.find(std::to_string(bad)), std::string::npos) << s.last_error;
  ASSERT_TRUE(eventually([&] {
    for (const Json& r : cp.reports()) {
      if (r.value("last_error", "").find("route bad") != std::string::npos) {
        return r.value("revision", int64_t{0}) == r1 && r.value("sync_errors", 0) == 1;
      }
    }
    return false;
  }));

  // The refusal is not retried in a loop: the client waits for the control plane's next change (after one
  // re-check by snapshot), and the error stays visible meanwhile.
  ASSERT_TRUE(eventually([&] { return cp.count("/portico/v1/snapshot") == 2 && cp.waiting() == 1; }));
  EXPECT_EQ(c->status().sync_errors, 1u);
  EXPECT_FALSE(c->status().last_error.empty());
  EXPECT_EQ(applied.count(), 1u);

  int64_t fixed = cluster_->publish(routes({"1", "2"}));
  ASSERT_TRUE(at_revision(*c, fixed, 2));
  EXPECT_TRUE(applied.last().set == state(fixed));
  EXPECT_EQ(c->status().last_error, "");
  EXPECT_EQ(c->status().sync_errors, 1u);
  EXPECT_EQ(cp.count("/portico/v1/snapshot"), 2);
  EXPECT_LT(cp.count("/portico/v1/changes"), 10);
}

TEST_F(SyncClientTest, StartsFromCacheWithoutControlPlane) {
  int64_t r1 = cluster_->publish(routes({"1"}));
  int64_t r2 = 0;
  std::string dead_url;
  {
    FakeCp cp(*cluster_);
    Applied applied;
    auto c = client({cp.url()}, applied);
    c->start();
    ASSERT_TRUE(at_revision(*c, r1));
    ASSERT_TRUE(eventually([&] { return cp.waiting() == 1; }));
    r2 = cluster_->publish(routes({"1", "2"}));  // cached from a delta: re-encoded with its signed state
    ASSERT_TRUE(at_revision(*c, r2));
    ASSERT_TRUE(cached_at(r2));
    c->stop();
    dead_url = cp.url();
  }

  Applied applied;
  auto c = client({dead_url}, applied);
  ASSERT_TRUE(c->start_from_cache());
  SyncStatus s = c->status();
  EXPECT_EQ(s.source, Source::cache);
  EXPECT_EQ(s.revision, r2);
  EXPECT_EQ(s.cluster_id, cluster_->id);
  ASSERT_EQ(applied.count(), 1u);
  EXPECT_EQ(applied.last().source, Source::cache);
  EXPECT_TRUE(applied.last().set == state(r2));

  // No control plane answers: the cached state keeps serving and the failure is visible.
  c->start();
  ASSERT_TRUE(eventually([&] { return c->status().sync_errors >= 2; }));
  s = c->status();
  EXPECT_EQ(s.source, Source::cache);
  EXPECT_EQ(s.revision, r2);
  EXPECT_FALSE(s.connected);
  EXPECT_NE(s.last_error.find(dead_url), std::string::npos) << s.last_error;
  c->stop();

  // A control plane whose history no longer holds the cached revision answers 409; a snapshot replaces it.
  int64_t r3 = cluster_->publish(routes({"3"}));
  {
    std::lock_guard lock(cluster_->mu);
    cluster_->states.erase(r2);
  }
  FakeCp cp(*cluster_);
  Applied applied2;
  auto c2 = client({cp.url()}, applied2);
  ASSERT_TRUE(c2->start_from_cache());
  EXPECT_EQ(c2->status().revision, r2);
  c2->start();
  ASSERT_TRUE(at_revision(*c2, r3));
  EXPECT_EQ(c2->status().source, Source::control_plane);
  EXPECT_EQ(cp.count("/portico/v1/snapshot"), 1);
  EXPECT_GE(cp.count("/portico/v1/changes"), 1);
}

TEST_F(SyncClientTest, NeverMovesBackToALaggingControlPlane) {
  int64_t r1 = cluster_->publish(routes({"1"}));
  int64_t r2 = cluster_->publish(routes({"1", "2"}));
  cache_state(r2);
  Cluster lagging(root_);  // a replica with the same key whose history stops at r1
  {
    std::lock_guard lock(lagging.mu);
    lagging.states[r1] = state(r1);
    lagging.revision = r1;
  }
  FakeCp cp(lagging);
  Applied applied;
  auto c = client({cp.url()}, applied);
  ASSERT_TRUE(c->start_from_cache());
  c->start();
  ASSERT_TRUE(eventually([&] { return cp.count("/portico/v1/changes") >= 3; }));
  SyncStatus s = c->status();
  EXPECT_EQ(s.revision, r2);
  EXPECT_EQ(s.source, Source::cache);
  EXPECT_EQ(s.sync_errors, 0u);
  EXPECT_TRUE(s.connected);
  EXPECT_EQ(cp.count("/portico/v1/snapshot"), 0);
  EXPECT_EQ(applied.count(), 1u);  // the cache only

  // The replica catches up and moves on: the client follows with a delta.
  {
    std::lock_guard lock(lagging.mu);
    lagging.states[r2] = state(r2);
    lagging.revision = r2;
  }
  int64_t r3 = lagging.publish(routes({"3"}));
  ASSERT_TRUE(at_revision(*c, r3));
  EXPECT_EQ(c->status().source, Source::control_plane);
  EXPECT_EQ(cp.count("/portico/v1/snapshot"), 0);
}

TEST_F(SyncClientTest, HeartbeatWithAnotherHashTriggersASnapshot) {
  int64_t r1 = cluster_->publish(routes({"1"}));
  cache_state(r1);
  {
    // The same revision now holds other content (say, the cache came from a store that was restored).
    std::lock_guard lock(cluster_->mu);
    cluster_->states[r1] = routes({"1", "9"});
  }
  FakeCp cp(*cluster_);
  Applied applied;
  auto c = client({cp.url()}, applied);
  ASSERT_TRUE(c->start_from_cache());
  EXPECT_NE(c->status().content_hash, state(r1).content_hash());
  c->start();
  ASSERT_TRUE(eventually([&] { return c->status().content_hash == state(r1).content_hash(); }, 3));
  EXPECT_EQ(c->status().revision, r1);
  EXPECT_EQ(c->status().source, Source::control_plane);
  EXPECT_EQ(cp.count("/portico/v1/snapshot"), 1);
  EXPECT_TRUE(applied.last().set == state(r1));
}

// A control plane that answers /changes with a body that never ends: the client aborts each transfer at
// kMaxDeltaBytes (it never buffers more), fetches a snapshot instead, keeps serving its state, and says why.
TEST_F(SyncClientTest, EndlessChangesAnswerIsAbortedAtTheBound) {
  int64_t r1 = cluster_->publish(routes({"1"}));
  FakeCp cp(*cluster_);
  Applied applied;
  auto c = polling_client(cp, applied, r1);
  ASSERT_NE(c, nullptr);
  cp.set_fault(Fault::endless_changes);
  cluster_->publish(routes({"1", "2"}));  // ends the long poll in progress; the next ones are endless
  ASSERT_TRUE(eventually([&] { return cp.endless_sent().size() >= 2; }, 30));
  for (size_t sent : cp.endless_sent()) {
    // What the socket buffers hold on top of what the client read before it hung up: a few MiB at most.
    EXPECT_LT(sent, kMaxDeltaBytes + (size_t{8} << 20));
  }
  // The snapshot it fetched instead brought it to the new revision; it goes on serving it.
  SyncStatus s = c->status();
  EXPECT_EQ(s.revision, cluster_->revision);
  EXPECT_GE(cp.count("/portico/v1/snapshot"), 1);
  cp.set_fault(Fault::none);
  int64_t r3 = cluster_->publish(routes({"3"}));
  EXPECT_TRUE(at_revision(*c, r3, 10));
}

// Another etcd cluster's genuine state, signed with the same key, from a control plane listed first: the
// client keeps the state of its own cluster (another control plane still serves it) and its cache files.
TEST_F(SyncClientTest, AnotherClustersStateDoesNotReplaceOursWhileOursIsServed) {
  cluster_->publish(routes({"1"}));
  int64_t r2 = cluster_->publish(routes({"1", "2"}));
  cache_state(r2);
  Cluster other(root_);  // same signing key
  other.id = "777";
  int64_t other_rev = other.publish(routes({"9"}, "other"));
  ASSERT_LT(other_rev, r2);
  FakeCp foreign(other);
  FakeCp ours(*cluster_);
  Applied applied;
  SyncOptions o = options({foreign.url(), ours.url()});
  o.cluster_change_delay = 1;
  SyncClient c(o, verifier(), applied.fn());
  ASSERT_TRUE(c.start_from_cache());
  c.start();
  // Past the delay: ours answered long polls (a second each) all along.
  ASSERT_TRUE(eventually([&] { return foreign.count("/portico/v1/snapshot") >= 1; }));
  ASSERT_TRUE(eventually([&] { return ours.count("/portico/v1/changes") >= 3; }, 10));
  SyncStatus s = c.status();
  EXPECT_EQ(s.cluster_id, cluster_->id);
  EXPECT_EQ(s.revision, r2);
  {
    std::lock_guard lock(applied.mu);
    for (const Applied::Call& call : applied.calls) EXPECT_EQ(call.revision, r2);
  }
  c.stop();
  std::optional<CachedSnapshot> cache = cached();
  ASSERT_TRUE(cache.has_value());
  EXPECT_EQ(cache->state.cluster_id, cluster_->id);
  EXPECT_EQ(cache->state.revision, r2);
}

// A replaced etcd cluster (every control plane serves the new one): the client moves to it once none has
// served its own cluster for cluster_change_delay, and the old cluster's cache file is kept aside.
TEST_F(SyncClientTest, MovesToAReplacedClusterAfterTheDelay) {
  int64_t r2 = cluster_->publish(routes({"1"}));
  r2 = cluster_->publish(routes({"1", "2"}));
  cache_state(r2);
  Cluster replaced(root_);
  replaced.id = "888";
  int64_t new_rev = replaced.publish(routes({"5"}, "new"));
  FakeCp cp(replaced);
  Applied applied;
  SyncOptions o = options({cp.url()});
  o.cluster_change_delay = 1;
  SyncClient c(o, verifier(), applied.fn());
  ASSERT_TRUE(c.start_from_cache());
  Clock::time_point t0 = Clock::now();
  c.start();
  ASSERT_TRUE(eventually([&] { return c.status().cluster_id == "888"; }, 15));
  EXPECT_GE(Clock::now() - t0, std::chrono::milliseconds(1000));
  EXPECT_EQ(c.status().revision, new_rev);
  EXPECT_EQ(c.status().source, Source::control_plane);
  ASSERT_TRUE(eventually([&] {
    std::optional<CachedSnapshot> cache = cached();
    return cache && cache->state.cluster_id == "888";
  }));
  char name[64];
  std::snprintf(name, sizeof name, "/snapshot-%020lld.psnap.superseded", static_cast<long long>(r2));
  EXPECT_TRUE(fs::exists(root_ + "/cache" + name));
}

// While it waits out the delay, a data plane does not download the other cluster's whole snapshot again on
// every round: once to see it, once more when the change is due.
TEST_F(SyncClientTest, WaitingForAClusterChangeFetchesItsSnapshotOnlyWhenDue) {
  int64_t r2 = cluster_->publish(routes({"1"}));
  cache_state(r2);
  Cluster replaced(root_);
  replaced.id = "777";
  replaced.publish(routes({"5"}, "new"));
  FakeCp cp(replaced);
  Applied applied;
  SyncOptions o = options({cp.url()});
  o.cluster_change_delay = 2;
  SyncClient c(o, verifier(), applied.fn());
  ASSERT_TRUE(c.start_from_cache());
  c.start();
  ASSERT_TRUE(eventually([&] { return c.status().cluster_id == "777"; }, 15));
  EXPECT_LE(cp.count("/portico/v1/snapshot"), 2);
}

// The /changes answer is taken apart without a DOM of the whole: any member order and whitespace, values
// canonicalized one by one, and every malformed shape refused with a reason.
TEST(SyncChangesAnswer, ParsesWithoutADom) {
  detail::ChangesAnswer a;
  std::string error;
  ASSERT_TRUE(detail::parse_changes_answer(
      R"( { "state" : {"revision":9,"cluster_id":"c"}, "changes" : [ {"value":{"uri":"/a", "id":"1"},)"
      R"("kind":"routes","id":"1"}, {"kind":"upstreams","id":7,"value":null} ], "from":8, "behind":false } )",
      a, error))
      << error;
  EXPECT_EQ(a.envelope["state"]["revision"], 9);
  EXPECT_EQ(a.envelope["from"], 8);
  EXPECT_EQ(a.envelope["behind"], false);
  EXPECT_FALSE(a.envelope.contains("changes"));
  ASSERT_TRUE(a.has_changes);
  ASSERT_EQ(a.changes.size(), 2u);
  EXPECT_EQ(a.changes[0].kind, "routes");
  EXPECT_EQ(a.changes[0].id, "1");
  EXPECT_EQ(a.changes[0].value, std::optional<std::string>(R"({"id":"1","uri":"/a"})"));
  EXPECT_EQ(a.changes[1].id, "7");
  EXPECT_FALSE(a.changes[1].value.has_value());

  ASSERT_TRUE(detail::parse_changes_answer(R"({"changes":[],"state":{}})", a, error)) << error;
  EXPECT_TRUE(a.has_changes && a.changes.empty());
  ASSERT_TRUE(detail::parse_changes_answer(R"({"state":{}})", a, error)) << error;
  EXPECT_FALSE(a.has_changes);

  struct Case {
    std::string body;
    const char* error;
  } cases[] = {
      {"", "not a JSON object"},
      {"[]", "not a JSON object"},
      {R"({"changes":[]} x)", "not a JSON object"},
      {R"({"changes":{}})", "no changes"},
      {R"({"changes":[],"changes":[]})", "two \"changes\""},
      {R"({"changes":[1]})", "a change is not an object"},
      {R"({"changes":[{"kind":"routes","id":"1"}]})", "a malformed change"},
      {R"({"changes":[{"kind":"routes","value":{}}]})", "a malformed change"},
      {R"({"changes":[{"kind":"routes","id":"1","value":{"a":}}]})", "a change's value is not JSON"},
      {R"({"changes":[{"kind":"routes","id":"1","value":{ "a":")" + std::string(kMaxNonCanonicalBytes, 'x') +
           R"("}}]})",
       "a change's value is too large (not canonical)"},
      {R"({"state":")" + std::string(detail::kMaxEnvelopeMember, 'x') + R"("})",
       "a member is not JSON or too large"},
      {R"({"state":tru})", "a member is not JSON or too large"},
      {R"({"state":)" + std::string(1000, '[') + std::string(1000, ']') + "}", "nested too deep"},
  };
  for (const Case& c : cases) {
    EXPECT_FALSE(detail::parse_changes_answer(c.body, a, error)) << c.body.substr(0, 80);
    EXPECT_EQ(error, c.error) << c.body.substr(0, 80);
  }
}

TEST_F(SyncClientTest, StopReturnsPromptlyDuringALongPoll) {
  int64_t r1 = cluster_->publish(routes({"1"}));
  FakeCp cp(*cluster_, /*max_wait=*/30);
  Applied applied;
  SyncOptions o = options({cp.url()});
  o.long_poll = 20;
  SyncClient c(o, verifier(), applied.fn());
  c.start();
  ASSERT_TRUE(at_revision(c, r1));
  ASSERT_TRUE(eventually([&] { return cp.waiting() == 1; }));
  Clock::time_point t0 = Clock::now();
  c.stop();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1500));
}

TEST_F(SyncClientTest, StopBeforeStartAndWithoutControlPlanes) {
  Applied applied;
  auto c = client({}, applied);
  c->stop();
  auto d = client({}, applied);
  d->start();
  Clock::time_point t0 = Clock::now();
  d->stop();
  EXPECT_LT(Clock::now() - t0, std::chrono::milliseconds(1500));
  EXPECT_EQ(d->status().source, Source::none);
}

// The sync thread's cost of a one-route delta at 100k routes of ~300 bytes, Apply excluded: from the control
// plane's answer to the call of Apply (receive, parse, apply, hash, verify), plus from Apply's return to the
// next long poll's arrival at the control plane (cache write handed over, status, report, the new request:
// this harness opens a connection per request). The same at 10 routes is the size-independent part. Cache
// enabled, as on a data plane. Printed; no bound is asserted (the machine may be loaded).
TEST_F(SyncClientTest, Cost100kRoutesDelta) {
  auto ms = [](Clock::duration d) { return std::chrono::duration<double, std::milli>(d).count(); };
  auto measure = [&](ResourceSet set, int rounds, const std::string& cache_dir) {
    Cluster cluster(root_);
    int64_t r0 = cluster.publish(set);
    FakeCp cp(cluster);
    std::mutex mu;
    Clock::time_point apply_start, apply_end;  // guarded by mu
    auto apply = [&](const SignedState&, const ResourceSet&, const SyncClient::Delta*, Source, std::string&) {
      std::lock_guard lock(mu);
      apply_start = apply_end = Clock::now();
      return true;
    };
    SyncOptions o = options({cp.url()});
    o.long_poll = 20;
    o.report_interval = 60;
    o.cache_dir = cache_dir;
    Verifier v;
    std::string error;
    EXPECT_TRUE(v.add_public_key_pem(cluster.signer->public_key_pem(), error)) << error;
    SyncClient c(o, std::move(v), apply);
    c.start();
    EXPECT_TRUE(at_revision(c, r0, 60));
    std::vector<std::string> ids;
    std::map<std::string, std::string> originals;
    for (const ResourceChange& r : ResourceSet::diff(ResourceSet(), set)) {
      ids.push_back(r.id);
      originals[r.id] = *r.value;
    }
    std::vector<double> before, after, total;
    for (int n = 0; n < rounds; ++n) {
      EXPECT_TRUE(eventually([&] { return cp.waiting() == 1; }, 30));
      const std::string& id = ids[n * 7919 % ids.size()];
      std::string value = "{\"_rev\":";  // still canonical: "_rev" sorts first
      value += std::to_string(n);
      value += ',';
      value += originals.at(id).substr(1);
      set.put("routes", id, value);
      int64_t rev = cluster.publish(set);
      EXPECT_TRUE(at_revision(c, rev, 30));
      std::pair<Clock::time_point, Clock::time_point> times;
      EXPECT_TRUE(eventually(
          [&] {
            times = cp.delta_times();
            return times.second != Clock::time_point{};
          },
          30));
      std::lock_guard lock(mu);
      before.push_back(ms(apply_start - times.first));
      after.push_back(ms(times.second - apply_end));
      total.push_back(before.back() + after.back());
      std::lock_guard cluster_lock(cluster.mu);  // keep only what the next delta starts from
      std::erase_if(cluster.states, [rev](const auto& kv) { return kv.first < rev; });
    }
    c.stop();
    for (auto* v : {&before, &after, &total}) std::sort(v->begin(), v->end());
    std::printf("  median %.2f ms (to Apply %.2f ms, after Apply %.2f ms), min %.2f ms, max %.2f ms\n",
                total[total.size() / 2], before[before.size() / 2], after[after.size() / 2], total.front(),
                total.back());
  };
  ResourceSet small;
  for (int i = 0; i < 10; ++i) {
    char id[16], value[64];
    std::snprintf(id, sizeof id, "r%d", i);
    std::snprintf(value, sizeof value, R"({"id":"%s","uri":"/a"})", id);
    small.put("routes", id, value);
  }
  std::printf("one-route delta, sync thread without Apply, 21 deltas:\n");
  std::printf(" 10 routes, cache on:\n");
  measure(small, 21, root_ + "/cache-small");
  ResourceSet big = testing::routes_100k();
  std::printf(" 100k routes, cache off:\n");
  measure(big, 21, "");
  std::printf(" 100k routes, cache on:\n");
  measure(big, 21, root_ + "/cache-big");
}

}  // namespace
}  // namespace portico::sync
