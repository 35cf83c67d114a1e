#include "proxy/upstream_pool.h"

#include <boost/asio/error.hpp>

namespace portico::proxy {

std::unique_ptr<UpstreamConnection> UpstreamPool::checkout(const std::string& key) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  auto now = Clock::now();
  while (!list.empty()) {
    Idle idle = std::move(list.back());
    list.pop_back();
    boost::system::error_code ec;
    if (idle.watched) idle.conn->socket.cancel(ec);  // the watch handler sees operation_aborted
    if (idle.expires > now && !ec) return std::move(idle.conn);
    idle.conn->socket.close(ec);
  }
  return nullptr;
}

void UpstreamPool::checkin(const std::string& key, std::unique_ptr<UpstreamConnection> conn, size_t max_idle,
                           double idle_timeout) {
  auto& list = idle_[key];
  if (list.size() >= max_idle || idle_timeout <= 0) {
    boost::system::error_code ec;
    conn->socket.close(ec);
    return;
  }
  uint64_t id = next_id_++;
  list.push_back(Idle{
      std::move(conn),
      Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(idle_timeout)),
      id, false});
}

void UpstreamPool::watch(const std::string& key, uint64_t id, UpstreamConnection* conn) {
  conn->socket.async_wait(boost::asio::socket_base::wait_read,
                          [this, key, id](const boost::system::error_code& ec) {
                            if (ec == boost::asio::error::operation_aborted) return;
                            drop(key, id);  // readable while idle: closed by the origin, or garbage
                          });
}

void UpstreamPool::drop(const std::string& key, uint64_t id) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return;
  auto& list = it->second;
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i].id == id) {
      boost::system::error_code ec;
      list[i].conn->socket.close(ec);
      list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
      return;
    }
  }
}

void UpstreamPool::sweep(bool all) {
  auto now = Clock::now();
  for (auto it = idle_.begin(); it != idle_.end();) {
    auto& list = it->second;
    for (size_t i = 0; i < list.size();) {
      if (all || list[i].expires <= now) {
        boost::system::error_code ec;
        list[i].conn->socket.close(ec);
        list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
      } else {
        if (!list[i].watched) {
          list[i].watched = true;
          watch(it->first, list[i].id, list[i].conn.get());
        }
        ++i;
      }
    }
    it = list.empty() ? idle_.erase(it) : std::next(it);
  }
}

}  // namespace portico::proxy
