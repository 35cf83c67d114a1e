#include "base/endpoint.h"

#include <charconv>
#include <stdexcept>

namespace portico::base {

boost::asio::ip::tcp::endpoint parse_endpoint(const std::string& text) {
  size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 >= text.size()) {
    throw std::invalid_argument("'" + text + "' is not an address of the form ip:port");
  }
  std::string host = text.substr(0, colon);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') host = host.substr(1, host.size() - 2);
  if (host.empty()) host = "0.0.0.0";
  unsigned port = 0;
  auto [end, ec] = std::from_chars(text.data() + colon + 1, text.data() + text.size(), port);
  if (ec != std::errc() || end != text.data() + text.size() || port == 0 || port > 65535) {
    throw std::invalid_argument("'" + text + "' has no valid port");
  }
  boost::system::error_code aec;
  auto address = boost::asio::ip::make_address(host, aec);
  if (aec) throw std::invalid_argument("'" + host + "' is not an IP address");
  return {address, static_cast<unsigned short>(port)};
}

}  // namespace portico::base
