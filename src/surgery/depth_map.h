// Depth growth L1 -> L2 (docs/method.md §2.3): which source layer each target layer is copied
// from, and which copies start with zeroed output projections.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"

namespace escale::surgery {

// stack: l <- l mod L1 (StackBERT). interpolate: l <- floor(l*L1/L2) (Apollo; 3->6 = 0,0,1,1,2,2).
// zero: interpolation placement, and every repeat after a source layer's first occurrence gets
// o_proj = down_proj = 0, so the block adds nothing to the residual (LLaMA-Pro): exact.
enum class DepthMethod { kStack, kInterpolate, kZero };
std::string_view DepthMethodName(DepthMethod d);

struct DepthMap {
  std::vector<int64_t> src;     // source layer of each target layer
  std::vector<uint8_t> zeroed;  // 1: o_proj and down_proj start at zero
};
Result<DepthMap> MakeDepthMap(int64_t l1, int64_t l2, DepthMethod method);

}  // namespace escale::surgery
