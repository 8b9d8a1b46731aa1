#include "ops/cpu/fast_loss.h"

#include <cmath>

#include "ops/cpu/fast_kernels.h"

namespace escale::ops::fast {

OutputLossValues OutputLossForwardBackward(float* logits, int64_t rows, int64_t V, const int32_t* targets,
                                           const OutputLossGrad& g, double* row_scratch) {
  OutputLossValues v;
  for (int64_t t = 0; t < rows; ++t) v.counted += targets[t] >= 0 ? 1 : 0;
  const double inv = v.counted > 0 ? 1.0 / double(v.counted) : 0.0;
  double* ce = row_scratch;
  double* zz = row_scratch + rows;
  double* mz = row_scratch + 2 * rows;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < rows; ++t) {
    float* y = logits + t * V;
    const int32_t target = targets[t];
    if (target < 0) {
      ce[t] = zz[t] = mz[t] = 0;
      if (g.write)
        for (int64_t i = 0; i < V; ++i) y[i] = 0;
      continue;
    }
    float mx = y[0];
#pragma omp simd reduction(max : mx)
    for (int64_t i = 0; i < V; ++i) mx = y[i] > mx ? y[i] : mx;
    int64_t am = 0;  // first index of the maximum (the reference's tie rule)
    while (am + 1 < V && y[am] != mx) ++am;  // bounded: a NaN row never matches
    const float y_target = y[target];
    float sum = 0;
    if (g.write) {
      // One exp per element: keep exp(y - max) in place, scale it below.
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < V; ++i) {
        y[i] = FastExp(y[i] - mx);
        sum += y[i];
      }
    } else {
#pragma omp simd reduction(+ : sum)
      for (int64_t i = 0; i < V; ++i) sum += FastExp(y[i] - mx);
    }
    const double lse = double(mx) + std::log(double(sum));
    ce[t] = lse - double(y_target);
    zz[t] = lse * lse;
    mz[t] = double(mx) * double(mx);
    if (!g.write) continue;
    // d/dy of CE + cz·lse² (both through softmax) + cmz·max²; all / counted.
    const float c_soft = static_cast<float>(g.scale * inv * (1.0 + g.output_z * 2.0 * lse) / double(sum));
#pragma omp simd
    for (int64_t i = 0; i < V; ++i) y[i] *= c_soft;
    y[target] -= static_cast<float>(g.scale * inv);
    if (g.output_max_z != 0) y[am] += static_cast<float>(g.scale * inv * g.output_max_z * 2.0 * double(mx));
  }
  for (int64_t t = 0; t < rows; ++t) {
    v.ce += ce[t];
    v.output_z += zz[t];
    v.output_max_z += mz[t];
  }
  v.ce *= inv;
  v.output_z *= inv;
  v.output_max_z *= inv;
  return v;
}

}  // namespace escale::ops::fast
