// One HTTP/2 header field as the codecs hand it over (server_codec.h, client_codec.h): name lower case.
#pragma once

#include <string>
#include <vector>

namespace portico::http2 {

struct Field {
  std::string name;  // lower case
  std::string value;
  bool operator==(const Field&) const = default;
};
using Fields = std::vector<Field>;

}  // namespace portico::http2
