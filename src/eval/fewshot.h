// lm-eval's few-shot draw (ContextSampler): per evaluated document, in order, `k` examples from the
// pool — `random.Random(seed).sample(pool, k + 1)` with the document itself dropped when the pool
// is the evaluated split, or the first ones (`first_n`) — shared by multiple-choice and GSM8K
// tasks.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "core/status.h"
#include "eval/python_random.h"

namespace escale::eval {

class FewshotDraw {
 public:
  // Refuses a pool too small for k (+1 when it is the evaluated split).
  static Result<FewshotDraw> Create(int64_t pool_size, int64_t k, bool same_split, bool first_n,
                                    uint64_t seed);
  // Pool indices of the next document's examples; `is_self(i)`: pool item i is that document.
  std::vector<int64_t> Next(const std::function<bool(int64_t)>& is_self);

 private:
  FewshotDraw(int64_t pool, int64_t k, bool same_split, bool first_n, uint64_t seed)
      : pool_(pool), k_(k), same_split_(same_split), first_n_(first_n), rng_(seed) {}
  int64_t pool_, k_;
  bool same_split_, first_n_;
  PythonRandom rng_;
};

}  // namespace escale::eval
