#include "base/accept_backoff.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>

#include "base/log.h"

namespace portico::base {

namespace {
std::atomic<int> g_paused{0};

bool is_descriptor_error(const boost::system::error_code& ec) {
  return ec.value() == EMFILE || ec.value() == ENFILE;
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

bool is_resource_exhaustion(const boost::system::error_code& ec) {
  if (ec.category() != boost::system::system_category() &&
      ec.category() != boost::system::generic_category()) {
    return false;
  }
  const int v = ec.value();
  return v == EMFILE || v == ENFILE || v == ENOBUFS || v == ENOMEM;
}

AcceptBackoff::~AcceptBackoff() {
  set_paused(false);
}

void AcceptBackoff::set_paused(bool paused) {
  if (paused == paused_) return;
  paused_ = paused;
  g_paused.fetch_add(paused ? 1 : -1, std::memory_order_relaxed);
}

std::chrono::milliseconds AcceptBackoff::failed(const boost::system::error_code& ec) {
  if (failures_++ == 0) {
    PORTICO_LOG(warn, "%s: accept failed: %s; pausing accepts until it can take connections again",
                name_.c_str(), ec.message().c_str());
  }
  probe_descriptors_ = is_descriptor_error(ec);
  set_paused(true);
  return next_delay();
}

std::chrono::milliseconds AcceptBackoff::next_delay() {
  delay_ = delay_.count() == 0 ? kFirstDelay : std::min(delay_ * 2, kMaxDelay);
  return delay_;
}

bool AcceptBackoff::try_resume() {
  if (probe_descriptors_ && !descriptor_available()) return false;
  // Readiness comes back now, not at the next accepted connection, which may be long in coming when the
  // load balancer has stopped sending because of the pause.
  set_paused(false);
  return true;
}

void AcceptBackoff::succeeded() {
  if (failures_ > 0) {
    PORTICO_LOG(info, "%s: accepting again after %lu failed accepts", name_.c_str(), failures_);
  }
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
  return g_paused.load(std::memory_order_relaxed);
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
