#include "server/server.h"

#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <optional>
#include <thread>
#include <vector>

#include "base/accept_backoff.h"
#include "base/endpoint.h"
#include "base/json_escape.h"
#include "base/log.h"
#include "config/loader.h"
#include "plugins/limits.h"
#include "proxy/access_log.h"
#include "proxy/worker.h"
#include "redis/registry.h"
#include "server/config_applier.h"
#include "server/keyring.h"
#include "status/metrics.h"
#include "status/status_server.h"
#include "tls/server_context.h"
#include "upstream/health.h"
#include "upstream/health_checker.h"

namespace portico::server {

using base::json_escape;

static const char* role_name(Role role) {
  switch (role) {
    case Role::traditional:
      return "traditional";
    case Role::control_plane:
      return "control_plane";
    case Role::data_plane:
      return "data_plane";
    default:
      return "standalone";
  }
}

struct Server::Impl {
  Role role = Role::standalone;
  proxy::Options options;
  std::unique_ptr<controlplane::ControlPlane> control_plane;
  sync::SyncOptions sync_options;
  std::vector<std::string> trusted_keys;
  std::string keyring_file;
  std::string upstream_ca_file;
  std::string state_dir;
  std::unique_ptr<sync::SyncClient> sync_client;
  std::unique_ptr<status::Metrics> metrics;
  // The rate limits' local counters: outlive every snapshot and session (declared before workers).
  plugins::LimitStores limits;
  upstream::HealthRegistry health;
  upstream::ActiveHealthChecker checker;
  std::unique_ptr<tls::ServerContext> tls;  // --listen-tls; declared first: outlives the workers
  std::vector<std::unique_ptr<proxy::Worker>> workers;
  // Destroyed before the workers: its clients live on their io_contexts.
  std::unique_ptr<redis::Registry> redis = std::make_unique<redis::Registry>();
  std::unique_ptr<ConfigApplier> applier;
  std::unique_ptr<status::StatusServer> status_server;
  std::atomic<bool> draining{false};
  int access_log_fd = -1;

