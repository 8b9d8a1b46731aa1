// Pretraining token shards in llm.c's .bin layout (docs/tokenizer.md, "Token shards"):
//   header: 256 x int32 little-endian; [0] magic, [1] version, [2] token count, rest 0;
//   body:   token ids, uint16 (magic 20240520, version 1) or uint32 (magic 20240801, version 7,
//           llm.c's Llama 3 variant) little-endian; file size == 1024 + count * width.
// A shard set is a directory of train_NNNNNN.bin / val_NNNNNN.bin plus manifest.json, written
// last: a directory with no manifest.json is not a finished shard set.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "core/mapped_file.h"
#include "core/status.h"

namespace escale::tok {

constexpr int32_t kShardMagicU16 = 20240520;
constexpr int32_t kShardVersionU16 = 1;
constexpr int32_t kShardMagicU32 = 20240801;
constexpr int32_t kShardVersionU32 = 7;
constexpr size_t kShardHeaderInts = 256;
constexpr size_t kShardHeaderBytes = kShardHeaderInts * 4;

// Token width a vocabulary needs: 2 bytes while every id fits in uint16.
inline int ShardTokenBytes(int64_t vocab_size) {
  return vocab_size <= 65536 ? 2 : 4;
}

// Writes one shard through an AtomicFile: it appears under its name complete or not at all.
class ShardWriter {
 public:
  static Result<ShardWriter> Create(const std::string& path, int token_bytes);
  ShardWriter(ShardWriter&&) noexcept;
  ShardWriter& operator=(ShardWriter&&) = delete;
  ShardWriter(const ShardWriter&) = delete;
  ~ShardWriter();
  // Ids must fit the token width (checked; an id too wide is an error, never truncated).
  Status Append(const int32_t* ids, size_t n);
  Status Commit();
  uint64_t tokens() const { return tokens_; }

 private:
  ShardWriter();
  struct Impl;
  std::unique_ptr<Impl> impl_;
  uint64_t tokens_ = 0;
};

// A validated, memory-mapped shard.
class TokenShard {
 public:
  // Checks magic, version, the token count against the file size, and, when `vocab_size` is
  // given, that every id is below it. Each failure is one line naming the file and the problem.
  static Result<TokenShard> Open(const std::string& path,
                                 std::optional<int64_t> vocab_size = std::nullopt);
  uint64_t size() const { return count_; }
  int token_bytes() const { return width_; }
  uint32_t operator[](uint64_t i) const;
  // The ids in place (uint16 or uint32 per token_bytes()), valid while this shard lives.
  const void* data() const;
  std::vector<int32_t> Slice(uint64_t begin, uint64_t n) const;

 private:
  std::shared_ptr<const MappedFile> file_;
  uint64_t count_ = 0;
  int width_ = 2;
};

// The shard files PREFIX_*.bin of a tokenize output directory, sorted; refused when the directory
// has no manifest.json (it is written last, so its absence means an unfinished output).
Result<std::vector<std::string>> ListShardFiles(const std::string& dir, const std::string& prefix);
// A shard set's manifest must be escale tokenize's, and when `tokenizer_json` names a file the
// shards must have been made with those exact bytes (the manifest records their sha256): other
// ids would train "successfully" into garbage.
Status CheckShardManifest(const std::string& dir, const std::string& tokenizer_json);

// `escale tokenize`: documents -> shard set directory.
struct TokenizeOptions {
  std::string tokenizer_path;
  std::vector<std::string> inputs;
  std::string output_dir;
  double val_fraction = 0.0;
  int workers = 1;
  uint64_t seed = 0;
  uint64_t shard_tokens = 100'000'000;  // llm.c's default shard size
  std::string delimiter;                // token string; empty = BOS, else <|endoftext|>, else EOS
  std::string jsonl_filter;             // "KEY=VALUE": only JSONL documents whose field matches
  bool overwrite = false;
  bool progress = true;
};

struct TokenizeSummary {
  uint64_t documents = 0;
  uint64_t tokens = 0;
  uint64_t bytes = 0;  // document text (JSONL syntax not counted)
  double seconds = 0;
  double cpu_seconds = 0;  // process CPU time of the encode/write phase (all threads)
};

Result<TokenizeSummary> TokenizeToShards(const TokenizeOptions& opts);

// True when document `index` goes to the validation split (deterministic in seed and index).
bool IsValidationDocument(uint64_t seed, uint64_t index, double val_fraction);

}  // namespace escale::tok
