#include "controlplane/control_plane.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <set>
#include <sstream>
#include <stdexcept>

#include "base/json_escape.h"
#include "base/log.h"
#include "controlplane/admin_service.h"
#include "controlplane/plugins_api.h"
#include "controlplane/s3_exporter.h"
#include "controlplane/sync_service.h"
#include "store/compactor.h"
#include "store/etcd_client.h"
#include "store/mirror.h"

namespace portico::controlplane {

using base::json_escape;

namespace {

// The key's directory: created private (0700) when missing; an existing one is left as the operator set it.
void make_private_dir(const std::string& dir) {
  std::error_code ec;
  if (std::filesystem::exists(dir, ec)) return;
  std::filesystem::create_directories(dir, ec);
  if (ec) throw std::runtime_error("cannot create directory " + dir + ": " + ec.message());
  std::filesystem::permissions(dir, std::filesystem::perms::owner_all, ec);
}

}  // namespace

std::string load_or_generate_key(const std::string& path, bool generate, bool& generated) {
  generated = false;
  std::ifstream in(path);
  if (!in) {
    if (errno != ENOENT || !generate) {
      throw std::runtime_error("cannot read key file " + path + ": " + std::strerror(errno));
    }
    size_t slash = path.rfind('/');
    if (slash != std::string::npos && slash > 0) make_private_dir(path.substr(0, slash));
    unsigned char raw[32];
    if (RAND_bytes(raw, sizeof raw) != 1) throw std::runtime_error("no randomness for a new admin key");
    static const char kHex[] = "0123456789abcdef";
    std::string key;
    for (unsigned char b : raw) {
      key += kHex[b >> 4];
      key += kHex[b & 15];
    }
    // O_EXCL: never overwrite a key another process has just written.
    int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 && errno == EEXIST)
      return load_or_generate_key(path, false, generated);  // another process won
    if (fd < 0) throw std::runtime_error("cannot create key file " + path + ": " + std::strerror(errno));
    std::string line = key + "\n";
    bool ok = ::write(fd, line.data(), line.size()) == static_cast<ssize_t>(line.size()) && ::fsync(fd) == 0;
    ::close(fd);
    if (!ok) throw std::runtime_error("cannot write key file " + path);
    generated = true;
    return key;
  }
  std::stringstream text;
  text << in.rdbuf();
  std::string key = text.str();
  auto blank = [](char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; };
  while (!key.empty() && blank(key.back())) key.pop_back();
  size_t start = 0;
  while (start < key.size() && blank(key[start])) ++start;
  key.erase(0, start);
  if (key.size() < 16 || key.size() > 256) {
    throw std::runtime_error("key file " + path + " must hold one key of 16 to 256 characters (it holds " +
                             std::to_string(key.size()) + ")");
  }
  for (char c : key) {
    if (static_cast<unsigned char>(c) <= 0x20 || static_cast<unsigned char>(c) >= 0x7f) {
      throw std::runtime_error("key file " + path + " must hold one key of printable characters, no spaces");
    }
  }
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0 && (st.st_mode & 0077) != 0) {
    PORTICO_LOG(warn, "key file %s is readable by group or others (mode %o); chmod 600 it", path.c_str(),
                st.st_mode & 0777);
  }
  return key;
}

// The node ids a sync client certificate may name. Read by the sync server's threads, replaced on SIGHUP.
class NodeAllowList {
 public:
  void set(std::vector<std::string> ids) {
    std::set<std::string> next(std::make_move_iterator(ids.begin()), std::make_move_iterator(ids.end()));
    std::lock_guard lock(mutex_);
    ids_ = std::move(next);
  }
  bool contains(const std::string& id) const {
    std::lock_guard lock(mutex_);
    return ids_.count(id) != 0;
  }

 private:
  mutable std::mutex mutex_;
  std::set<std::string> ids_;
};

struct ControlPlane::Impl {
  ControlPlaneOptions options;
  std::shared_ptr<NodeAllowList> allowed_nodes = std::make_shared<NodeAllowList>();
  std::unique_ptr<store::EtcdClient> etcd;
  std::unique_ptr<store::EtcdClient> fast_etcd;
  std::unique_ptr<ResourceStore> copy;
  std::unique_ptr<store::Mirror> mirror;
  std::unique_ptr<store::Compactor> compactor;
  std::unique_ptr<AdminService> service;
  std::unique_ptr<admin::AdminServer> server;
  std::unique_ptr<sync::Signer> signer;
  std::unique_ptr<SyncService> sync_service;
  std::unique_ptr<admin::AdminServer> sync_server;
  std::unique_ptr<S3Exporter> exporter;
};

