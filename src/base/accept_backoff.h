// What every listener of the process (proxy workers, the admin and sync listeners, the status listener) does
// when accept() fails with anything but "that one connection failed": out of descriptors (EMFILE, ENFILE),
// out of kernel memory (ENOBUFS, ENOMEM), or an error no retry is known to cure (EBADF, EINVAL, ENOTSOCK,
// EPERM, ...). Retrying at once fails the same way and spins a core; giving up stops the listener for good.
// So the listener pauses and tries again after a growing delay, for descriptors only once one can be had.
//
// AcceptBackoff is one listener's state, used from that listener's thread only. A paused listener is
// counted process-wide, by cause (paused_listeners(), paused_reason(), any thread), so readiness can answer
// 503 while the process cannot take connections, and 200 again once every listener has resumed by itself.
//
// ReserveDescriptor is the classic spare descriptor (an open /dev/null): a listener that must answer even
// when the process is out of descriptors (the status listener, so a health checker gets 503 instead of a
// time-out) releases it to accept one connection, and takes it back when that connection is closed.
#pragma once

#include <boost/system/error_code.hpp>
#include <chrono>
#include <string>

namespace portico::base {

enum class AcceptError {
  connection,   // that one connection failed (reset before it was taken, a network error): accept the next
  descriptors,  // EMFILE, ENFILE
  memory,       // ENOBUFS, ENOMEM
  unexpected,   // anything else: as far as we know it persists (a closed or shut-down listening socket)
};
AcceptError classify_accept_error(const boost::system::error_code& ec);

class AcceptBackoff {
 public:
  static constexpr std::chrono::milliseconds kFirstDelay{10};
  static constexpr std::chrono::milliseconds kMaxDelay{500};

  explicit AcceptBackoff(std::string name) : name_(std::move(name)) {}
  ~AcceptBackoff();
  AcceptBackoff(const AcceptBackoff&) = delete;
  AcceptBackoff& operator=(const AcceptBackoff&) = delete;

  // An accept failed with anything but AcceptError::connection (or the listener could not take the accepted
  // connection: `what`, when given, replaces the error's text in the log): returns how long to wait before
  // after_wait(). The first failure of a streak is logged (a warning naming the listener and the error) and
  // pauses the listener; later ones double the delay up to kMaxDelay, and are not logged.
  std::chrono::milliseconds failed(const boost::system::error_code& ec, const char* what = nullptr);
  // The delay has passed: zero when accepting is worth trying again (for descriptors: one can be opened
  // now), which ends the pause; else the next, longer delay to wait before asking again.
  std::chrono::milliseconds after_wait();
  // An accept succeeded: ends a pause and resets the delay. Inline for the common case, every accepted
  // connection outside a streak (no failure means no pause and no delay).
  void succeeded() {
    if (failures_ != 0) end_streak();
  }
  // The listener was closed (drain, stop): it is no longer paused.
  void stopped();

  // Listeners of the process paused right now (any thread).
  static int paused_listeners();
  // "" when none is paused, else why, for /readyz: "2 listener(s) cannot accept connections (out of file
  // descriptors)", with every cause that holds one listener paused now (any thread).
  static std::string paused_reason();

 private:
  void set_paused(bool paused, AcceptError cause = AcceptError::unexpected);
  std::chrono::milliseconds longer_delay();  // doubles the delay, kFirstDelay to kMaxDelay
  void end_streak();                         // succeeded() after failures: logs, resets, resumes

  std::string name_;
  bool paused_ = false;
  AcceptError cause_ = AcceptError::unexpected;  // of the pause, while paused_
  std::chrono::milliseconds delay_{0};
  unsigned long failures_ = 0;  // in this streak
};

class ReserveDescriptor {
 public:
  ReserveDescriptor();  // takes the spare (if even that fails, held() is false and restore() retries)
  ~ReserveDescriptor();
  ReserveDescriptor(const ReserveDescriptor&) = delete;
  ReserveDescriptor& operator=(const ReserveDescriptor&) = delete;

  // Frees the spare so the next open or accept can have it; false when it was not held.
  bool release();
  // Takes the spare again; false when no descriptor is free.
  bool restore();

 private:
  int fd_ = -1;
};

}  // namespace portico::base
