// Portico entry point: parses the command line into server::ServerOptions and runs the server.
// The request path starts at proxy/worker.cc (accept) and proxy/session.cc (handle_request).
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include <cstring>
#include <string>
#include <vector>

#include "base/log.h"
#include "base/thread_alloc.h"
#include "config/validate.h"  // kMaxSeconds: the validators' bound for durations, here too
#include "proxy/options.h"
#include "server/server.h"

namespace {

const char kUsage[] =
    "usage: portico --config FILE [options]                       (standalone)\n"
    "       portico --role traditional --etcd-endpoints URLS [options]\n"
    "       portico --role control_plane --etcd-endpoints URLS [options]\n"
    "       portico --role data_plane --control-planes URLS --trusted-keys FILE --cp-token-file FILE [...]\n"
    "       (TLS on the Admin API, sync and etcd: docs/tls-control.md)\n"
    "\n"
    "standalone: a reverse proxy serving the routes of a declarative file (APISIX standalone shape, YAML\n"
    "ending with '#END' or .json), reloaded when it changes and on SIGHUP.\n"
    "traditional: the proxy plus the Admin API (/apisix/admin) storing the config in etcd.\n"
    "control_plane: the Admin API only, plus data-plane sync (--dp-tokens-file).\n"
    "data_plane: the proxy, configured by control planes (hybrid sync), from its cache when none answers.\n"
    "\n"
    "  --role ROLE               standalone|traditional|control_plane|data_plane (default standalone)\n"
    "  --config FILE             declarative routes/services/upstreams (standalone; required there)\n"
    "  --etcd-endpoints URLS     comma-separated http(s)://host:port of the etcd members (etcd roles)\n"
    "  --etcd-cacert FILE        PEM CA bundle verifying etcd's certificate (default: the system's)\n"
    "  --etcd-cert FILE          client certificate (PEM) for etcd's --client-cert-auth\n"
    "  --etcd-key FILE           its private key (PEM)\n"
    "  --etcd-prefix PREFIX      etcd key prefix (default /apisix)\n"
    "  --etcd-compaction-interval SECONDS\n"
    "                            compact etcd's history behind what this process has read, every SECONDS;\n"
    "                            0 = never (default 300)\n"
    "  --etcd-compaction-retention N\n"
    "                            revisions that compaction keeps behind what was read (default 10000)\n"
    "  --admin-listen IP:PORT    Admin API listener (default 127.0.0.1:9180)\n"
    "  --allow-admin CIDRS       comma-separated client networks allowed on the Admin API\n"
    "                            (default 127.0.0.0/8,::1/128)\n"
    "  --admin-tls-cert FILE     serve the Admin API over HTTPS with this PEM certificate (and chain)\n"
    "  --admin-tls-key FILE      its private key (PEM); SIGHUP reloads both\n"
    "  --state-dir DIR           state directory; generated keys go here (default portico-state)\n"
    "  --admin-key-file FILE     admin (read/write) key; generated with mode 0600 when missing\n"
    "                            (default STATE_DIR/admin.key)\n"
    "  --viewer-key-file FILE    viewer (read-only) key (default: none)\n"
    "  --data-encryption-keyring FILE\n"
    "                            keyring of consumer secrets at rest (docs/secrets.md), for every role;\n"
    "                            control_plane and traditional default to STATE_DIR/keyring, generated\n"
    "                            (mode 0600) when missing; data planes need the control planes' file\n"
    "  --upstream-ca-file FILE   PEM CA bundle verifying upstream certificates (upstream tls.verify, https\n"
    "                            health checks); default: the system trust store\n"
    "  --sync-listen IP:PORT     data-plane sync listener (default 127.0.0.1:9280)\n"
    "  --dp-tokens-file FILE     '<node-id> <token>' lines; enables the sync listener\n"
    "  --sync-tls-cert FILE      serve data-plane sync over HTTPS with this PEM certificate (and chain)\n"
    "  --sync-tls-key FILE       its private key (PEM); SIGHUP reloads both\n"
    "  --sync-tls-client-ca FILE mutual TLS: data planes may present a certificate signed by this CA in\n"
    "                            place of a token (node id: its first DNS subjectAltName; its CN only\n"
    "                            without a SAN extension); enables the sync listener; required of every\n"
    "                            data plane without --dp-tokens-file\n"
    "  --sync-tls-allowed-nodes FILE  node ids (one a line) a client certificate may name; default: the\n"
    "                            ids of --dp-tokens-file (one of the two is required with\n"
    "                            --sync-tls-client-ca); SIGHUP reloads it\n"
    "  --signing-key-file FILE   Ed25519 key signing configs for data planes (default "
    "STATE_DIR/signing.key,\n"
    "                            generated when missing; its public half is written beside it as "
    "signing.pub)\n"
    "  --control-planes URLS     data_plane: comma-separated http(s)://host:port of control-plane sync "
    "listeners\n"
    "  --node-id ID              data_plane: this node's id (default: the host name)\n"
    "  --cp-token-file FILE      data_plane: bearer token for the control planes (or --cp-tls-cert)\n"
    "  --cp-tls-ca FILE          data_plane: PEM CA bundle verifying https:// control planes (default: the\n"
    "                            system's); the host name or IP address of each URL is checked\n"
    "  --cp-tls-cert FILE        data_plane: client certificate (PEM) for mutual TLS with control planes\n"
    "  --cp-tls-key FILE         data_plane: its private key (PEM)\n"
    "  --trusted-keys FILES      data_plane: comma-separated files of trusted control-plane public keys\n"
    "  --cache-dir DIR           data_plane: last-known-good config cache (default STATE_DIR/cache)\n"
    "  --cluster-change-delay S  data_plane: control planes must serve another etcd cluster this long, and\n"
    "                            none ours, before this data plane follows it (default 30)\n"
    "  --cache-interval SECONDS  data_plane: at most one cache write per interval, the newest state (default "
    "1)\n"
    "  --s3-endpoint URL         S3 fallback: http(s)://host:port of an S3-compatible store (path-style);\n"
    "                            control planes export signed snapshots there (one elected replica),\n"
    "                            data planes load the newest valid one when nothing else is available\n"
    "  --s3-bucket NAME          S3 fallback: the bucket (required with --s3-endpoint)\n"
    "  --s3-region REGION        S3 fallback: SigV4 signing region (default us-east-1)\n"
    "  --s3-credentials-file F   S3 fallback: line 1 the access key, line 2 the secret key (required)\n"
    "  --s3-prefix PREFIX        S3 fallback: object key prefix (default portico/)\n"
    "  --s3-keep N               S3 fallback: snapshots the exporting control plane keeps (default 10)\n"
    "  --s3-lease-ttl SECONDS    S3 fallback: export election lease; a dead exporter is replaced within\n"
    "                            about this long (default 10)\n"
    "  --listen IP:PORT          proxy listener (default 0.0.0.0:9080)\n"
    "  --listen-tls IP:PORT      TLS proxy listener, certificates from ssls (default: none)\n"
    "  --tls-default-sni NAME    certificate for a ClientHello without SNI; an unknown SNI is refused "
    "(default:\n"
    "                            none: the handshake fails with unrecognized_name)\n"
    "  --tls-handshake-timeout SEC  deadline for a TLS handshake from the accept (default 10)\n"
    "  --http2 on|off            HTTP/2 on the TLS listener, ALPN h2 (default on)\n"
    "  --h2c on|off              HTTP/2 with prior knowledge on the plain listener (default on)\n"
    "  --http2-max-requests N    requests per HTTP/2 connection, then a graceful GOAWAY (default 1000, as\n"
    "                            nginx's keepalive_requests; clients open a new connection)\n"
    "  --status-listen IP:PORT   /healthz /readyz /metrics /status/config (default 127.0.0.1:9091)\n"
    "  --workers N               worker threads, one event loop each (default: number of CPUs)\n"
    "  --access-log PATH|-|off   JSON-lines access log (default '-' = stdout)\n"
    "  --error-log PATH          error log (default stderr)\n"
    "  --log-level LEVEL         debug|info|warn|error (default info)\n"
    "  --drain-delay SECONDS     after SIGTERM, /readyz is 503 this long before listeners close (default 3)\n"
    "  --drain-timeout SECONDS   then in-flight requests get this long to finish (default 30)\n"
    "  --max-header-size BYTES   request head limit, 431 above (default 65536)\n"
    "  --max-target-size BYTES   request-target limit, 414 above (default 8192)\n"
    "  --max-body-size BYTES     default request body limit, 413 above (default: none)\n"
    "  --keepalive-timeout SEC   idle client connection timeout (default 60)\n"
    "  --header-timeout SEC      deadline for a whole request head from its first byte, 408 after (default "
    "30)\n"
    "  --send-timeout SEC        a client that reads nothing for this long is dropped (default 60)\n"
    "  --watch-interval SEC      config file poll period (default 1)\n"
    "  --version                 print the version\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "portico: %s\n\n%s", message.c_str(), kUsage);
  std::exit(2);
}

