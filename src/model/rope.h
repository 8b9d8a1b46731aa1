// RoPE inverse frequencies from a model config (docs/method.md §1): default, linear,
// dynamic (NTK, at sequence length T) and llama3. Other rope_scaling types are refused.
#pragma once

#include <cstdint>
#include <vector>

#include "core/status.h"
#include "model/config.h"

namespace escale {

struct RopeFrequencies {
  std::vector<double> inv_freq;   // [head_dim/2]
  double attention_factor = 1.0;  // multiplies cos and sin (1 for every supported type)
};

Result<RopeFrequencies> ComputeRopeFrequencies(const ModelConfig& c, int64_t seq_len);

}  // namespace escale