  std::string health_metrics() const;
  bool ready(bool has_config, std::string& reason) const;
  std::string config_json() const;
  bool drain_and_wait();
  int run_control_plane(const sigset_t& signals);
};

std::string Server::Impl::health_metrics() const {
  std::string out;
  if (sync_client) {
    sync::SyncStatus st = sync_client->status();
    const double now =
        std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    char buf[1024];
    std::snprintf(
        buf, sizeof buf,
        "# HELP portico_sync_revision Control-plane revision of the config being served.\n"
        "# TYPE portico_sync_revision gauge\nportico_sync_revision %lld\n"
        "# HELP portico_sync_seconds_since_success Seconds since the last successful exchange with a "
        "control plane (-1: never).\n"
        "# TYPE portico_sync_seconds_since_success gauge\nportico_sync_seconds_since_success %.3f\n"
        "# HELP portico_sync_errors_total Failed syncs and refused configs.\n"
        "# TYPE portico_sync_errors_total counter\nportico_sync_errors_total %llu\n"
        "# HELP portico_sync_connected 1 when the last exchange with a control plane succeeded.\n"
        "# TYPE portico_sync_connected gauge\nportico_sync_connected %d\n"
        "# HELP portico_config_source Where the config being served came from.\n"
        "# TYPE portico_config_source gauge\nportico_config_source{source=\"%s\"} 1\n",
        static_cast<long long>(st.revision), st.last_sync > 0 ? now - st.last_sync : -1.0,
        static_cast<unsigned long long>(st.sync_errors), st.connected ? 1 : 0, sync::source_name(st.source));
    out += buf;
  }
  out +=
      "# HELP portico_upstream_node_healthy Health of each upstream node (1 healthy, 0 ejected).\n"
      "# TYPE portico_upstream_node_healthy gauge\n";
  for (const auto& e : health.list()) {
    out += "portico_upstream_node_healthy{upstream=\"" + json_escape(e.upstream_key) + "\",node=\"" +
           json_escape(e.node_key) + "\"} " + (e.healthy ? "1" : "0") + "\n";
  }
  return out;
}

// /readyz: 200 only while the process can serve, so a load balancer sends nothing it would time out on.
bool Server::Impl::ready(bool has_config, std::string& reason) const {
  if (draining.load()) {
    reason = "draining";
    return false;
  }
  if (!has_config) {
    reason = role == Role::control_plane ? "the control plane is not ready" : "no valid config yet";
    return false;
  }
  // Out of descriptors or kernel memory, or accept() failing otherwise: a listener waiting to accept again
  // takes no new connection. The reason names each cause.
  if (std::string paused = base::AcceptBackoff::paused_reason(); !paused.empty()) {
    reason = std::move(paused);
    return false;
  }
  return true;
}

std::string Server::Impl::config_json() const {
  std::string cp = control_plane ? control_plane->status_fields() + "," : std::string();
  if (sync_client) {
    sync::SyncStatus st = sync_client->status();
    char buf[256];
    std::snprintf(buf, sizeof buf,
                  "\"sync_revision\":%lld,\"last_sync\":%.3f,\"sync_errors\":%llu,\"connected\":%s,",
                  static_cast<long long>(st.revision), st.last_sync,
                  static_cast<unsigned long long>(st.sync_errors), st.connected ? "true" : "false");
    cp += buf;
    cp += "\"sync_source\":\"" + std::string(sync::source_name(st.source)) + "\",\"sync_hash\":\"" +
          st.content_hash + "\",\"cluster_id\":\"" + json_escape(st.cluster_id) + "\",\"control_plane\":\"" +
          json_escape(st.control_plane) + "\",\"sync_error\":\"" + json_escape(st.last_error) + "\",";
  }
  std::string role_field = "\"role\":\"" + std::string(role_name(role)) + "\",";
  if (!applier) return "{" + role_field + cp + "\"draining\":" + (draining.load() ? "true" : "false") + "}\n";
  ApplierStatus s = applier->status();
  char times[128];
  std::snprintf(times, sizeof times, "\"last_success\":%.3f,\"last_failure\":%.3f", s.last_success,
                s.last_failure);
  return "{" + role_field + cp + "\"generation\":" + std::to_string(s.generation) + ",\"hash\":\"" + s.hash +
         "\",\"routes\":" + std::to_string(s.routes) + ",\"source\":\"" + s.source + "\",\"path\":\"" +
         json_escape(options.config_path) + "\",\"config_revision\":" + std::to_string(s.revision) +
         ",\"last_error\":\"" + json_escape(s.last_error) + "\"," + times +
         ",\"draining\":" + (draining.load() ? "true" : "false") + "}\n";
}

Server::Server(ServerOptions options) : impl_(std::make_unique<Impl>()) {
  impl_->role = options.role;
  impl_->options = std::move(options.proxy);
  impl_->sync_options = std::move(options.data_plane);
  impl_->trusted_keys = std::move(options.trusted_keys);
  impl_->keyring_file = std::move(options.keyring_file);
  impl_->upstream_ca_file = std::move(options.upstream_ca_file);
  impl_->state_dir = options.control_plane.state_dir;
  if (options.role == Role::traditional || options.role == Role::control_plane) {
    impl_->control_plane = std::make_unique<controlplane::ControlPlane>(std::move(options.control_plane));
  }
}

Server::~Server() = default;

int Server::run() {
  Impl& s = *impl_;
  const proxy::Options& opt = s.options;

  // Signals are taken synchronously by this thread (sigwait); every other thread inherits the mask.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGHUP);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
  // Before anything reads a configuration: every consumer secret is decrypted (or encrypted) with it.
  if (!install_keyring(s.role, s.keyring_file, s.state_dir)) return 1;
  if (!s.upstream_ca_file.empty()) {
    std::string error;
    tls::ClientTlsSpec probe;
    probe.verify = true;
    probe.ca_file = s.upstream_ca_file;
    if (!tls::ClientContext::build(probe, &error)) {
      PORTICO_LOG(error, "--upstream-ca-file: %s", error.c_str());
      return 1;
    }
  }
  if (s.role == Role::control_plane) return s.run_control_plane(signals);

  unsigned workers = opt.workers ? opt.workers : std::max(1u, std::thread::hardware_concurrency());
  s.metrics = std::make_unique<status::Metrics>(workers);
  s.access_log_fd = proxy::open_access_log(opt.access_log);
  if (opt.access_log != "off" && s.access_log_fd < 0) {
    PORTICO_LOG(error, "cannot open access log %s", opt.access_log.c_str());
    return 1;
  }

  try {
    auto endpoint = base::parse_endpoint(opt.listen);
    std::optional<boost::asio::ip::tcp::endpoint> tls_endpoint;
    if (!opt.listen_tls.empty()) {
      tls_endpoint = base::parse_endpoint(opt.listen_tls);
      s.tls = std::make_unique<tls::ServerContext>(tls::ServerOptions{opt.tls_default_sni, opt.http2});
    }
    for (unsigned i = 0; i < workers; ++i) {
      s.workers.push_back(std::make_unique<proxy::Worker>(i, opt, *s.metrics, s.access_log_fd));
      s.workers.back()->listen(endpoint);
      if (tls_endpoint) s.workers.back()->listen_tls(*tls_endpoint, *s.tls);
      s.redis->attach_worker(i, s.workers.back()->context());
    }
    s.status_server = std::make_unique<status::StatusServer>(status::StatusHandlers{
        [&s](std::string& reason) { return s.ready(s.applier->has_config(), reason); },
        [&s] { return s.metrics->render(s.health_metrics() + s.redis->render_metrics()); },
        [&s] { return s.config_json(); },
    });
    s.status_server->listen(opt.status_listen);
  } catch (const std::exception& e) {
    PORTICO_LOG(error, "cannot listen: %s", e.what());
    return 1;
  }

  snapshot::BuildContext ctx;
  ctx.workers = workers;
  ctx.health = &s.health;
  ctx.metrics = s.metrics.get();
  ctx.redis = s.redis.get();
  ctx.limits = &s.limits;
  ctx.upstream_ca_file = s.upstream_ca_file;
  s.applier = std::make_unique<ConfigApplier>(opt.config_path, opt.watch_interval, ctx,
                                              [&s](std::shared_ptr<const snapshot::Snapshot> snap) {
                                                s.checker.set_targets(snapshot::probe_targets(*snap));
                                                for (auto& w : s.workers) w->publish(snap);
                                              });
  if (s.control_plane) {
    // Every change of the copy asks for a new snapshot; the applier coalesces bursts into one build.
    controlplane::ControlPlane* cp = s.control_plane.get();
    ConfigApplier* applier = s.applier.get();
    cp->copy().on_change([cp, applier](int64_t revision) {
      applier->submit([cp] { return cp->copy().assemble(); }, "etcd", revision);
    });
    try {
      cp->start();
    } catch (const std::exception& e) {
      PORTICO_LOG(error, "cannot start the control plane: %s", e.what());
      return 1;
    }
    PORTICO_LOG(info,
                "traditional role: the proxy serves the config held in etcd; /readyz answers 503 until "
                "it has been read");
  } else if (s.role == Role::data_plane) {
    sync::Verifier verifier;
    for (const std::string& file : s.trusted_keys) {
      std::string error;
      if (!verifier.add_public_key_file(file, error)) {
        PORTICO_LOG(error, "--trusted-keys %s: %s", file.c_str(), error.c_str());
        return 1;
      }
    }
    ConfigApplier* applier = s.applier.get();
    // What the sync client verified is validated and built by the applier on this (the sync) thread, so a
    // refusal can be reported back. A delta is applied in proportion to its size when it starts from what is
    // served; anything else loads the whole document with the shared loader (the one traditional control
    // planes and files use).
    auto apply = [applier](const sync::SignedState& state, const sync::ResourceSet& set,
                           const sync::SyncClient::Delta* delta, sync::Source source, std::string& error) {
      const std::string source_text = sync::source_name(source);
      if (delta != nullptr) {
        std::vector<snapshot::ResourceChange> changes;
        changes.reserve(delta->changes.size());
        for (const sync::ResourceChange& c : delta->changes) {
          changes.push_back({c.kind, c.id, c.value ? &*c.value : nullptr});
        }
        switch (applier->apply_changes(changes, delta->base_hash, state.content_hash, source_text,
                                       state.revision, error)) {
          case ConfigApplier::DeltaOutcome::applied:
            return true;
          case ConfigApplier::DeltaOutcome::refused:
            error = "refused revision " + std::to_string(state.revision) + ": " + error;
            return false;
          case ConfigApplier::DeltaOutcome::no_base:
            break;
        }
      }
      config::LoadResult loaded = config::parse_text(set.document(), config::Format::json, false);
      loaded.content_hash = state.content_hash;
      if (!applier->apply_config(std::move(loaded), source_text, state.revision, error)) {
        error = "refused revision " + std::to_string(state.revision) + ": " + error;
        return false;
      }
      return true;
    };
    s.sync_client = std::make_unique<sync::SyncClient>(s.sync_options, std::move(verifier), apply);
    if (s.sync_client->start_from_cache()) {
      PORTICO_LOG(info, "data plane: serving the cached config until a control plane answers");
    } else if (!s.sync_options.s3.endpoint.empty()) {
      PORTICO_LOG(warn,
                  "data plane: no valid cached config; /readyz answers 503 and requests get 503 until a "
                  "control plane answers or the S3 fallback (%s/%s/%s) has a valid snapshot",
                  s.sync_options.s3.endpoint.c_str(), s.sync_options.s3.bucket.c_str(),
                  s.sync_options.s3_prefix.c_str());
    } else {
      PORTICO_LOG(warn,
                  "data plane: no valid cached config; /readyz answers 503 and requests get 503 until a "
                  "control plane answers");
    }
  } else if (!s.applier->apply_now()) {
    PORTICO_LOG(warn, "no valid config yet: /readyz answers 503 and requests get 503 until %s is fixed",
                opt.config_path.c_str());
  }
  s.checker.start();
  for (auto& w : s.workers) w->start();
  s.status_server->start();
  s.applier->start();
  if (s.sync_client) s.sync_client->start();
  PORTICO_LOG(info, "portico %s listening on %s with %u workers; status on %s", PORTICO_VERSION,
              opt.listen.c_str(), workers, opt.status_listen.c_str());
  if (!opt.listen_tls.empty()) PORTICO_LOG(info, "TLS listener on %s", opt.listen_tls.c_str());

  while (true) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      if (s.role == Role::data_plane) {
        continue;  // its config comes from control planes, not a file
      } else if (s.control_plane) {
        s.control_plane->reload_keys();
        controlplane::ControlPlane* cp = s.control_plane.get();
        s.applier->submit([cp] { return cp->copy().assemble(); }, "etcd", cp->copy().revision());
      } else {
        s.applier->request_reload();
      }
      continue;
    }
    break;  // SIGTERM / SIGINT
  }
  bool clean = s.drain_and_wait();
  s.redis->shutdown();  // the workers have stopped; their io_contexts are still alive
  if (s.sync_client) s.sync_client->stop();
  if (s.control_plane) s.control_plane->stop();
  s.applier->stop();
  s.checker.stop();
  s.status_server->stop();
  PORTICO_LOG(info, "exiting%s", clean ? "" : " after the drain timeout; remaining connections were closed");
  return 0;
}

