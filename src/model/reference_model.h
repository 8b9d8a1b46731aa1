// Whole-model reference loss and gradients in fp64 (docs/method.md §1 and §4): the oracle the
// training engine's backward is checked against. Plain loops; meant for tiny models and tests.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/config.h"
#include "model/loss_terms.h"
#include "model/reference_forward.h"

namespace escale {

struct ReferenceModelResult {
  LossTerms loss;
  std::vector<double> logits;                          // [B*T, V]
  std::map<std::string, std::vector<double>> grads;    // canonical name -> dloss/dtensor, row-major
  std::vector<std::vector<int64_t>> expert_load;       // per layer (empty when dense), before dropping
  int64_t dropped_assignments = 0;                     // over all MoE layers
};

// tokens and targets: B sequences of seq_len each, concatenated. A target < 0 is not counted.
// Capacity limits apply per sequence (docs/method.md §3.3: T tokens of the sequence).
Result<ReferenceModelResult> ReferenceLossAndGradients(const ModelConfig& config, const TensorMap& tensors,
                                                       std::span<const int32_t> tokens,
                                                       std::span<const int32_t> targets, int64_t seq_len,
                                                       const LossCoefficients& coef);

}  // namespace escale
