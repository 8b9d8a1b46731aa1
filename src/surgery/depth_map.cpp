#include "surgery/depth_map.h"

namespace escale::surgery {

std::string_view DepthMethodName(DepthMethod d) {
  switch (d) {
    case DepthMethod::kStack: return "stack";
    case DepthMethod::kInterpolate: return "interpolate";
    case DepthMethod::kZero: return "zero";
  }
  return "?";
}

Result<DepthMap> MakeDepthMap(int64_t l1, int64_t l2, DepthMethod method) {
  if (l1 <= 0) return InvalidArgument("source has no layers");
  if (l2 < l1)
    return InvalidArgument("--layers " + std::to_string(l2) + " is fewer than the source's " + std::to_string(l1) +
                           "; depth can only grow");
  DepthMap d;
  std::vector<uint8_t> seen(static_cast<size_t>(l1), 0);
  for (int64_t l = 0; l < l2; ++l) {
    // l*l1 < l2*l1 fits easily: both are layer counts.
    const int64_t s = method == DepthMethod::kStack ? l % l1 : l * l1 / l2;
    d.src.push_back(s);
    d.zeroed.push_back(method == DepthMethod::kZero && seen[static_cast<size_t>(s)] ? 1 : 0);
    seen[static_cast<size_t>(s)] = 1;
  }
  return d;
}

}  // namespace escale::surgery
