// Private to src/config. Collects validated resources of one document, checks the rules that span resources
// (unique ids, references, every route reaches an upstream) and hands out the Config. Used by
// validate_config / check_config (validate.h) and by the streaming loader (loader.cc), so the three agree.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "config/fields.h"
#include "config/model.h"
#include "config/validate.h"

namespace portico::config::detail {

enum class Section { routes, services, upstreams };

// "routes" -> Section::routes, ...; false for any other name.
bool section_of(std::string_view name, Section& out);

class Assembler {
 public:
  explicit Assembler(Errors& errors) : errors_(errors) {}

  // Validates item `index` of a top-level list (path "routes[index]") and keeps it.
  void add(Section section, size_t index, const json& item);
  // Keeps an already validated resource (check_config).
  void keep(size_t index, std::optional<Route> route, std::string id);
  void keep(size_t index, std::optional<Service> service, std::string id);
  void keep(size_t index, std::optional<Upstream> upstream, std::string id);

  // The top level: a mapping whose routes/services/upstreams are lists (or null). With `add_items` the items
  // of those lists are add()ed here; the loader streams them to add() while parsing and passes false.
  void check_document(const json& document, bool add_items);

  // Cross-resource rules; folds service plugin settings into routes. True when no error was found.
  bool link();
  // The kept resources, in document order (those that failed validation are left out).
  Config take();

 private:
  template <typename T>
  struct Slot {
    std::optional<T> value;
    std::string id;
    size_t index = 0;  // position in the document's list
  };
  template <typename T>
  struct Table {
    std::vector<Slot<T>> slots;
    std::unordered_map<std::string, size_t> by_id;  // id -> position in slots of its first definition
  };
  template <typename T>
  void keep_in(Table<T>& table, std::string_view section, size_t index, std::optional<T> value, std::string id);

  Errors& errors_;
  Table<Route> routes_;
  Table<Service> services_;
  Table<Upstream> upstreams_;
};

}  // namespace portico::config::detail