// Every option is listed in kUsage, so the usage text doubles as the list of known options: a flag missing
// its value is told apart from a flag that does not exist.
bool known_option(const std::string& flag) {
  return std::strstr(kUsage, ("  " + flag + " ").c_str()) != nullptr;
}

double parse_seconds(const std::string& flag, const char* text) {
  char* end = nullptr;
  double v = std::strtod(text, &end);
  // strtod takes "inf", "nan" and 1e300, which overflow the nanosecond clock (a deadline in the past).
  if (end == text || *end != '\0' || !std::isfinite(v) || v < 0 || v > portico::config::kMaxSeconds)
    usage_error(flag + " needs a number of seconds from 0 to " +
                std::to_string(static_cast<long>(portico::config::kMaxSeconds)));
  return v;
}

long long parse_integer(const std::string& flag, const char* text, long long min) {
  char* end = nullptr;
  long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || v < min)
    usage_error(flag + " needs an integer >= " + std::to_string(min));
  return v;
}

std::vector<std::string> split_list(const char* text) {
  std::vector<std::string> out;
  std::string item;
  for (const char* p = text;; ++p) {
    if (*p == ',' || *p == '\0') {
      if (!item.empty()) out.push_back(item);
      item.clear();
      if (*p == '\0') break;
    } else if (*p != ' ') {
      item += *p;
    }
  }
  return out;
}

}  // namespace

