#include "proxy/upstream_pool.h"

#include <boost/asio/error.hpp>

namespace portico::proxy {

std::string_view UpstreamPool::node_of(const std::string& key) {
  std::string_view k(key);
  return k.substr(0, k.find('|'));
}

void UpstreamPool::forget(const std::string& key) {
  auto it = nodes_.find(std::string(node_of(key)));
  if (it == nodes_.end()) return;
  if (--it->second.count == 0) nodes_.erase(it);
}

bool UpstreamPool::holds(const std::string& key, uint64_t id) const {
  auto it = idle_.find(key);
  if (it == idle_.end()) return false;
  for (const Idle& idle : it->second) {
    if (idle.id == id) return true;
  }
  return false;
}

std::unique_ptr<UpstreamConnection> UpstreamPool::checkout(const std::string& key, Clock::time_point now) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return nullptr;
  auto& list = it->second;
  while (!list.empty()) {
    Idle idle = std::move(list.back());
    list.pop_back();
    forget(key);
    boost::system::error_code ec;
    if (idle.watched) idle.conn->socket.cancel(ec);  // the watch handler sees operation_aborted
    if (idle.expires > now && !ec) return std::move(idle.conn);
    idle.conn->socket.close(ec);
  }
  return nullptr;
}

void UpstreamPool::checkin(const std::string& key, std::unique_ptr<UpstreamConnection> conn, size_t max_idle,
                           double idle_timeout, Clock::time_point now) {
  boost::system::error_code ec;
  if (max_idle == 0 || idle_timeout <= 0) {
    conn->socket.close(ec);
    return;
  }
  const std::string node(node_of(key));
  // Make room: the node's oldest idle connections go first, whichever key (SNI) they were kept under.
  while (true) {
    auto nit = nodes_.find(node);
    if (nit == nodes_.end() || nit->second.count < max_idle) break;
    auto& order = nit->second.order;
    if (order.empty()) break;  // cannot happen while count > 0; defensive
    auto [old_key, old_id] = std::move(order.front());
    order.pop_front();
    drop(old_key, old_id);  // may erase nodes_[node]: `nit` is not used again
  }
  auto& list = idle_[key];
  uint64_t id = next_id_++;
  list.push_back(
      Idle{std::move(conn),
           now + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(idle_timeout)), id,
           false});
  NodeIdle& n = nodes_[node];
  n.count++;
  n.order.emplace_back(key, id);
  if (n.order.size() > 2 * n.count + 16) {
    std::deque<std::pair<std::string, uint64_t>> live;
    for (auto& entry : n.order) {
      if (holds(entry.first, entry.second)) live.push_back(std::move(entry));
    }
    n.order.swap(live);
  }
}

void UpstreamPool::watch(const std::string& key, uint64_t id, UpstreamConnection* conn) {
  conn->socket.async_wait(boost::asio::socket_base::wait_read,
                          [this, key, id](const boost::system::error_code& ec) {
                            if (ec == boost::asio::error::operation_aborted) return;
                            drop(key, id);  // readable while idle: closed by the origin, or garbage
                          });
}

bool UpstreamPool::drop(const std::string& key, uint64_t id) {
  auto it = idle_.find(key);
  if (it == idle_.end()) return false;
  auto& list = it->second;
  for (size_t i = 0; i < list.size(); ++i) {
    if (list[i].id == id) {
      boost::system::error_code ec;
      list[i].conn->socket.close(ec);
      list.erase(list.begin() + static_cast<std::ptrdiff_t>(i));
      forget(key);
      return true;
    }
  }
  return false;
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
        forget(it->first);
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

size_t UpstreamPool::idle_for_node(const std::string& key) const {
  auto it = nodes_.find(std::string(node_of(key)));
  return it == nodes_.end() ? 0 : it->second.count;
}

size_t UpstreamPool::idle_total() const {
  size_t total = 0;
  for (const auto& [node, n] : nodes_) total += n.count;
  return total;
}

}  // namespace portico::proxy
