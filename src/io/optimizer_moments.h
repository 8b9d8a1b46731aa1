// AdamW's moments outside a training run: a training checkpoint's state mapped through scale-up or
// scale-out and stored inside the grown model's directory, so that `escale train --carry-moments`
// continues the source's optimizer instead of starting it from zero (docs/method.md §4.3).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace escale {

struct TensorMoments {
  std::vector<float> m, v;  // flat, the tensor's canonical shape in row-major order
  int64_t steps = 0;  // AdamW updates behind m and v, where bias correction continues; 0: fresh
};
using MomentMap = std::map<std::string, TensorMoments>;  // canonical tensor name -> its moments

// Where a grown model keeps them: a subdirectory, because loaders that take every *.safetensors
// file of a model directory as weights (vLLM without an index) must not see this one.
inline constexpr const char* kMomentsFile = "moments/moments.safetensors";

class SafetensorsFile;
// m.NAME and v.NAME of `f`: fp32 vectors of one size, finite, v >= 0 (steps left at 0). Both a
// moments file and a training checkpoint's optimizer.safetensors hold them this way.
Result<TensorMoments> ReadMomentPair(const SafetensorsFile& f, const std::string& name);

// m.NAME and v.NAME as fp32 vectors; each tensor's steps in the metadata. Written atomically.
Status WriteMomentsFile(const std::string& path, const MomentMap& moments);
// Checks what it reads: pairs of m and v of equal size, finite values, v >= 0, steps >= 0.
Result<MomentMap> ReadMomentsFile(const std::string& path);

}  // namespace escale
