// CPython's `random.Random(seed)` (MT19937 seeded by init_by_array) and the parts of it that
// lm-evaluation-harness uses to pick few-shot examples: `getrandbits(k <= 32)`,
// `_randbelow`, and `sample(population, k)`. Reproducing it bit for bit is what makes escale's
// few-shot prompts the same documents lm-eval would have chosen with the same seed.
#pragma once

#include <array>
#include <cstdint>
#include <vector>

namespace escale::eval {

class PythonRandom {
 public:
  // random.Random(seed) for a non-negative integer seed below 2^64.
  explicit PythonRandom(uint64_t seed);
  uint32_t GetRandBits(int k);     // 1 <= k <= 32
  uint64_t RandBelow(uint64_t n);  // 0 < n < 2^32
  // Indices into a population of n items, as `random.sample(range(n), k)` returns them (CPython
  // 3.11 algorithm; k <= n).
  std::vector<int64_t> Sample(int64_t n, int64_t k);

 private:
  uint32_t Next();
  void InitGenrand(uint32_t s);
  std::array<uint32_t, 624> mt_{};
  int index_ = 625;
};

}  // namespace escale::eval
