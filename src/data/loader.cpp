#include "data/loader.h"

#include <numeric>
#include <string>

#include "core/rng.h"

namespace escale {

Result<DataLoader> DataLoader::Create(std::vector<TokenArray> arrays, int64_t seq_len,
                                      int64_t micro_batch, int64_t vocab_size, uint64_t seed,
                                      bool shuffle, const std::string& stream) {
  if (seq_len < 1 || micro_batch < 1)
    return InvalidArgument("sequence length and micro-batch must be positive");
  DataLoader d;
  d.seq_len_ = seq_len;
  d.micro_batch_ = micro_batch;
  d.vocab_ = vocab_size;
  d.seed_ = seed;
  d.shuffle_ = shuffle;
  d.stream_ = stream;
  for (size_t a = 0; a < arrays.size(); ++a) {
    if (arrays[a].bytes_per_token != 2 && arrays[a].bytes_per_token != 4)
      return InternalError("token arrays hold 2- or 4-byte ids");
    for (int64_t s = 0; s + seq_len + 1 <= arrays[a].count; s += seq_len)
      d.windows_.push_back({static_cast<uint32_t>(a), s});
  }
  if (d.windows_.empty())
    return InvalidArgument(
        "the data holds no window of seq_len+1 = " + std::to_string(seq_len + 1) +
        " tokens; use more data or a shorter --seq-len");
  d.arrays_ = std::move(arrays);
  d.order_.resize(d.windows_.size());
  d.Reshuffle();
  return d;
}

void DataLoader::Reshuffle() {
  std::iota(order_.begin(), order_.end(), 0u);
  if (!shuffle_) return;
  Rng rng = Rng::Stream(seed_, stream_ + "/epoch/" + std::to_string(cursor_.epoch));
  for (size_t i = order_.size() - 1; i > 0; --i) std::swap(order_[i], order_[rng.NextBelow(i + 1)]);
}

Status DataLoader::Restore(const DataCursor& c) {
  if (c.epoch < 0 || c.position < 0 || c.position > windows())
    return FormatError("data cursor (epoch " + std::to_string(c.epoch) + ", position " +
                       std::to_string(c.position) + ") does not fit this data (" +
                       std::to_string(windows()) +
                       " windows); was the run resumed with other shards or --seq-len?");
  cursor_ = c;
  Reshuffle();
  return Status::Ok();
}

Status DataLoader::Next(std::span<int32_t> tokens, std::span<int32_t> targets) {
  if (static_cast<int64_t>(tokens.size()) != tokens_per_batch() || tokens.size() != targets.size())
    return InternalError("batch buffers have the wrong size");
  for (int64_t b = 0; b < micro_batch_; ++b)
    ESCALE_RETURN_IF_ERROR(NextWindow(tokens.data() + b * seq_len_, targets.data() + b * seq_len_));
  return Status::Ok();
}

Status DataLoader::NextWindow(int32_t* tokens, int32_t* targets) {
  if (cursor_.position == windows()) {
    ++cursor_.epoch;
    cursor_.position = 0;
    Reshuffle();
  }
  const Window& w = windows_[order_[static_cast<size_t>(cursor_.position++)]];
  const TokenArray& a = arrays_[w.array];
  for (int64_t t = 0; t <= seq_len_; ++t) {
    const uint32_t id = a.at(w.start + t);
    if (static_cast<int64_t>(id) >= vocab_)
      return FormatError("token id " + std::to_string(id) +
                         " is outside the model's vocabulary of " + std::to_string(vocab_) +
                         "; were the shards made with another tokenizer?");
    if (t < seq_len_) tokens[t] = static_cast<int32_t>(id);
    if (t > 0) targets[t - 1] = static_cast<int32_t>(id);
  }
  return Status::Ok();
}

}  // namespace escale
