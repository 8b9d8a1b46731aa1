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
  bool team = false;     // measured the engine's way: one single-threaded sgemm per OpenMP thread
};

// Times C = A*B (n x n, OpenBLAS) repeatedly for at least `min_seconds`; `threads` <= 0 uses
// OpenBLAS's default. Returns the best rate seen (the attainable peak, not the average).
SgemmRate MeasureSgemmRate(int64_t n, int threads, double min_seconds);

// The same rate the way the engine runs its matmuls: each of `threads` OpenMP threads multiplies
// its own n x n matrices with single-threaded OpenBLAS; the rate is the team's, best round seen.
SgemmRate MeasureTeamSgemmRate(int64_t n, int threads, double min_seconds);

// The peak MFU is reported against: the best of both ways at n = 1024 and 2048 within `seconds`,
// so neither a slow moment nor the engine's threading can make MFU read above 100%.
SgemmRate MeasurePeakSgemmRate(int threads, double seconds);

}  // namespace escale
