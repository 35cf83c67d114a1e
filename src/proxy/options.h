// Listener and process options, set from the command line (see main.cc). Plain data.
#pragma once

#include <cstdint>
#include <string>

namespace portico::proxy {

struct Options {
  std::string listen = "0.0.0.0:9080";           // proxy listener, one SO_REUSEPORT socket per worker
  std::string status_listen = "127.0.0.1:9091";  // /healthz /readyz /metrics /status/config
  unsigned workers = 0;                          // 0 = number of CPUs
  std::string config_path;                       // declarative file (standalone)
  std::string access_log = "-";                  // "-" = stdout, "off", or a path
  double drain_delay = 3;              // seconds between /readyz turning 503 and the listeners closing
  double drain_timeout = 30;           // seconds in-flight requests get to finish after the listeners close
  size_t max_header_size = 64 * 1024;  // request line + headers (431 above)
  size_t max_target_size = 8 * 1024;   // request-target (414 above)
  int64_t max_body_size = -1;          // default per-route body limit, bytes; -1 = none (413 above)
  double keepalive_timeout = 60;       // idle client connection between requests
  double header_timeout = 30;          // deadline for a whole request head from its first byte (408), not
                                       // re-armed per read; also the per-read idle limit of request bodies
  double client_send_timeout = 60;     // a client that stops reading for this long is dropped
  double watch_interval = 1;           // config file poll period, seconds
  std::string listen_tls;              // TLS proxy listener ("" = none), one SO_REUSEPORT socket per worker
  std::string tls_default_sni;        // certificate name for a ClientHello without SNI or with an unknown one
  double tls_handshake_timeout = 10;  // seconds from accept to a completed TLS handshake
  bool http2 = true;                  // --http2: ALPN offers h2 on the TLS listener (APISIX enable_http2)
  uint32_t http2_max_requests =
      1000;         // --http2-max-requests: then a graceful GOAWAY (nginx keepalive_requests)
  bool h2c = true;  // --h2c: HTTP/2 with prior knowledge on the plain listener
};

}  // namespace portico::proxy
