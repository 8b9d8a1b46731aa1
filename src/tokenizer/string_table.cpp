#include "tokenizer/string_table.h"

#include "core/check.h"

namespace escale::tok {

void StringTable::Rehash(size_t capacity) {
  std::vector<Slot> old = std::move(slots_);
  slots_.assign(capacity, Slot());
  mask_ = capacity - 1;
  for (const Slot& s : old) {
    if (s.key_off == kEmpty) continue;
    const std::string_view key(keys_.data() + s.key_off, s.key_len);
    size_t i = (HashBytes(key) >> 32) & mask_;
    while (slots_[i].key_off != kEmpty) i = (i + 1) & mask_;
    slots_[i] = s;
  }
}

void StringTable::Reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;  // load factor at most 1/2
  if (cap > slots_.size()) Rehash(cap);
}

void StringTable::Clear() {
  slots_.clear();
  keys_.clear();
  mask_ = 0;
  size_ = 0;
}

void StringTable::InsertOrAssign(std::string_view key, Value v) {
  if ((size_ + 1) * 2 > slots_.size()) Reserve(size_ + 1);
  const uint64_t h = HashBytes(key);
  const auto tag = static_cast<uint32_t>(h);
  for (size_t i = (h >> 32) & mask_;; i = (i + 1) & mask_) {
    Slot& s = slots_[i];
    if (s.key_off == kEmpty) {
      // Offsets are 32-bit: the tables hold a vocabulary or a bounded cache, far below 4 GB.
      ESCALE_CHECK(keys_.size() + key.size() < kEmpty);
      s.hash = tag;
      s.key_off = static_cast<uint32_t>(keys_.size());
      s.key_len = static_cast<uint32_t>(key.size());
      s.v = v;
      keys_.append(key);
      ++size_;
      return;
    }
    if (s.hash == tag && s.key_len == key.size() &&
        std::memcmp(keys_.data() + s.key_off, key.data(), key.size()) == 0) {
      s.v = v;
      return;
    }
  }
}

}  // namespace escale::tok
