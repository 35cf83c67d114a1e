#include "tls/request_check.h"

#include "base/ascii.h"

namespace portico::tls::detail {

bool same_name(std::string_view a, std::string_view b) {
  if (!a.empty() && a.back() == '.') a.remove_suffix(1);
  if (!b.empty() && b.back() == '.') b.remove_suffix(1);
  return base::iequals(a, b);
}

}  // namespace portico::tls::detail
