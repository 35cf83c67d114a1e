// One HTTP/2 header field as the codecs hand it over (server_codec.h, client_codec.h): name lower case.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace portico::http2 {

struct Field {
  std::string name;  // lower case
  std::string value;
  bool operator==(const Field&) const = default;
};
using Fields = std::vector<Field>;

// A field by reference (name lower case): what a head built in place (proxy::H2ResponseHead) submits without
// a std::string per field. The bytes must stay valid until the submission returns (nghttp2 copies them).
struct FieldView {
  std::string_view name;
  std::string_view value;
};

}  // namespace portico::http2
