// The whole-model forward pass in fp64, written for clarity, not speed: the oracle that fast
// paths, surgery (function preservation) and `escale verify` are checked against.
#pragma once

#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "core/tensor.h"
#include "model/config.h"
#include "model/tensor_map.h"

namespace escale {

struct ReferenceForwardOptions {
  bool collect_residuals = false;  // keep the residual stream after every layer
};

struct ReferenceForwardResult {
  int64_t tokens = 0;
  int64_t vocab = 0;
  std::vector<double> logits;                  // [T, V] row-major
  std::vector<std::vector<double>> residuals;  // per layer [T, H], when asked
};

// Runs one causal sequence (positions 0..T-1) through the model. Tensors may be F32, F16, BF16
// or F64; everything is computed in fp64. MoE layers follow config.moe (router type, top-k,
// capacity factor with its drop policy, shared expert).
Result<ReferenceForwardResult> ReferenceForward(const ModelConfig& config, const TensorMap& tensors,
                                                std::span<const int32_t> tokens,
                                                const ReferenceForwardOptions& opt = {});

}  // namespace escale
