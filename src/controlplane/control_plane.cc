#include "controlplane/control_plane.h"

#include <fcntl.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>

#include "base/log.h"
#include "controlplane/admin_service.h"
#include "store/etcd_client.h"
#include "store/mirror.h"

namespace portico::controlplane {
namespace {

std::string json_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
  }
  return out;
}

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

struct ControlPlane::Impl {
  ControlPlaneOptions options;
  std::unique_ptr<store::EtcdClient> etcd;
  std::unique_ptr<store::EtcdClient> fast_etcd;
  std::unique_ptr<ResourceStore> copy;
  std::unique_ptr<store::Mirror> mirror;
  std::unique_ptr<AdminService> service;
  std::unique_ptr<admin::AdminServer> server;
};

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

  std::string admin_path = o.admin_key_file.empty() ? o.state_dir + "/admin.key" : o.admin_key_file;
  bool generated = false;
  o.admin.keys.clear();
  o.admin.keys.push_back(
      admin::AdminKey{load_or_generate_key(admin_path, true, generated), admin::Role::admin});
  if (generated) {
    PORTICO_LOG(warn, "no admin key was configured: generated one and wrote it to %s (mode 0600)",
                admin_path.c_str());
  }
  if (!o.viewer_key_file.empty()) {
    bool unused = false;
    o.admin.keys.push_back(
        admin::AdminKey{load_or_generate_key(o.viewer_key_file, false, unused), admin::Role::viewer});
  }

  store::EtcdOptions eo;
  eo.endpoints = o.etcd_endpoints;
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
  s.service = std::make_unique<AdminService>(*s.etcd, *s.fast_etcd, *s.mirror, *s.copy);
  AdminService* service = s.service.get();
  s.server = std::make_unique<admin::AdminServer>(
      o.admin, [service](const admin::AdminRequest& r) { return service->handle(r); });
  s.server->listen();
  s.mirror->start();
  s.server->start();
  std::string allowed;
  for (const std::string& c : o.admin.allow_admin) allowed += (allowed.empty() ? "" : ",") + c;
  PORTICO_LOG(info, "Admin API on %s (allowed clients: %s); etcd %s prefix %s", o.admin.listen.c_str(),
              allowed.c_str(), o.etcd_endpoints.front().c_str(), o.etcd_prefix.c_str());
}

void ControlPlane::stop() {
  if (impl_->server) impl_->server->stop();
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
