// Reader for Megatron-LM indexed datasets (MMapIndexedDataset, docs/tokenizer.md):
// PREFIX.idx describes sequences stored back to back in PREFIX.bin.
//   .idx: "MMIDIDX\0\0", u64 version (1), u8 dtype code, u64 sequence count S, u64 document
//         count D, int32[S] lengths, int64[S] byte pointers, int64[D] document indices
//         (0, ..., S), optionally int8[S] modes (multimodal datasets only).
// Every field is checked against the file sizes before any token is read.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"

namespace escale::tok {

class MegatronDataset {
 public:
  // `prefix` without extension; `vocab_size` > 0 also checks every id.
  static Result<MegatronDataset> Open(const std::string& prefix, int64_t vocab_size = 0);
  uint64_t sequences() const { return lengths_.size(); }
  uint64_t documents() const { return doc_index_.empty() ? 0 : doc_index_.size() - 1; }
  uint64_t tokens() const { return total_tokens_; }
  int token_bytes() const { return width_; }
  // Sequence `i`'s ids.
  std::vector<int64_t> Sequence(uint64_t i) const;
  // Sequence indices [begin, end) of document `d`.
  std::pair<uint64_t, uint64_t> DocumentSequences(uint64_t d) const {
    return {static_cast<uint64_t>(doc_index_[d]), static_cast<uint64_t>(doc_index_[d + 1])};
  }

 private:
  int64_t TokenAt(uint64_t byte_offset) const;
  std::shared_ptr<const MappedFile> bin_;
  std::vector<int32_t> lengths_;
  std::vector<int64_t> pointers_;
  std::vector<int64_t> doc_index_;
  uint8_t dtype_ = 0;
  int width_ = 0;
  uint64_t total_tokens_ = 0;
};

}  // namespace escale::tok