int Server::Impl::run_control_plane(const sigset_t& signals) {
  metrics = std::make_unique<status::Metrics>(1);
  try {
    status_server = std::make_unique<status::StatusServer>(status::StatusHandlers{
        [this](std::string& reason) { return ready(control_plane->ready(), reason); },
        [this] { return metrics->render(""); },
        [this] { return config_json(); },
    });
    status_server->listen(options.status_listen);
    control_plane->start();
  } catch (const std::exception& e) {
    PORTICO_LOG(error, "cannot start the control plane: %s", e.what());
    return 1;
  }
  status_server->start();
  PORTICO_LOG(info, "portico %s control plane; status on %s", PORTICO_VERSION, options.status_listen.c_str());
  while (true) {
    int sig = 0;
    if (sigwait(&signals, &sig) != 0) continue;
    if (sig == SIGHUP) {
      control_plane->reload_keys();
      continue;
    }
    break;
  }
  draining.store(true);
  control_plane->stop();
  status_server->stop();
  PORTICO_LOG(info, "exiting");
  return 0;
}

bool Server::Impl::drain_and_wait() {
  // Readiness goes first, so a load balancer stops sending before the listeners close.
  draining.store(true);
  PORTICO_LOG(info, "draining: /readyz now answers 503; listeners close in %.1f s", options.drain_delay);
  auto sleep_for = [](double seconds) {
    std::this_thread::sleep_for(std::chrono::duration<double>(seconds));
  };
  sleep_for(options.drain_delay);
  for (auto& w : workers) w->drain();
  PORTICO_LOG(info, "listeners closed; waiting up to %.1f s for in-flight requests", options.drain_timeout);

  auto deadline =
      std::chrono::steady_clock::now() + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                             std::chrono::duration<double>(options.drain_timeout));
  bool clean = true;
  for (auto& w : workers) {
    while (!w->finished() && std::chrono::steady_clock::now() < deadline) sleep_for(0.02);
    if (!w->finished()) {
      clean = false;
      w->abort();
    }
    w->join();
  }
  return clean;
}

}  // namespace portico::server
