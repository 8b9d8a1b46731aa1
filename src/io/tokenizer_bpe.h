// The BPE model over raw bytes. tokenizer.json stores tokens in the byte-level alphabet; at load
// time every token is mapped back to its bytes, so merging runs on bytes with no per-character
// decoding. Merge order: lowest rank first, leftmost on ties (tokenizers Word::merge_all).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace escale::tok {

struct MergeInfo {
  int32_t rank;
  int32_t new_id;
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
      uint32_t right_len;  // length of the right symbol when pushed (stale check)
    };
    std::vector<Sym> syms;
    std::vector<Cand> heap;
  };

  // `bytes` is one pre-token. Appends its ids to `out`.
  void Tokenize(std::string_view bytes, Scratch& scratch, std::vector<int32_t>& out) const;

  int32_t IdOfBytes(std::string_view bytes) const {
    auto it = bytes_to_id.find(std::string(bytes));
    return it == bytes_to_id.end() ? -1 : it->second;
  }
  const MergeInfo* FindMerge(int32_t a, int32_t b) const {
    auto it = merges.find(Key(a, b));
    return it == merges.end() ? nullptr : &it->second;
  }
  static uint64_t Key(int32_t a, int32_t b) {
    return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
  }

  std::unordered_map<std::string, int32_t> bytes_to_id;
  std::unordered_map<uint64_t, MergeInfo> merges;
  int32_t byte_id[256];
  bool ignore_merges = false;
};

}  // namespace escale::tok
