#include "base/accept_backoff.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <string>

#include "base/log.h"

namespace portico::base {

namespace {
// Paused listeners by cause: descriptors, memory, unexpected (the AcceptError values past `connection`).
std::atomic<int> g_paused_by[3];

int cause_index(AcceptError cause) {
  switch (cause) {
    case AcceptError::descriptors:
      return 0;
    case AcceptError::memory:
      return 1;
    default:
      return 2;
  }
}

// Whether a descriptor can be had right now: the condition that ends an EMFILE/ENFILE pause. A listener
// waiting in accept() cannot tell by itself (the kernel only fails accept() once a connection is waiting).
bool descriptor_available() {
  int fd = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ::close(fd);
  return true;
}
}  // namespace

AcceptError classify_accept_error(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category() &&
      ec.category() != boost::system::generic_category()) {
    return AcceptError::unexpected;
  }
  switch (ec.value()) {
    case EMFILE:
    case ENFILE:
      return AcceptError::descriptors;
    case ENOBUFS:
    case ENOMEM:
      return AcceptError::memory;
    // accept(2): Linux passes a new connection's pending network errors to accept(), to be treated like
    // EAGAIN; and a connection reset before it was taken.
    case ECONNABORTED:
    case ECONNRESET:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case ETIMEDOUT:
    case EINTR:
    case EAGAIN:
      return AcceptError::connection;
    default:
      return AcceptError::unexpected;
  }
}

AcceptBackoff::~AcceptBackoff() {
  set_paused(false);
}

void AcceptBackoff::set_paused(bool paused, AcceptError cause) {
  if (paused == paused_ && (!paused || cause == cause_)) return;
  if (paused_) g_paused_by[cause_index(cause_)].fetch_sub(1, std::memory_order_relaxed);
  if (paused) g_paused_by[cause_index(cause)].fetch_add(1, std::memory_order_relaxed);
  paused_ = paused;
  cause_ = cause;
}

std::chrono::milliseconds AcceptBackoff::failed(const boost::system::error_code& ec, const char* what) {
  const AcceptError kind = classify_accept_error(ec);
  if (failures_++ == 0) {
    // Once per streak: a persistent error (a shut-down listening socket) would otherwise log at every retry.
    PORTICO_LOG(warn, "%s: accept failed: %s; pausing accepts, retrying after %lld ms up to every %lld ms",
                name_.c_str(), what ? what : ec.message().c_str(),
                static_cast<long long>(kFirstDelay.count()), static_cast<long long>(kMaxDelay.count()));
  }
  set_paused(true, kind);
  return longer_delay();
}

std::chrono::milliseconds AcceptBackoff::longer_delay() {
  delay_ = delay_.count() == 0 ? kFirstDelay : std::min(delay_ * 2, kMaxDelay);
  return delay_;
}

std::chrono::milliseconds AcceptBackoff::after_wait() {
  if (paused_ && cause_ == AcceptError::descriptors && !descriptor_available()) return longer_delay();
  // Readiness comes back now, not at the next accepted connection, which may be long in coming when the
  // load balancer has stopped sending because of the pause.
  set_paused(false);
  return std::chrono::milliseconds(0);
}

void AcceptBackoff::end_streak() {
  PORTICO_LOG(info, "%s: accepting again after %lu failed accepts", name_.c_str(), failures_);
  failures_ = 0;
  delay_ = std::chrono::milliseconds(0);
  set_paused(false);
}

void AcceptBackoff::stopped() {
  failures_ = 0;
  delay_ = std::chrono::milliseconds(0);
  set_paused(false);
}

int AcceptBackoff::paused_listeners() {
  int paused = 0;
  for (const std::atomic<int>& by_cause : g_paused_by) paused += by_cause.load(std::memory_order_relaxed);
  return paused;
}

std::string AcceptBackoff::paused_reason() {
  static constexpr const char* kCauses[3] = {"out of file descriptors", "out of memory", "accept() failing"};
  int paused = 0;
  std::string causes;
  for (int i = 0; i < 3; ++i) {
    const int n = g_paused_by[i].load(std::memory_order_relaxed);
    if (n <= 0) continue;
    paused += n;
    if (!causes.empty()) causes += "; ";
    causes += kCauses[i];
  }
  if (paused == 0) return "";
  return std::to_string(paused) + " listener(s) cannot accept connections (" + causes + ")";
}

ReserveDescriptor::ReserveDescriptor() {
  restore();
}

ReserveDescriptor::~ReserveDescriptor() {
  release();
}

bool ReserveDescriptor::release() {
  if (fd_ < 0) return false;
  ::close(fd_);
  fd_ = -1;
  return true;
}

bool ReserveDescriptor::restore() {
  if (fd_ >= 0) return true;
  fd_ = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  return fd_ >= 0;
}

}  // namespace portico::base