std::vector<admin::AdminKey> load_dp_tokens(const std::string& path) {
  std::ifstream in(path);
  if (!in)
    throw std::runtime_error("cannot read data-plane tokens file " + path + ": " + std::strerror(errno));
  std::vector<admin::AdminKey> keys;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::stringstream fields(line);
    std::string node, token, extra;
    fields >> node;
    if (node.empty() || node[0] == '#') continue;
    fields >> token >> extra;
    const std::string where = path + ":" + std::to_string(number);
    if (token.empty() || !extra.empty()) throw std::runtime_error(where + ": expected '<node-id> <token>'");
    if (!valid_id(node)) throw std::runtime_error(where + ": node id must be " + std::string(kIdRule));
    if (token.size() < 16) throw std::runtime_error(where + ": the token must be at least 16 characters");
    for (const admin::AdminKey& k : keys) {
      if (k.name == node) throw std::runtime_error(where + ": node id " + node + " appears twice");
    }
    keys.push_back(admin::AdminKey{token, admin::Role::data_plane, node});
  }
  return keys;
}

std::vector<std::string> load_node_ids(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot read node allow-list " + path + ": " + std::strerror(errno));
  std::vector<std::string> ids;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    std::stringstream fields(line);
    std::string node, extra;
    fields >> node;
    if (node.empty() || node[0] == '#') continue;
    fields >> extra;
    const std::string where = path + ":" + std::to_string(number);
    if (!extra.empty()) throw std::runtime_error(where + ": expected one node id");
    if (!valid_id(node)) throw std::runtime_error(where + ": node id must be " + std::string(kIdRule));
    ids.push_back(node);
  }
  return ids;
}

namespace {

// The ids sync client certificates may name: the allow-list file, else the tokens file's ids.
std::vector<std::string> certificate_node_ids(const ControlPlaneOptions& o) {
  if (!o.sync_tls_allowed_nodes_file.empty()) return load_node_ids(o.sync_tls_allowed_nodes_file);
  std::vector<std::string> ids;
  if (!o.dp_tokens_file.empty()) {
    for (admin::AdminKey& k : load_dp_tokens(o.dp_tokens_file)) ids.push_back(std::move(k.name));
  }
  return ids;
}

}  // namespace

// The Admin API keys: the admin key (generated when missing and `generate`) and the viewer key, if any.
std::vector<admin::AdminKey> admin_keys(const ControlPlaneOptions& o, bool generate) {
  std::string admin_path = o.admin_key_file.empty() ? o.state_dir + "/admin.key" : o.admin_key_file;
  bool generated = false;
  std::vector<admin::AdminKey> keys;
  keys.push_back(
      admin::AdminKey{load_or_generate_key(admin_path, generate, generated), admin::Role::admin, "admin"});
  if (generated) {
    PORTICO_LOG(warn, "no admin key was configured: generated one and wrote it to %s (mode 0600)",
                admin_path.c_str());
  }
  if (!o.viewer_key_file.empty()) {
    bool unused = false;
    keys.push_back(admin::AdminKey{load_or_generate_key(o.viewer_key_file, false, unused),
                                   admin::Role::viewer, "viewer"});
  }
  return keys;
}

ControlPlane::ControlPlane(ControlPlaneOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->options = std::move(options);
  while (impl_->options.etcd_prefix.size() > 1 && impl_->options.etcd_prefix.back() == '/') {
    impl_->options.etcd_prefix.pop_back();
  }
  impl_->copy = std::make_unique<ResourceStore>(impl_->options.etcd_prefix);
}

ControlPlane::~ControlPlane() {
  stop();
}

ResourceStore& ControlPlane::copy() {
  return *impl_->copy;
}

bool ControlPlane::ready() const {
  return impl_->copy->loaded();
}

