// The machine's measured single-precision GEMM rate: the peak that CPU MFU is reported against
// (docs/method.md §6.1: on a CPU, MFU is measured against this rate, not a datasheet peak).
#pragma once

#include <cstdint>

namespace escale {

struct SgemmRate {
  int64_t size = 0;      // square matrix size that was timed
  int threads = 0;
  double gflops = 0;     // best of the repetitions
  double seconds = 0;    // time spent measuring
};

// Times C = A*B (n x n, OpenBLAS) repeatedly for at least `min_seconds`; `threads` <= 0 uses
// OpenBLAS's default. Returns the best rate seen (the attainable peak, not the average).
SgemmRate MeasureSgemmRate(int64_t n, int threads, double min_seconds);

}  // namespace escale
