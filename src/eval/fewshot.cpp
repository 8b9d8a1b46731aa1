#include "eval/fewshot.h"

#include <string>

namespace escale::eval {

Result<FewshotDraw> FewshotDraw::Create(int64_t pool_size, int64_t k, bool same_split, bool first_n,
                                        uint64_t seed) {
  if (k < 0) return InvalidArgument("--num-fewshot must be >= 0");
  const int64_t want = k + (same_split ? 1 : 0);
  if (k > 0 && want > pool_size)
    return InvalidArgument("--num-fewshot " + std::to_string(k) + " needs " + std::to_string(want) +
                           " few-shot documents but the pool has " + std::to_string(pool_size));
  return FewshotDraw(pool_size, k, same_split, first_n, seed);
}

std::vector<int64_t> FewshotDraw::Next(const std::function<bool(int64_t)>& is_self) {
  std::vector<int64_t> out;
  if (k_ == 0) return out;  // lm-eval draws nothing (the generator does not advance)
  const int64_t want = k_ + (same_split_ ? 1 : 0);
  std::vector<int64_t> picked;
  if (first_n_) {
    for (int64_t i = 0; i < want; ++i) picked.push_back(i);
  } else {
    picked = rng_.Sample(pool_, want);
  }
  for (int64_t p : picked) {
    if (static_cast<int64_t>(out.size()) == k_) break;
    if (same_split_ && is_self(p)) continue;
    out.push_back(p);
  }
  return out;
}

}  // namespace escale::eval