void ControlPlane::start() {
  Impl& s = *impl_;
  ControlPlaneOptions& o = s.options;
  if (o.etcd_endpoints.empty()) throw std::runtime_error("--etcd-endpoints is required for this role");
  if (o.etcd_prefix.empty() || o.etcd_prefix[0] != '/') {
    throw std::runtime_error("--etcd-prefix must start with '/'");
  }

  o.admin.keys = admin_keys(o, true);

  store::EtcdOptions eo;
  eo.endpoints = o.etcd_endpoints;
  eo.ca_file = o.etcd_ca_file;
  eo.cert_file = o.etcd_cert_file;
  eo.key_file = o.etcd_key_file;
  s.etcd = std::make_unique<store::EtcdClient>(eo);
  store::EtcdOptions fast = eo;
  fast.retry_deadline = 1.5;
  s.fast_etcd = std::make_unique<store::EtcdClient>(fast);

  ResourceStore* copy = s.copy.get();
  store::MirrorCallbacks callbacks;
  callbacks.on_reset = [copy](const store::ResponseHeader& h, std::vector<store::KeyValue> all) {
    copy->reset(h, std::move(all));
  };
  callbacks.on_events = [copy](const store::ResponseHeader& h, std::vector<store::WatchEvent>& events) {
    copy->apply(h, events);
  };
  callbacks.on_connection = [copy](bool connected, const std::string& why) {
    copy->set_connected(connected, why);
    if (connected) {
      PORTICO_LOG(info, "etcd connected: the config copy is current");
    } else {
      PORTICO_LOG(warn, "etcd unreachable (%s): serving the last copy, marked stale; writes answer 503",
                  why.c_str());
    }
  };
  s.mirror = std::make_unique<store::Mirror>(*s.etcd, o.etcd_prefix + "/", std::move(callbacks));
  // Behind the mirror's horizon: the only watch and the only reads at a past revision (a full read's pages)
  // are the mirror's. The fast client: a compaction never holds up stop() for long.
  store::Mirror* mirror = s.mirror.get();
  s.compactor = std::make_unique<store::Compactor>(
      *s.fast_etcd, [mirror] { return mirror->horizon(); },
      store::CompactorOptions{o.compaction_interval, o.compaction_retention});
  s.service = std::make_unique<AdminService>(*s.etcd, *s.fast_etcd, *s.mirror, *s.copy);

  // Signed states for data planes: every replica must be given the same key (docs/sync-protocol.md).
  std::string signing_path = o.signing_key_file.empty() ? o.state_dir + "/signing.key" : o.signing_key_file;
  bool signing_generated = false;
  s.signer = sync::Signer::load_or_generate(signing_path, true, signing_generated);
  {
    size_t slash = signing_path.rfind('/');
    std::string pub =
        (slash == std::string::npos ? std::string() : signing_path.substr(0, slash + 1)) + "signing.pub";
    std::ofstream(pub) << s.signer->public_key_pem();
    // The key matters only once something outside this process verifies it (data planes, the S3
    // fallback); before that a generated key is routine, not a warning.
    const bool key_handed_out =
        !o.dp_tokens_file.empty() || !o.sync_tls.client_ca_file.empty() || !o.s3.endpoint.empty();
    if (signing_generated && key_handed_out) {
      PORTICO_LOG(warn,
                  "no signing key was configured: generated one in %s; give every control plane the same "
                  "key, and data planes its public half (%s)",
                  signing_path.c_str(), pub.c_str());
    } else if (signing_generated) {
      PORTICO_LOG(info,
                  "generated a signing key in %s for data planes (none configured yet); its public half "
                  "is %s",
                  signing_path.c_str(), pub.c_str());
    }
  }
  SyncServiceOptions so;
  so.fleet_prefix = o.etcd_prefix + "-fleet/";
  so.name = o.sync_listen;
  // The fast client: fleet records are best effort (a failed write is retried an interval later), and neither
  // a report nor stop() should wait out the full retry deadline while etcd is away.
  s.sync_service = std::make_unique<SyncService>(*s.copy, *s.fast_etcd, *s.signer, so);
  if (!o.s3.endpoint.empty()) {
    S3ExporterOptions eo;
    eo.s3 = o.s3;
    eo.prefix = o.s3_prefix;
    eo.keep = o.s3_keep;
    eo.lease_ttl = o.s3_lease_ttl;
    eo.election_key = o.etcd_prefix + "-leader/s3-export";
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    eo.name = host;
    eo.name += " pid ";
    eo.name += std::to_string(::getpid());
    eo.name += " (admin ";
    eo.name += o.admin.listen;
    eo.name += ')';
    SyncService* publisher = s.sync_service.get();
    // The fast client: a keepalive that cannot reach etcd must fail well within the lease.
    s.exporter = std::make_unique<S3Exporter>(
        *s.fast_etcd, [publisher](int64_t& revision) { return publisher->current_snapshot(revision); }, eo);
    S3Exporter* exporter = s.exporter.get();
    publisher->on_publish([exporter](int64_t revision) { exporter->notify(revision); });
  }
  if (!o.dp_tokens_file.empty() || !o.sync_tls.client_ca_file.empty()) {
    if (!o.sync_tls.client_ca_file.empty() && !o.sync_tls.enabled())
      throw std::runtime_error("--sync-tls-client-ca needs --sync-tls-cert and --sync-tls-key");
    admin::AdminServerOptions sync_options;
    sync_options.tls = o.sync_tls;
    if (!o.sync_tls.client_ca_file.empty()) {
      // Mutual TLS: a verified certificate names the node, as a token's line does.
      sync_options.tls.certificate_authenticates = true;
      sync_options.tls.certificate_role = admin::Role::data_plane;
      sync_options.tls.require_client_cert = o.dp_tokens_file.empty();
      if (o.dp_tokens_file.empty() && o.sync_tls_allowed_nodes_file.empty())
        throw std::runtime_error(
            "--sync-tls-client-ca needs --sync-tls-allowed-nodes or --dp-tokens-file "
            "(the node ids a certificate may name)");
      s.allowed_nodes->set(certificate_node_ids(o));
      const std::string list =
          o.sync_tls_allowed_nodes_file.empty() ? o.dp_tokens_file : o.sync_tls_allowed_nodes_file;
      sync_options.tls.check_identity = [allowed = s.allowed_nodes, list](const std::string& id) {
        if (!valid_id(id))
          return "the client certificate's identity is not a node id (" + std::string(kIdRule) + ")";
        if (!allowed->contains(id))
          return "the client certificate's identity " + id + " is not an allowed data plane (" + list + ")";
        return std::string();
      };
    }
    sync_options.listen = o.sync_listen;
    sync_options.allow_admin = o.sync_allow;
    sync_options.path_prefix = "/portico/v1";
    sync_options.key_scheme = admin::KeyScheme::bearer;
    if (!o.dp_tokens_file.empty()) sync_options.keys = load_dp_tokens(o.dp_tokens_file);
    // Long polls wait without a thread (admin::Deferred); the pool serves snapshots, reports and answers.
    sync_options.handler_threads = 8;
    sync_options.max_connections = 16384;  // every data plane holds one or two connections
    // Many data planes may share one source address (NAT, a node running several) and reconnect at once
    // after a control plane restarts: the unauthenticated caps are wide here. What bounds an attacker is
    // the head deadline and that the oldest unauthenticated connection makes room for a newcomer. listen()
    // lowers these caps to fit the descriptor limit.
    sync_options.max_unauthenticated = 4096;
    sync_options.max_unauthenticated_per_source = 1024;
    sync_options.max_body_size = kSyncMaxBody;  // only reports have a body: a few hundred bytes
    SyncService* sync_service = s.sync_service.get();
    s.sync_server = std::make_unique<admin::AdminServer>(
        sync_options, [sync_service](const admin::AdminRequest& r) { return sync_service->handle(r); });
    s.sync_server->listen();
  }

  AdminService* service = s.service.get();
  SyncService* fleet = s.sync_service.get();
  s.server = std::make_unique<admin::AdminServer>(o.admin, [service, fleet](const admin::AdminRequest& r) {
    if (r.path.starts_with("/data_planes")) return fleet->fleet(r);
    if (is_plugins_request(r)) return plugins_api(r);
    return service->handle(r);
  });
  s.server->listen();
  s.mirror->start();
  s.compactor->start();
  s.sync_service->start();
  if (s.exporter) s.exporter->start();
  s.server->start();
  if (s.sync_server) {
    s.sync_server->start();
    std::string auth = o.dp_tokens_file;
    if (!o.sync_tls.client_ca_file.empty())
      auth += (auth.empty() ? "" : ", ") + std::string("client certificates of ") +
              o.sync_tls.client_ca_file + " naming a node of " +
              (o.sync_tls_allowed_nodes_file.empty() ? o.dp_tokens_file : o.sync_tls_allowed_nodes_file);
    PORTICO_LOG(info, "data-plane sync on %s%s (%s)", o.sync_tls.enabled() ? "https://" : "",
                o.sync_listen.c_str(), auth.c_str());
  }
  std::string allowed;
  for (const std::string& c : o.admin.allow_admin) allowed += (allowed.empty() ? "" : ",") + c;
  PORTICO_LOG(info, "Admin API on %s%s (allowed clients: %s); etcd %s prefix %s",
              o.admin.tls.enabled() ? "https://" : "", o.admin.listen.c_str(), allowed.c_str(),
              o.etcd_endpoints.front().c_str(), o.etcd_prefix.c_str());
}

