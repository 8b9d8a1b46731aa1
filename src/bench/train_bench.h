// escale bench train: training throughput of the fp32 CPU fast path (forward + backward + AdamW)
// on random tokens, with model FLOP/s and MFU against the measured sgemm rate. The same model and
// optimizer are in scripts/bench/pytorch_train_bench.py; results belong in docs/benchmarks.md.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace escale::bench {

struct TrainBenchOptions {
  std::string preset = "bench-dense";
  int64_t steps = 5;
  int threads = 0;
  bool json = false;
  bool profile = false;
  uint32_t seed = 1;
};

// Runs the warm-up and timed steps and prints the figures (text, or one JSON object).
Status RunTrainBench(const TrainBenchOptions& options);

}  // namespace escale::bench
