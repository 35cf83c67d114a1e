// UpstreamPool: the idle cap holds per node across keys (TLS keys differ by a client-chosen SNI), and a
// check-in beyond it closes the node's oldest idle connection.
#include "proxy/upstream_pool.h"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>

namespace portico::proxy {
namespace {

namespace asio = boost::asio;

std::unique_ptr<UpstreamConnection> open_conn(asio::io_context& io) {
  asio::ip::tcp::socket s(io);
  s.open(asio::ip::tcp::v4());
  return std::make_unique<UpstreamConnection>(std::move(s));
}

TEST(UpstreamPool, CapsIdleConnectionsPerNodeAcrossSnis) {
  asio::io_context io;
  UpstreamPool pool(io.get_executor());
  for (int i = 0; i < 100; ++i) {
    pool.checkin("10.0.0.1:443|tls:1|sni" + std::to_string(i) + ".example", open_conn(io), 4, 60);
  }
  EXPECT_EQ(pool.idle_for_node("10.0.0.1:443"), 4u);
  EXPECT_EQ(pool.idle_total(), 4u);
  // The newest survive, the oldest were evicted.
  EXPECT_EQ(pool.checkout("10.0.0.1:443|tls:1|sni0.example"), nullptr);
  EXPECT_NE(pool.checkout("10.0.0.1:443|tls:1|sni99.example"), nullptr);
  EXPECT_EQ(pool.idle_for_node("10.0.0.1:443"), 3u);
  // Another node has its own allowance.
  pool.checkin("10.0.0.2:443|tls:1|a.example", open_conn(io), 4, 60);
  EXPECT_EQ(pool.idle_for_node("10.0.0.2:443"), 1u);
  EXPECT_EQ(pool.idle_total(), 4u);
  pool.sweep(true);
  EXPECT_EQ(pool.idle_total(), 0u);
}

TEST(UpstreamPool, PlainKeyKeepsTheNewestAtTheCap) {
  asio::io_context io;
  UpstreamPool pool(io.get_executor());
  for (int i = 0; i < 3; ++i) pool.checkin("10.0.0.1:80", open_conn(io), 2, 60);
  EXPECT_EQ(pool.idle_for_node("10.0.0.1:80"), 2u);
  EXPECT_NE(pool.checkout("10.0.0.1:80"), nullptr);
  EXPECT_NE(pool.checkout("10.0.0.1:80"), nullptr);
  EXPECT_EQ(pool.checkout("10.0.0.1:80"), nullptr);
  EXPECT_EQ(pool.idle_total(), 0u);
}

// The idle time counts from the clock reading the caller hands over (the session's end of the exchange),
// not from a later one.
TEST(UpstreamPool, IdleTimeCountsFromTheGivenCheckinTime) {
  asio::io_context io;
  UpstreamPool pool(io.get_executor());
  const Clock::time_point now = Clock::now();
  pool.checkin("10.0.0.1:80", open_conn(io), 4, 60, now - std::chrono::seconds(61));
  EXPECT_EQ(pool.checkout("10.0.0.1:80"), nullptr);  // expired a second ago
  pool.checkin("10.0.0.1:80", open_conn(io), 4, 60, now - std::chrono::seconds(30));
  EXPECT_NE(pool.checkout("10.0.0.1:80"), nullptr);
}

}  // namespace
}  // namespace portico::proxy