void ControlPlane::reload_keys() {
  Impl& s = *impl_;
  try {
    if (s.server) s.server->set_keys(admin_keys(s.options, false));
    PORTICO_LOG(info, "admin keys reloaded");
  } catch (const std::exception& e) {
    PORTICO_LOG(error, "admin keys not reloaded, the previous ones stay in force: %s", e.what());
  }
  // Certificates too (a renewed one applies to the next handshake).
  for (admin::AdminServer* server : {s.server.get(), s.sync_server.get()}) {
    if (server == nullptr) continue;
    try {
      server->reload_tls();
    } catch (const std::exception& e) {
      PORTICO_LOG(error, "TLS files not reloaded, the previous ones stay in force: %s", e.what());
    }
  }
  if (s.sync_server && !s.options.sync_tls.client_ca_file.empty()) {
    try {
      s.allowed_nodes->set(certificate_node_ids(s.options));
      PORTICO_LOG(info, "data-plane certificate allow-list reloaded");
    } catch (const std::exception& e) {
      PORTICO_LOG(error, "data-plane allow-list not reloaded, the previous one stays in force: %s", e.what());
    }
  }
  if (!s.sync_server || s.options.dp_tokens_file.empty()) return;
  try {
    std::vector<admin::AdminKey> tokens = load_dp_tokens(s.options.dp_tokens_file);
    const size_t n = tokens.size();
    if (s.sync_server->set_keys(std::move(tokens))) {
      PORTICO_LOG(info, "data-plane tokens reloaded from %s: %zu nodes", s.options.dp_tokens_file.c_str(), n);
    } else {
      PORTICO_LOG(error, "%s lists no data plane; the previous tokens stay in force",
                  s.options.dp_tokens_file.c_str());
    }
  } catch (const std::exception& e) {
    PORTICO_LOG(error, "data-plane tokens not reloaded, the previous ones stay in force: %s", e.what());
  }
}

