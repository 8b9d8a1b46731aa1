// AdamW's moments through growth and upcycling (docs/method.md §4.3). At a grown model that
// computes its source's function, the gradient of each new tensor is a fixed rescaling of a
// source tensor's gradient: a copied unit whose consumers divide it by its copy count C receives
// 1/C of the gradient, a split column (divided by C) the whole of it. m is mapped as that gradient
// and v as its square, so the first carried update equals the update the source would have made.
// Where no such relation holds (zero-initialised or duplicated layers, mean-pooled heads, routers)
// a tensor starts fresh: zeros and steps = 0, AdamW's own bias correction.
#pragma once

#include "io/optimizer_moments.h"
#include "surgery/scale_out.h"
#include "surgery/scale_up.h"

namespace escale::surgery {

// `source` holds every source tensor the plan reads (sizes are checked). Exact for FPI width
// growth without symmetry noise (tests compare against the gradient of the grown model); for AKI's
// new units, noise and stacking a heuristic that keeps the source's scale.
Result<MomentMap> ScaleUpMoments(const ScaleUpPlan& plan, const MomentMap& source);
// Routed experts take the dense FFN's moments scaled by their expected share of its gradient under
// a balanced router (summed over the experts that hold one slice, exactly the dense gradient of
// that slice), the shared expert half (its gate starts at sigmoid(0)); routers start fresh.
Result<MomentMap> ScaleOutMoments(const ScaleOutPlan& plan, const MomentMap& source);

}  // namespace escale::surgery
