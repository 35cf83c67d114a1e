// Private to src/config. Collects validated resources of one document, checks the rules that span resources
// (unique ids, references, every route reaches an upstream) and hands out the Config. Used by
// validate_config / check_config (validate.h) and by the streaming loader (loader.cc), so the three agree.
#pragma once

#include <iterator>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/fields.h"
#include "config/id_index.h"
#include "config/model.h"
#include "config/validate.h"

namespace portico::config::detail {

// The top-level lists of a document, in the order of kSectionNames.
enum class SectionKind {
  routes,
  services,
  upstreams,
  consumers,
  ssls,
  global_rules,
  plugin_configs,
  credentials
};
inline constexpr std::string_view kSectionNames[] = {
    "routes", "services", "upstreams", "consumers", "ssls", "global_rules", "plugin_configs", "credentials"};

// "routes" -> SectionKind::routes, ...; false for any other name.
bool section_of(std::string_view name, SectionKind& out);

class Assembler {
 public:
  explicit Assembler(Errors& errors) : errors_(errors) {}

  // Validates item `index` of a top-level list (path "routes[index]") and keeps it.
  void add(SectionKind section, size_t index, const json& item);
  // Keeps an already validated resource (check_config). `id` is its key: the username for a consumer.
  void keep(size_t index, std::optional<Route> route, std::string id);
  void keep(size_t index, std::optional<Service> service, std::string id);
  void keep(size_t index, std::optional<Upstream> upstream, std::string id);
  void keep(size_t index, std::optional<Consumer> consumer, std::string id);
  void keep(size_t index, std::optional<Ssl> ssl, std::string id);
  void keep(size_t index, std::optional<GlobalRule> rule, std::string id);
  void keep(size_t index, std::optional<PluginConfig> config, std::string id);
  void keep(size_t index, std::optional<Credential> credential, std::string id);

  // The top level: a mapping whose sections (kSectionNames) are lists (or null); the items found in those
  // lists are add()ed. (The streaming loader add()s items while parsing; the tree builder leaves those lists
  // empty in the root, so nothing is added twice.)
  void check_document(const json& document);

  // Cross-resource rules; folds plugin config, service and global rule plugin settings into routes. True when
  // no error was found.
  bool link();
  // limit-count's `group`: every configuration naming one group must be the same (loader.h
  // whole_document_rules: files only).
  void check_limit_groups();
  // The kept resources, in document order (those that failed validation are left out).
  Config take() { return std::move(config_); }

 private:
  // Valid resources go straight into config_ (no second copy at take(): a Route is ~1 KB); per section, the
  // document index of each kept resource and where each id was defined.
  struct Definition {
    size_t index = 0;  // position in the document's list
    long kept = -1;    // position in the Config vector; -1 when the resource failed validation
  };
  struct Section {
    std::vector<size_t> index;  // per kept resource: its document index
    IdIndex<Definition> by_id;  // first definition of each id
  };
  template <typename T>
  void keep_in(std::vector<T>& kept, SectionKind kind, size_t index, std::optional<T> value, std::string id);
  Section& section(SectionKind kind) { return sections_[static_cast<size_t>(kind)]; }

  Errors& errors_;
  Config config_;
  Section sections_[std::size(kSectionNames)];
};

}  // namespace portico::config::detail
