// Session::Attempt: the state of one try against one node, shared by the HTTP/1.1 exchange
// (session_exchange.cc) and the HTTP/2 one (session_grpc.cc). Internal to the session's files.
#pragma once

#include "proxy/session.h"
#include "snapshot/snapshot.h"

namespace portico::proxy {

struct Session::Attempt {
  bool upgrade = false;  // a WebSocket upgrade was forwarded
  const snapshot::RouteRuntime* route = nullptr;
  snapshot::UpstreamRuntime* upstream = nullptr;
  const config::Timeout* timeout = nullptr;  // the route's for that upstream (SplitTarget::timeout)
  const upstream::NodeRuntime* node = nullptr;
  bool last_try = false;
  bool reused = false;
  bool reusable = true;        // the upstream connection may go back to the pool after this exchange
  bool name_per_node = false;  // the TLS name checked is the node's own (a failure may be this node's alone)
  size_t up_end = 0;           // bytes in up_
  Clock::time_point sent_at;
  // sent_at again when the whole request went out in the write that began then, without waiting (the usual
  // case): the response head's deadline counts from it; default when the request took longer to send.
  Clock::time_point request_sent_at{};
  // When try_node relayed the response's end (default: not reached). One clock read, in the same loop turn,
  // for upstream_seconds_, the pooled connection's idle expiry and forward's latency.
  Clock::time_point ended_at{};
};

}  // namespace portico::proxy
