#include "ops/cpu/sgemm_rate.h"

#include <cblas.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace escale {

SgemmRate MeasureSgemmRate(int64_t n, int threads, double min_seconds) {
  if (threads > 0) openblas_set_num_threads(threads);
  std::vector<float> a(static_cast<size_t>(n * n)), b(a.size()), c(a.size());
  for (size_t i = 0; i < a.size(); ++i) {
    a[i] = static_cast<float>((i * 7919) % 1000) * 1e-3f - 0.5f;
    b[i] = static_cast<float>((i * 104729) % 1000) * 1e-3f - 0.5f;
  }
  const int ni = static_cast<int>(n);
  auto once = [&] {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, ni, ni, ni, 1.0f, a.data(), ni, b.data(), ni,
                0.0f, c.data(), ni);
  };
  once();  // warm up caches and OpenBLAS's thread pool
  SgemmRate r;
  r.size = n;
  r.threads = openblas_get_num_threads();
  const auto start = std::chrono::steady_clock::now();
  double best = 0;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    once();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::max(best, 2.0 * static_cast<double>(n) * n * n / dt / 1e9);
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    if (r.seconds >= min_seconds) break;
  }
  r.gflops = best;
  return r;
}

}  // namespace escale
