// RoPE inverse frequencies from a model config (docs/method.md §1): default, linear and llama3.
// Other rope_scaling types (dynamic, yarn, longrope) are refused, never computed as plain RoPE;
// the config reader already refuses them, this is the second line.
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

Result<RopeFrequencies> ComputeRopeFrequencies(const ModelConfig& c);

// The fast engines' fp32 tables for positions [0, positions): cos and sin of t * inv_freq[j]
// (times the attention factor), row t at [t * head_dim/2, (t+1) * head_dim/2). Angles in fp64.
struct RopeTables {
  std::vector<float> cos, sin;
};
Result<RopeTables> ComputeRopeTables(const ModelConfig& c, int64_t positions);

}  // namespace escale
