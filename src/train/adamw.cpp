#include "train/adamw.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace escale {

void AdamWUpdate(const AdamWConfig& c, int64_t t, double lr, bool decay, std::span<float> params,
                 std::span<const float> grads, std::span<float> m, std::span<float> v) {
  const float b1 = static_cast<float>(c.beta1), b2 = static_cast<float>(c.beta2);
  const float bc1 = static_cast<float>(1.0 - std::pow(c.beta1, static_cast<double>(t)));
  const float bc2 = static_cast<float>(1.0 - std::pow(c.beta2, static_cast<double>(t)));
  const float lr_f = static_cast<float>(lr), eps = static_cast<float>(c.eps);
  const float wd = decay ? static_cast<float>(c.weight_decay) : 0.0f;
  const int64_t n = static_cast<int64_t>(params.size());
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) {
    const float g = grads[i];
    const float mi = b1 * m[i] + (1.0f - b1) * g;
    const float vi = b2 * v[i] + (1.0f - b2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float mhat = mi / bc1, vhat = vi / bc2;
    params[i] -= lr_f * (mhat / (std::sqrt(vhat) + eps) + wd * params[i]);
  }
}

double SumOfSquares(std::span<const float> x) {
  constexpr int64_t kBlock = 4096;
  const int64_t n = static_cast<int64_t>(x.size());
  const int64_t blocks = (n + kBlock - 1) / kBlock;
  // Reused across calls: the training step must not allocate once warmed up.
  thread_local std::vector<double> partial;
  if (partial.size() < static_cast<size_t>(blocks)) partial.resize(static_cast<size_t>(blocks));
  // OpenMP workers have thread_locals of their own: hand them this thread's buffer.
  double* const out = partial.data();
#pragma omp parallel for schedule(static) if (blocks > 8)
  for (int64_t b = 0; b < blocks; ++b) {
    double s = 0;
    const int64_t end = std::min(n, (b + 1) * kBlock);
    for (int64_t i = b * kBlock; i < end; ++i) s += static_cast<double>(x[i]) * x[i];
    out[b] = s;
  }
  double total = 0;
  for (int64_t b = 0; b < blocks; ++b) total += partial[static_cast<size_t>(b)];
  return total;
}

void Scale(std::span<float> x, float scale) {
  const int64_t n = static_cast<int64_t>(x.size());
#pragma omp parallel for schedule(static) if (n > 32768)
  for (int64_t i = 0; i < n; ++i) x[i] *= scale;
}

double ClipFactor(double global_norm, double max_norm) {
  if (!(max_norm > 0) || !(global_norm > max_norm)) return 1.0;
  return max_norm / global_norm;
}

}  // namespace escale