void ControlPlane::stop() {
  if (impl_->exporter) impl_->exporter->stop();  // steps down, so another replica exports at once
  if (impl_->service) impl_->service->stop();    // writes queued behind a slow etcd answer 503 at once
  if (impl_->sync_service) impl_->sync_service->stop();  // first: answers the waiting long polls at once
  if (impl_->sync_server) impl_->sync_server->stop();
  if (impl_->server) impl_->server->stop();
  if (impl_->compactor) impl_->compactor->stop();
  if (impl_->mirror) impl_->mirror->stop();
}

std::string ControlPlane::status_fields() const {
  const ResourceStore& c = *impl_->copy;
  std::string out =
      "\"revision\":" + std::to_string(c.revision()) + ",\"stale\":" + (c.stale() ? "true" : "false");
  out += ",\"stale_reason\":\"" + json_escape(c.stale_reason()) + "\"";
  out += ",\"etcd_cluster_id\":\"" + std::to_string(c.cluster_id()) + "\"";
  out += ",\"etcd_endpoint\":\"" +
         (impl_->etcd ? json_escape(impl_->etcd->current_endpoint()) : std::string()) + "\"";
  out += ",\"admin_listen\":\"" + json_escape(impl_->options.admin.listen) + "\"";
  if (impl_->compactor)
    out += ",\"etcd_compacted_revision\":" + std::to_string(impl_->compactor->compacted());
  if (impl_->sync_service) {
    out += ",\"published_revision\":" + std::to_string(impl_->sync_service->published_revision());
    out += ",\"published_hash\":\"" + impl_->sync_service->published_hash() + "\"";
  }
  if (impl_->exporter) {
    out += ",\"s3_export\":";
    out += impl_->exporter->status_json();
  }
  out += ",\"resources\":{";
  for (size_t k = 0; k < kKindCount; ++k) {
    if (k) out += ',';
    out += '"';
    out += kKinds[k].name;
    out += "\":";
    out += std::to_string(c.count(kKinds[k].kind));
  }
  out += "},\"rejected_keys\":[";
  bool first = true;
  for (const RejectedKey& r : c.rejected()) {
    if (!first) out += ',';
    out += "{\"key\":\"";
    out += json_escape(r.key);
    out += "\",\"reason\":\"";
    out += json_escape(r.reason);
    out += "\"}";
    first = false;
  }
  out += "]";
  return out;
}

}  // namespace portico::controlplane
