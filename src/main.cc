// Portico entry point: parses the command line into proxy::Options and runs the server.
// The request path starts at proxy/worker.cc (accept) and proxy/session.cc (handle_request).
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

#include "base/log.h"
#include "proxy/options.h"
#include "server/server.h"

namespace {

const char kUsage[] =
    "usage: portico --config FILE [options]\n"
    "\n"
    "Runs Portico in standalone mode: a reverse proxy serving the routes of a declarative file (APISIX\n"
    "standalone shape, YAML ending with '#END' or .json), reloaded when it changes and on SIGHUP.\n"
    "\n"
    "  --config FILE             declarative routes/services/upstreams (required)\n"
    "  --listen IP:PORT          proxy listener (default 0.0.0.0:9080)\n"
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
    "  --header-timeout SEC      time to receive a request head once started, 408 after (default 30)\n"
    "  --send-timeout SEC        a client that reads nothing for this long is dropped (default 60)\n"
    "  --watch-interval SEC      config file poll period (default 1)\n"
    "  --version                 print the version\n";

[[noreturn]] void usage_error(const std::string& message) {
  std::fprintf(stderr, "portico: %s\n\n%s", message.c_str(), kUsage);
  std::exit(2);
}

double parse_seconds(const std::string& flag, const char* text) {
  char* end = nullptr;
  double v = std::strtod(text, &end);
  if (end == text || *end != '\0' || v < 0) usage_error(flag + " needs a non-negative number of seconds");
  return v;
}

long long parse_integer(const std::string& flag, const char* text, long long min) {
  char* end = nullptr;
  long long v = std::strtoll(text, &end, 10);
  if (end == text || *end != '\0' || v < min)
    usage_error(flag + " needs an integer >= " + std::to_string(min));
  return v;
}

}  // namespace

int main(int argc, char** argv) {
  portico::proxy::Options opt;
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
    if (i + 1 >= argc) usage_error(flag + " needs a value");
    const char* value = argv[++i];
    if (flag == "--config") {
      opt.config_path = value;
    } else if (flag == "--listen") {
      opt.listen = value;
    } else if (flag == "--status-listen") {
      opt.status_listen = value;
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
    } else {
      usage_error("unknown option " + flag);
    }
  }
  if (opt.config_path.empty()) usage_error("--config FILE is required");
  return portico::server::Server(std::move(opt)).run();
}
