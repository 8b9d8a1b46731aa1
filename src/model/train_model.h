// The fp32 engine of the CPU fast path, in three modes: training (forward, the docs/method.md §4
// losses and the backward of a dense or MoE Llama-family model on micro-batches of a fixed shape),
// scoring (inference mode: no gradient buffers) and decoding (inference mode with a key/value
// cache). Checked against the fp64 reference (model/reference_model.h) by
// tests/model/train_model_test.cpp and, decoding, tests/model/decoder_test.cpp.
//
// Design: fp32 master weights and gradients live in two flat buffers in canonical order, so q/k/v
// (and gate/up) of a layer are adjacent and run as one sgemm. Every activation and scratch buffer
// for the BatchShape is allocated in Create; ForwardBackward and Evaluate allocate nothing.
// Results are deterministic for a fixed OpenMP thread count.
//
// Threads: every matmul is a single-threaded OpenBLAS call on a fixed row slice inside the
// caller's OpenMP team (OpenBLAS's own pool would spin against OpenMP's). Create and each step
// therefore set OpenBLAS to one thread, process-wide; omp_set_num_threads / OMP_NUM_THREADS set
// the parallelism. On a machine shared with other jobs, OMP_WAIT_POLICY=passive avoids threads
// spinning at barriers while their partner is descheduled (docs/benchmarks.md).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"
#include "model/config.h"
#include "model/loss_terms.h"
#include "model/tensor_map.h"

namespace escale {

struct BatchShape {
  int64_t micro_batch = 1, seq_len = 1;
  // false: inference mode (scoring, `escale eval`): forward and losses only, no gradient and no
  // backward buffers; every layer reuses one layer's activations, so a model costs its fp32
  // weights and a single layer's activations for the batch.
  bool training = true;
  // Inference mode only: > 0 keeps a key/value cache of this many positions for Decode (which then
  // routes MoE tokens dropless); micro_batch·seq_len is the most tokens one decoding pass takes.
  int64_t kv_positions = 0;
};

struct MoeLayerStats {
  int64_t layer = 0;
  std::vector<int64_t> tokens_per_expert;  // assignments before capacity dropping
  int64_t dropped = 0;                     // assignments dropped by the capacity limit
  double router_entropy = 0;               // mean over tokens of the router softmax entropy (nats)
};

class TrainModel;
// An inference-mode model with a cache of max_seq positions for generation, decoding in passes of
// at most 256 tokens; `copied` as in TrainModel::Create.
Result<std::unique_ptr<TrainModel>> CreateDecoder(
    const ModelConfig& config, const TensorMap& weights, int64_t max_seq,
    const std::function<void(const Tensor&)>& copied = {});

class TrainModel {
 public:
  // Copies `init` (canonical names -> tensors of any float dtype; other names are ignored) into
  // fp32 master weights and allocates everything a step of `shape` needs. `copied`, when given, is
  // called with each tensor of `init` once its values are in the master weights (a caller holding a
  // mapped checkpoint releases its pages there, so peak memory is the fp32 copy, not the copy plus
  // the file).
  static Result<std::unique_ptr<TrainModel>> Create(
      const ModelConfig& config, const TensorMap& init, BatchShape shape,
      const LossCoefficients& coef, const std::function<void(const Tensor&)>& copied = {});
  ~TrainModel();
  TrainModel(const TrainModel&) = delete;
  TrainModel& operator=(const TrainModel&) = delete;

  // One micro-batch of micro_batch*seq_len tokens and targets (target < 0: not counted): forward,
  // loss terms, backward. The gradient of grad_scale·total is ADDED to the grad buffers (pass
  // 1/accumulation_steps to average micro-batches). The returned terms are unscaled.
  Result<LossTerms> ForwardBackward(std::span<const int32_t> tokens, std::span<const int32_t> targets,
                                    float grad_scale = 1.0f);
  // Forward and loss terms only; gradients untouched. The only step of an inference-mode model.
  Result<LossTerms> Evaluate(std::span<const int32_t> tokens, std::span<const int32_t> targets);
  void ZeroGrads();

  // Decoding (kv_positions > 0): runs `tokens` at positions position()..position()+n-1, in passes
  // of at most micro_batch·seq_len tokens, caches their keys and values, and returns the logits
  // [V] after the last one (valid until the next call). A generated token costs one token's
  // forward, not the prefix's. Fails, cache unchanged, on overflow or an id outside the vocabulary.
  Result<std::span<const float>> Decode(std::span<const int32_t> tokens);
  int64_t position() const;      // positions in the cache
  int64_t kv_positions() const;  // its capacity
  void Truncate(int64_t n);      // forgets positions from n on (0: all), e.g. to reuse a prompt

  struct Param {
    std::string name;
    std::span<float> value;
    std::span<float> grad;
    bool decay;  // false for norms, biases, embeddings
  };
  std::span<Param> params();  // canonical names and order
  std::span<const Param> params() const;
  const std::vector<MoeLayerStats>& moe_stats() const;  // of the last forward (MoE layers only)
  TensorMap ExportTensors() const;                      // fp32 copies, canonical names and shapes
  const ModelConfig& config() const;
  BatchShape shape() const;
  // Logits [micro_batch*seq_len, V] of the last Evaluate (ForwardBackward overwrites them with
  // their gradient).
  std::span<const float> logits() const;

  // Wall time per op (forward and backward separately), accumulated while profiling is on; for
  // `escale bench train`. Costs two clock reads per op.
  void SetProfiling(bool on);
  std::vector<std::pair<std::string, double>> Profile() const;  // op name -> seconds

  // Fills every activation and scratch buffer with NaN (weights and gradients untouched), so a
  // test can show that a step never reads a value it did not write first.
  void PoisonActivationsForTesting();

  struct Impl;

 private:
  explicit TrainModel(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace escale
