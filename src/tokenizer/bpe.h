// The BPE model over raw bytes. tokenizer.json stores tokens in the byte-level alphabet; at load
// time every token is mapped back to its bytes, so merging runs on bytes with no per-character
// decoding. Merge order: lowest rank first, leftmost on ties (tokenizers Word::merge_all).
// SentencePiece-style models (`literal`) start from UTF-8 characters instead: a character outside
// the vocabulary becomes its <0xNN> byte tokens (byte_fallback) or the unk token, consecutive unks
// fused into one under fuse_unk. An invalid UTF-8 byte counts as a one-byte character.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "tokenizer/string_table.h"

namespace escale::tok {

struct MergeInfo {
  int32_t rank;
  int32_t new_id;
};

// Open-addressing map (id pair -> merge) probed in the merge loop's innermost step; a flat table
// of 16-byte slots is several times faster than std::unordered_map here.
class MergeTable {
 public:
  void Reserve(size_t n);
  void InsertOrAssign(uint64_t key, MergeInfo v);
  const MergeInfo* Find(uint64_t key) const {
    if (slots_.empty()) return nullptr;
    for (size_t i = Hash(key) & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.key == key) return &s.v;
      if (s.key == kEmpty) return nullptr;
    }
  }
  size_t size() const { return size_; }

 private:
  static constexpr uint64_t kEmpty = ~uint64_t{0};  // no real pair: ids are < 2^31
  struct Slot {
    uint64_t key = kEmpty;
    MergeInfo v{0, 0};
  };
  static size_t Hash(uint64_t k) {
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return static_cast<size_t>(k);
  }
  void Grow();
  std::vector<Slot> slots_;
  size_t mask_ = 0;
  size_t size_ = 0;
};

struct StringViewHash {
  using is_transparent = void;
  size_t operator()(std::string_view s) const { return std::hash<std::string_view>()(s); }
};

class BpeModel {
 public:
  // Scratch reused across words so the merge loop does not allocate.
  struct Scratch {
    struct Sym {
      int32_t id;
      int32_t prev;
      int32_t next;
      uint32_t len;  // bytes covered; 0 once merged away
    };
    struct Cand {
      int32_t rank;
      int32_t pos;
      int32_t new_id;
    };
    std::vector<Sym> syms;
    std::vector<Cand> heap;
  };

  // `bytes` is one pre-token. Appends its ids to `out`.
  void Tokenize(std::string_view bytes, Scratch& scratch, std::vector<int32_t>& out) const;

  int32_t IdOfBytes(std::string_view bytes) const { return IdOfBytes(bytes, HashBytes(bytes)); }
  int32_t IdOfBytes(std::string_view bytes, uint64_t hash) const {
    const StringTable::Value* v = bytes_to_id.Find(bytes, hash);
    return v == nullptr ? -1 : static_cast<int32_t>(v->a);
  }
  const MergeInfo* FindMerge(int32_t a, int32_t b) const { return merges.Find(Key(a, b)); }
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  StringTable bytes_to_id;  // value.a = id
  MergeTable merges;
  int32_t byte_id[256];  // the one-byte token; literal models: only ASCII characters
  bool ignore_merges = false;
  bool literal = false;
  bool byte_fallback = false;
  int32_t fallback_id[256];  // <0xNN>, or -1 when the vocabulary lacks it
  int32_t unk_id = -1;
  bool fuse_unk = false;

 private:
  void InitBytes(std::string_view bytes, Scratch& s) const;
  void InitChars(std::string_view text, Scratch& s) const;
  bool HasFallback(std::string_view ch) const;
};

}  // namespace escale::tok