int main(int argc, char** argv) {
  // Before anything else touches OpenSSL (it accepts an allocator only before its first allocation).
  portico::base::thread_alloc::serve_openssl();
  // Every client, upstream and data-plane connection is a descriptor: the soft limit (often 1024) is raised
  // to the hard one, as nginx's worker_rlimit_nofile does.
  rlimit files{};
  if (getrlimit(RLIMIT_NOFILE, &files) == 0 && files.rlim_cur < files.rlim_max) {
    files.rlim_cur = files.rlim_max;
    setrlimit(RLIMIT_NOFILE, &files);
  }
  portico::server::ServerOptions server_options;
  portico::proxy::Options& opt = server_options.proxy;
  portico::controlplane::ControlPlaneOptions& cp = server_options.control_plane;
  portico::sync::SyncOptions& dp = server_options.data_plane;
  std::string cp_token_file;
  portico::sync::S3Options s3;
  std::string s3_credentials_file;
  std::string s3_prefix = "portico/";
  long long s3_keep = 10;
  double s3_lease_ttl = 10;
  bool s3_flags = false;
  for (int i = 1; i < argc; ++i) {
    std::string flag = argv[i];
    if (flag == "--help" || flag == "-h") {
      std::fputs(kUsage, stdout);
      return 0;
    }
    if (flag == "--version") {
      std::printf("portico %s\n", PORTICO_VERSION);
      return 0;
    }
    if (!known_option(flag)) usage_error("unknown option " + flag);
    if (i + 1 >= argc) usage_error(flag + " needs a value");
    const char* value = argv[++i];
    if (flag == "--config") {
      opt.config_path = value;
    } else if (flag == "--role") {
      std::string role = value;
      if (role == "standalone") {
        server_options.role = portico::server::Role::standalone;
      } else if (role == "traditional") {
        server_options.role = portico::server::Role::traditional;
      } else if (role == "control_plane") {
        server_options.role = portico::server::Role::control_plane;
      } else if (role == "data_plane") {
        server_options.role = portico::server::Role::data_plane;
      } else {
        usage_error("--role is one of standalone|traditional|control_plane|data_plane");
      }
    } else if (flag == "--etcd-endpoints") {
      cp.etcd_endpoints = split_list(value);
      for (const std::string& e : cp.etcd_endpoints) {
        if (!e.starts_with("http://") && !e.starts_with("https://")) {
          usage_error("--etcd-endpoints takes http(s)://host:port URLs, got '" + e + "'");
        }
      }
    } else if (flag == "--etcd-cacert") {
      cp.etcd_ca_file = value;
    } else if (flag == "--etcd-cert") {
      cp.etcd_cert_file = value;
    } else if (flag == "--etcd-key") {
      cp.etcd_key_file = value;
    } else if (flag == "--admin-tls-cert") {
      cp.admin.tls.cert_file = value;
    } else if (flag == "--admin-tls-key") {
      cp.admin.tls.key_file = value;
    } else if (flag == "--sync-tls-cert") {
      cp.sync_tls.cert_file = value;
    } else if (flag == "--sync-tls-key") {
      cp.sync_tls.key_file = value;
    } else if (flag == "--sync-tls-client-ca") {
      cp.sync_tls.client_ca_file = value;
    } else if (flag == "--sync-tls-allowed-nodes") {
      cp.sync_tls_allowed_nodes_file = value;
    } else if (flag == "--cp-tls-ca") {
      dp.tls_ca_file = value;
    } else if (flag == "--cp-tls-cert") {
      dp.tls_cert_file = value;
    } else if (flag == "--cp-tls-key") {
      dp.tls_key_file = value;
    } else if (flag == "--etcd-prefix") {
      cp.etcd_prefix = value;
    } else if (flag == "--etcd-compaction-interval") {
      cp.compaction_interval = parse_seconds(flag, value);
      // Each round is an etcd request: a tiny interval would be a request loop against the cluster.
      if (cp.compaction_interval != 0 && cp.compaction_interval < 0.1)
        usage_error("--etcd-compaction-interval is 0 (off) or at least 0.1 seconds");
    } else if (flag == "--etcd-compaction-retention") {
      cp.compaction_retention = parse_integer(flag, value, 1);
    } else if (flag == "--admin-listen") {
      cp.admin.listen = value;
    } else if (flag == "--allow-admin") {
      cp.admin.allow_admin = split_list(value);
    } else if (flag == "--state-dir") {
      cp.state_dir = value;
    } else if (flag == "--admin-key-file") {
      cp.admin_key_file = value;
    } else if (flag == "--viewer-key-file") {
      cp.viewer_key_file = value;
    } else if (flag == "--upstream-ca-file") {
      server_options.upstream_ca_file = value;
    } else if (flag == "--data-encryption-keyring") {
      server_options.keyring_file = value;
    } else if (flag == "--sync-listen") {
      cp.sync_listen = value;
    } else if (flag == "--dp-tokens-file") {
      cp.dp_tokens_file = value;
    } else if (flag == "--signing-key-file") {
      cp.signing_key_file = value;
    } else if (flag == "--control-planes") {
      dp.control_planes = split_list(value);
    } else if (flag == "--node-id") {
      dp.node_id = value;
    } else if (flag == "--cp-token-file") {
      cp_token_file = value;
    } else if (flag == "--trusted-keys") {
      server_options.trusted_keys = split_list(value);
    } else if (flag == "--cache-dir") {
      dp.cache_dir = value;
    } else if (flag == "--cluster-change-delay") {
      dp.cluster_change_delay = parse_seconds(flag, value);
    } else if (flag == "--cache-interval") {
      dp.cache_interval = parse_seconds(flag, value);
    } else if (flag.starts_with("--s3-")) {
      s3_flags = true;
      if (flag == "--s3-endpoint") {
        s3.endpoint = value;
        if (!s3.endpoint.starts_with("http://") && !s3.endpoint.starts_with("https://"))
          usage_error("--s3-endpoint takes an http(s)://host:port URL");
      } else if (flag == "--s3-bucket") {
        s3.bucket = value;
      } else if (flag == "--s3-region") {
        s3.region = value;
      } else if (flag == "--s3-credentials-file") {
        s3_credentials_file = value;
      } else if (flag == "--s3-prefix") {
        s3_prefix = value;
      } else if (flag == "--s3-keep") {
        s3_keep = parse_integer(flag, value, 1);
      } else if (flag == "--s3-lease-ttl") {
        s3_lease_ttl = parse_seconds(flag, value);
        if (s3_lease_ttl < 2) usage_error("--s3-lease-ttl must be at least 2 seconds");
      } else {
        usage_error("unknown option " + flag);
      }
    } else if (flag == "--listen") {
      opt.listen = value;
    } else if (flag == "--status-listen") {
      opt.status_listen = value;
    } else if (flag == "--listen-tls") {
      opt.listen_tls = value;
    } else if (flag == "--tls-default-sni") {
      opt.tls_default_sni = value;
    } else if (flag == "--http2" || flag == "--h2c") {
      const std::string_view v = value;
      if (v != "on" && v != "off") usage_error(flag + " takes on or off");
      (flag == "--http2" ? opt.http2 : opt.h2c) = v == "on";
    } else if (flag == "--http2-max-requests") {
      opt.http2_max_requests =
          static_cast<uint32_t>(std::min<long long>(parse_integer(flag, value, 1), UINT32_MAX));
    } else if (flag == "--tls-handshake-timeout") {
      opt.tls_handshake_timeout = parse_seconds(flag, value);
    } else if (flag == "--workers") {
      opt.workers = static_cast<unsigned>(parse_integer(flag, value, 0));
    } else if (flag == "--access-log") {
      opt.access_log = value;
    } else if (flag == "--error-log") {
      if (!portico::log::set_file(value)) usage_error(std::string("cannot open error log ") + value);
    } else if (flag == "--log-level") {
      portico::log::Level level;
      if (!portico::log::parse_level(value, level))
        usage_error("--log-level is one of debug|info|warn|error");
      portico::log::set_level(level);
    } else if (flag == "--drain-delay") {
      opt.drain_delay = parse_seconds(flag, value);
    } else if (flag == "--drain-timeout") {
      opt.drain_timeout = parse_seconds(flag, value);
    } else if (flag == "--max-header-size") {
      opt.max_header_size = static_cast<size_t>(parse_integer(flag, value, 1024));
    } else if (flag == "--max-target-size") {
      opt.max_target_size = static_cast<size_t>(parse_integer(flag, value, 64));
    } else if (flag == "--max-body-size") {
      opt.max_body_size = parse_integer(flag, value, 0);
    } else if (flag == "--keepalive-timeout") {
      opt.keepalive_timeout = parse_seconds(flag, value);
    } else if (flag == "--header-timeout") {
      opt.header_timeout = parse_seconds(flag, value);
    } else if (flag == "--send-timeout") {
      opt.client_send_timeout = parse_seconds(flag, value);
    } else if (flag == "--watch-interval") {
      opt.watch_interval = parse_seconds(flag, value);
      if (opt.watch_interval < 0.05) usage_error("--watch-interval must be at least 0.05 seconds");
    } else {
      usage_error("unknown option " + flag);
    }
  }
  auto pair = [](const std::string& cert, const std::string& key, const char* cert_flag,
                 const char* key_flag) {
    if (cert.empty() != key.empty())
      usage_error(std::string(cert_flag) + " and " + key_flag + " go together");
  };
  pair(cp.admin.tls.cert_file, cp.admin.tls.key_file, "--admin-tls-cert", "--admin-tls-key");
  pair(cp.sync_tls.cert_file, cp.sync_tls.key_file, "--sync-tls-cert", "--sync-tls-key");
  pair(cp.etcd_cert_file, cp.etcd_key_file, "--etcd-cert", "--etcd-key");
  pair(dp.tls_cert_file, dp.tls_key_file, "--cp-tls-cert", "--cp-tls-key");
  if (!cp.sync_tls.client_ca_file.empty() && cp.sync_tls.cert_file.empty())
    usage_error("--sync-tls-client-ca needs --sync-tls-cert and --sync-tls-key");
  if (!cp.sync_tls.client_ca_file.empty() && cp.dp_tokens_file.empty() &&
      cp.sync_tls_allowed_nodes_file.empty())
    usage_error(
        "--sync-tls-client-ca needs --sync-tls-allowed-nodes or --dp-tokens-file (the node ids a "
        "certificate may name)");
  if (!cp.sync_tls_allowed_nodes_file.empty() && cp.sync_tls.client_ca_file.empty())
    usage_error("--sync-tls-allowed-nodes goes with --sync-tls-client-ca");
  if (s3_flags) {
    if (server_options.role == portico::server::Role::standalone)
      usage_error("--s3-* options need an etcd or data_plane role");
    if (s3.endpoint.empty() || s3.bucket.empty() || s3_credentials_file.empty())
      usage_error("the S3 fallback needs --s3-endpoint, --s3-bucket and --s3-credentials-file");
    try {
      portico::sync::load_s3_credentials(s3_credentials_file, s3);
    } catch (const std::exception& e) {
      usage_error(e.what());
    }
    if (server_options.role == portico::server::Role::data_plane) {
      dp.s3 = s3;
      dp.s3_prefix = s3_prefix;
    } else {
      cp.s3 = s3;
      cp.s3_prefix = s3_prefix;
      cp.s3_keep = static_cast<size_t>(s3_keep);
      cp.s3_lease_ttl = s3_lease_ttl;
    }
  }
  if (server_options.role == portico::server::Role::standalone) {
    if (opt.config_path.empty())
      usage_error("--config FILE is required (or --role traditional|control_plane|data_plane)");
    // A path that cannot be read is a mistake on the command line, not a file being written: fail now rather
    // than serve 503 for a config that never existed. (A file that exists but does not parse yet, such as a
    // YAML without its '#END', is waited for and applied once it is complete.)
    if (::access(opt.config_path.c_str(), R_OK) != 0)
      usage_error("--config " + opt.config_path + ": " + std::strerror(errno));
  } else if (server_options.role == portico::server::Role::data_plane) {
    if (!opt.config_path.empty()) usage_error("--config is for the standalone role");
    if (dp.control_planes.empty()) usage_error("--control-planes is required for the data_plane role");
    if (server_options.trusted_keys.empty())
      usage_error("--trusted-keys is required for the data_plane role");
    if (cp_token_file.empty() && dp.tls_cert_file.empty())
      usage_error("--cp-token-file (or --cp-tls-cert) is required for the data_plane role");
    if (!cp_token_file.empty()) {
      try {
        bool unused = false;
        dp.token = portico::controlplane::load_or_generate_key(cp_token_file, false, unused);
      } catch (const std::exception& e) {
        usage_error(e.what());
      }
    }
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    dp.hostname = host;
    if (dp.node_id.empty()) dp.node_id = dp.hostname;
    if (dp.cache_dir.empty()) dp.cache_dir = cp.state_dir + "/cache";
    dp.version = PORTICO_VERSION;
  } else {
    if (!opt.config_path.empty())
      usage_error("--config is for the standalone role; the etcd roles read etcd");
    if (cp.etcd_endpoints.empty()) usage_error("--etcd-endpoints is required for this role");
  }
  return portico::server::Server(std::move(server_options)).run();
}
