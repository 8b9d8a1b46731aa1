// Open-addressing hash table from byte strings to two uint32 values, with the keys in one arena:
// the encoder's per-word cache and the BPE model's bytes -> id lookup. Both are probed once per
// pre-token; node-based std::unordered_map spends most of that time on dependent cache misses
// (bucket, node, key), a flat array of 20-byte slots holding the hash costs one miss plus the
// key comparison.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace escale::tok {

// 64-bit hash of short byte strings: 8 bytes per multiply, then a finaliser.
inline uint64_t HashBytes(std::string_view s) {
  constexpr uint64_t kMul = 0x9e3779b97f4a7c15ull;
  uint64_t h = s.size() * kMul;
  const char* p = s.data();
  size_t n = s.size();
  while (n >= 8) {
    uint64_t w;
    std::memcpy(&w, p, 8);
    h = (h ^ w) * kMul;
    h ^= h >> 29;
    p += 8;
    n -= 8;
  }
  if (n > 0) {
    uint64_t w = 0;
    std::memcpy(&w, p, n);
    h = (h ^ w) * kMul;
  }
  h ^= h >> 32;
  h *= 0xd6e8feb86659fd93ull;
  h ^= h >> 32;
  return h;
}

// a[0, n) == b[0, n) for the short keys of the tables without a call to memcmp: overlapping
// loads from both ends, never past either buffer.
inline bool SameBytes(const char* a, const char* b, size_t n) {
  if (n >= 8) {
    if (n > 16) return std::memcmp(a, b, n) == 0;
    uint64_t x0, y0, x1, y1;
    std::memcpy(&x0, a, 8);
    std::memcpy(&y0, b, 8);
    std::memcpy(&x1, a + n - 8, 8);
    std::memcpy(&y1, b + n - 8, 8);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
  }
  if (n >= 4) {
    uint32_t x0, y0, x1, y1;
    std::memcpy(&x0, a, 4);
    std::memcpy(&y0, b, 4);
    std::memcpy(&x1, a + n - 4, 4);
    std::memcpy(&y1, b + n - 4, 4);
    return ((x0 ^ y0) | (x1 ^ y1)) == 0;
  }
  for (size_t i = 0; i < n; ++i) {
    if (a[i] != b[i]) return false;
  }
  return true;
}

class StringTable {
 public:
  struct Value {
    uint32_t a = 0;
    uint32_t b = 0;
  };

  // The value stored for `key`, or nullptr. `hash` is HashBytes(key).
  const Value* Find(std::string_view key, uint64_t hash) const {
    if (slots_.empty()) return nullptr;
    const auto tag = static_cast<uint32_t>(hash);
    for (size_t i = (hash >> 32) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key_off == kEmpty) return nullptr;
      if (s.hash == tag && s.key_len == key.size() &&
          SameBytes(keys_.data() + s.key_off, key.data(), key.size())) {
        return &s.v;
      }
    }
  }
  const Value* Find(std::string_view key) const { return Find(key, HashBytes(key)); }
  // Starts loading the slot a later Find(key, hash) probes first: the tables are larger than the
  // caches, so a lookup is a memory access and issuing several ahead overlaps them.
  void Prefetch(uint64_t hash) const {
    if (!slots_.empty()) __builtin_prefetch(&slots_[(hash >> 32) & mask_]);
  }
  // Inserts `key` or overwrites its value.
  void InsertOrAssign(std::string_view key, Value v);
  void Reserve(size_t n);
  void Clear();
  size_t size() const { return size_; }

 private:
  static constexpr uint32_t kEmpty = ~uint32_t{0};
  struct Slot {
    uint32_t hash = 0;
    uint32_t key_off = kEmpty;
    uint32_t key_len = 0;
    Value v;
  };
  void Rehash(size_t capacity);
  std::vector<Slot> slots_;
  std::string keys_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

}  // namespace escale::tok
