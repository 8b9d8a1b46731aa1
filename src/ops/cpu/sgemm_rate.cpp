#include "ops/cpu/sgemm_rate.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <vector>

namespace escale {

namespace {

double Seconds(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Three n x n matrices and C = A*B.
struct Product {
  explicit Product(int64_t size)
      : n(static_cast<int>(size)), a(static_cast<size_t>(size * size)), b(a.size()), c(a.size()) {
    for (size_t i = 0; i < a.size(); ++i) {
      a[i] = static_cast<float>((i * 7919) % 1000) * 1e-3f - 0.5f;
      b[i] = static_cast<float>((i * 104729) % 1000) * 1e-3f - 0.5f;
    }
  }
  void Run() {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1.0f, a.data(), n, b.data(), n,
                0.0f, c.data(), n);
  }
  int n;
  std::vector<float> a, b, c;
};

}  // namespace

SgemmRate MeasureTeamSgemmRate(int64_t n, int threads, double min_seconds) {
  openblas_set_num_threads(1);
  SgemmRate r;
  r.size = n;
  r.team = true;
  double best = 0;
  bool done = false;
  const auto start = std::chrono::steady_clock::now();
#pragma omp parallel num_threads(threads > 0 ? threads : omp_get_max_threads())
  {
    Product p(n);
    p.Run();  // warm up
    std::chrono::steady_clock::time_point t0;
    while (!done) {
#pragma omp barrier
#pragma omp master
      t0 = std::chrono::steady_clock::now();
      p.Run();
#pragma omp barrier
#pragma omp master
      {
        const double dt = Seconds(t0);
        r.threads = omp_get_num_threads();
        best = std::max(best, 2.0 * double(n) * double(n) * double(n) * r.threads / dt / 1e9);
        done = Seconds(start) >= min_seconds;
      }
#pragma omp barrier
    }
  }
  r.gflops = best;
  r.seconds = Seconds(start);
  return r;
}

SgemmRate MeasurePeakSgemmRate(int threads, double seconds) {
  // One count for both ways: the team measurement leaves OpenBLAS at one thread, so "its default"
  // would mean something else for the next size.
  if (threads <= 0) threads = omp_get_max_threads();
  SgemmRate best;
  const auto start = std::chrono::steady_clock::now();
  for (const int64_t n : {1024, 2048}) {
    for (const bool team : {false, true}) {
      const SgemmRate r = team ? MeasureTeamSgemmRate(n, threads, seconds / 4)
                               : MeasureSgemmRate(n, threads, seconds / 4);
      if (r.gflops > best.gflops) best = r;
    }
  }
  best.seconds = Seconds(start);
  return best;
}

SgemmRate MeasureSgemmRate(int64_t n, int threads, double min_seconds) {
  if (threads > 0) openblas_set_num_threads(threads);
  Product p(n);
  p.Run();  // warm up caches and OpenBLAS's thread pool
  SgemmRate r;
  r.size = n;
  r.threads = openblas_get_num_threads();
  const auto start = std::chrono::steady_clock::now();
  double best = 0;
  for (;;) {
    const auto t0 = std::chrono::steady_clock::now();
    p.Run();
    best = std::max(best, 2.0 * static_cast<double>(n) * n * n / Seconds(t0) / 1e9);
    r.seconds = Seconds(start);
    if (r.seconds >= min_seconds) break;
  }
  r.gflops = best;
  return r;
}

}  // namespace escale
