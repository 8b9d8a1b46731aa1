// Incremental inference with a key/value cache: the fp32 forward of one or more new tokens at the
// current position, for generation. Each call feeds tokens (a prompt chunk or the last sampled
// token) and returns the logits after the last of them; keys and values of every position fed so
// far stay in the cache, so a generated token costs one token's forward, not the whole prefix.
//
// Same model as the fp64 reference (tests/model/decoder_test.cpp checks the logits at every
// position against ReferenceForward on the whole sequence); MoE layers route dropless.
// Matrix-vector products split their output rows over the OpenMP team (one token has no rows to
// split), larger chunks use the engine's row-split sgemm.
#pragma once

#include <cstdint>
#include <memory>
#include <span>

#include "core/status.h"
#include "model/config.h"
#include "model/reference_forward.h"

namespace escale {

class Decoder {
 public:
  // Copies the weights to fp32 and allocates a cache of max_seq positions.
  static Result<std::unique_ptr<Decoder>> Create(const ModelConfig& config,
                                                 const TensorMap& weights, int64_t max_seq);
  ~Decoder();
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;

  // Runs `tokens` at positions position()..position()+n-1 and returns the logits [V] after the
  // last one (valid until the next call). Fails when the cache would overflow or an id is out of
  // range; the cache is then unchanged.
  Result<std::span<const float>> Append(std::span<const int32_t> tokens);
  // Forgets every cached position.
  void Reset();
  // Drops cached positions from `n` on (n <= position()), e.g. to reuse a shared prompt prefix.
  void Truncate(int64_t n);
  int64_t position() const;
  int64_t max_seq() const;
  const ModelConfig& config() const;

  struct Impl;

 private:
  explicit Decoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace escale
