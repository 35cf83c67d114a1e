// "host:port" / "[v6]:port" parsing into an Asio TCP endpoint (IP literals only; listeners are not named).
#pragma once

#include <boost/asio/ip/tcp.hpp>
#include <string>

namespace portico::base {

// Throws std::invalid_argument with a message naming `text` when it is not "ip:port".
boost::asio::ip::tcp::endpoint parse_endpoint(const std::string& text);

}  // namespace portico::base
