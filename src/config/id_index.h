// Private to src/config. A map from resource id to where it was defined, built once per load with up to
// hundreds of thousands of ids: open addressing over a vector of entries, so an insert allocates nothing
// beyond the vectors' growth (short ids stay inside std::string) - a node-based unordered_map cost ~10% of a
// 100k-route load.
#pragma once

#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace portico::config::detail {

template <typename Value>
class IdIndex {
 public:
  // Inserts `id` unless present (`id` is moved from only when inserted). Returns the value stored for `id`
  // (the earlier one when it was present) and whether this call inserted it.
  std::pair<const Value*, bool> insert(std::string&& id, Value value) {
    if ((entries_.size() + 1) * 2 > slots_.size()) grow();
    const size_t hash = std::hash<std::string_view>{}(id);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      if (slots_[i] == 0) {
        entries_.push_back(Entry{std::move(id), std::move(value), hash});
        slots_[i] = static_cast<uint32_t>(entries_.size());
        return {&entries_.back().value, true};
      }
      const Entry& e = entries_[slots_[i] - 1];
      if (e.hash == hash && e.id == id) return {&e.value, false};
    }
  }

  const Value* find(std::string_view id) const {
    if (entries_.empty()) return nullptr;
    const size_t hash = std::hash<std::string_view>{}(id);
    for (size_t i = hash & mask_;; i = (i + 1) & mask_) {
      if (slots_[i] == 0) return nullptr;
      const Entry& e = entries_[slots_[i] - 1];
      if (e.hash == hash && e.id == id) return &e.value;
    }
  }

  bool contains(std::string_view id) const { return find(id) != nullptr; }

 private:
  struct Entry {
    std::string id;
    Value value;
    size_t hash;
  };

  void grow() {
    const size_t size = slots_.empty() ? 64 : slots_.size() * 2;
    slots_.assign(size, 0);
    mask_ = size - 1;
    for (size_t k = 0; k < entries_.size(); ++k) {
      size_t i = entries_[k].hash & mask_;
      while (slots_[i] != 0) i = (i + 1) & mask_;
      slots_[i] = static_cast<uint32_t>(k + 1);
    }
  }

  std::vector<Entry> entries_;
  std::vector<uint32_t> slots_;  // 0 = empty, else 1 + index into entries_
  size_t mask_ = 0;
};

}  // namespace portico::config::detail
