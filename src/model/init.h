// Random initialisation of a model from its config (training from scratch, the baseline of
// every EfficientScale comparison). Each tensor draws from its own named RNG stream, so the
// result depends on the seed alone: not on thread count, tensor order or machine.
#pragma once

#include <cstdint>

#include "model/config.h"
#include "model/tensor_map.h"

namespace escale {

struct InitOptions {
  uint64_t seed = 1234;
  double std = 0.02;  // N(0, std^2) for embeddings and matrices (GPT-2 / Llama convention)
  // Output projections of each residual branch (wo, down) use std / sqrt(2 * layers), GPT-2's
  // scaled init, so the residual stream's variance does not grow with depth.
  bool scale_residual_outputs = true;
};

// F32 tensors for every canonical tensor: norms 1, biases 0, everything else Gaussian.
TensorMap RandomInit(const ModelConfig& config, const InitOptions& opt);

}  // namespace escale
