// Batches of training windows from token arrays (the shards of `escale tokenize`).
//
// Each shard is cut into non-overlapping windows of seq_len+1 tokens (inputs and next-token
// targets; windows never cross a shard boundary). An epoch visits every window once in an order
// shuffled by (seed, epoch) with a portable RNG, so the data order depends on the seed alone and
// a cursor of two integers (epoch, position) restores it exactly on resume. Blends of several
// loaders are in data/blend.h.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"

namespace escale {

// A read-only run of token ids (uint16 or uint32), kept alive by `owner` (an mmapped shard).
struct TokenArray {
  const void* data = nullptr;
  int64_t count = 0;
  int bytes_per_token = 2;
  std::shared_ptr<const void> owner;
  uint32_t at(int64_t i) const {
    return bytes_per_token == 2 ? static_cast<const uint16_t*>(data)[i]
                                : static_cast<const uint32_t*>(data)[i];
  }
};

struct DataCursor {
  int64_t epoch = 0;
  int64_t position = 0;  // windows of this epoch already served
};

class DataLoader {
 public:
  // `shuffle` false serves windows in file order (validation). `stream` names the RNG stream of
  // the epoch shuffles, so the sources of a blend draw independent orders from one seed.
  static Result<DataLoader> Create(std::vector<TokenArray> arrays, int64_t seq_len,
                                   int64_t micro_batch, int64_t vocab_size, uint64_t seed,
                                   bool shuffle, const std::string& stream = "data");
  // Fills micro_batch*seq_len inputs and targets and advances the cursor.
  Status Next(std::span<int32_t> tokens, std::span<int32_t> targets);
  // Fills one window: seq_len inputs at `tokens`, seq_len targets at `targets`.
  Status NextWindow(int32_t* tokens, int32_t* targets);
  const DataCursor& cursor() const { return cursor_; }
  Status Restore(const DataCursor& c);
  int64_t windows() const { return static_cast<int64_t>(windows_.size()); }
  // Windows served since the start of epoch 0.
  int64_t served() const { return cursor_.epoch * windows() + cursor_.position; }
  int64_t tokens_per_batch() const { return seq_len_ * micro_batch_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t micro_batch() const { return micro_batch_; }

 private:
  struct Window {
    uint32_t array;
    int64_t start;
  };
  void Reshuffle();
  std::vector<TokenArray> arrays_;
  std::vector<Window> windows_;
  std::vector<uint32_t> order_;  // permutation of window indices for the current epoch
  int64_t seq_len_ = 0, micro_batch_ = 0, vocab_ = 0;
  uint64_t seed_ = 0;
  std::string stream_;
  bool shuffle_ = true;
  DataCursor cursor_;
};

// Which validation windows an evaluation scores. `eval_batches` > 0: that many micro-batches of
// the split's first windows (at least one); 0: every complete seq_len window of the split, the
// last batch partly filled (its padding is not scored). The loss is the mean over the scored
// windows, the definition `escale eval --shards` reports as validation_loss.
struct ValidationPlan {
  int64_t windows = 0, batches = 0, micro_batch = 1;
  int64_t Rows(int64_t batch) const { return std::min(micro_batch, windows - batch * micro_batch); }
};
inline ValidationPlan PlanValidation(int64_t available, int64_t micro_batch, int64_t eval_batches) {
  ValidationPlan p;
  p.micro_batch = micro_batch;
  if (eval_batches == 0) {
    p.windows = available;
    p.batches = (available + micro_batch - 1) / micro_batch;
  } else {
    p.batches = std::max<int64_t>(1, std::min<int64_t>(eval_batches, available / micro_batch));
    p.windows = p.batches * micro_batch;
  }
  return p;
}

}  // namespace escale
