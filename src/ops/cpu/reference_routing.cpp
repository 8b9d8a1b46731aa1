#include "ops/cpu/reference_routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace escale::ops::ref {

int64_t Routing::Load(int64_t e) const {
  return std::count(expert.begin(), expert.end(), e);
}

int64_t ExpertCapacity(double capacity_factor, int64_t tokens, int64_t top_k, int64_t experts) {
  ESCALE_CHECK(capacity_factor > 0 && experts > 0);
  // T*k/E in lowest terms: an MoE whose experts were copied m times (k and E both times m) then
  // gets bit-identical capacities, where the unreduced product can round across an integer.
  const int64_t g = std::gcd(tokens * top_k, experts);
  return static_cast<int64_t>(std::ceil(capacity_factor * double(tokens * top_k / g) / double(experts / g)));
}

Routing RouteTokens(const double* logits, int64_t T, const RoutingParams& p) {
  const int64_t E = p.experts, k = p.top_k;
  ESCALE_CHECK(E > 0 && k >= 1 && k <= E);
  Routing r;
  r.tokens = T;
  r.top_k = k;
  r.experts = E;
  r.expert.resize(static_cast<size_t>(T * k));
  r.kept.assign(static_cast<size_t>(T * k), 1);
  std::vector<int64_t> order(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const double* lt = logits + t * E;
    std::iota(order.begin(), order.end(), int64_t{0});
    // Softmax is monotone, so top-k on the logits equals top-k on the probabilities (st type).
    std::stable_sort(order.begin(), order.end(), [&](int64_t a, int64_t b) { return lt[a] > lt[b]; });
    for (int64_t i = 0; i < k; ++i) r.expert[static_cast<size_t>(t * k + i)] = order[static_cast<size_t>(i)];
  }
  r.weight = RoutingWeights(logits, r, p);
  if (p.capacity_factor <= 0) return r;

  r.capacity = ExpertCapacity(p.capacity_factor, T, k, E);
  std::vector<std::vector<int64_t>> per_expert(static_cast<size_t>(E));  // assignment indices
  for (int64_t a = 0; a < T * k; ++a) per_expert[static_cast<size_t>(r.expert[static_cast<size_t>(a)])].push_back(a);
  for (auto& list : per_expert) {
    if (static_cast<int64_t>(list.size()) <= r.capacity) continue;
    // Assignment index a = t*k + i is ordered by token, so a stable sort keeps earlier tokens
    // ahead on equal weights.
    if (!p.drop_by_position)
      std::stable_sort(list.begin(), list.end(), [&](int64_t a, int64_t b) {
        return r.weight[static_cast<size_t>(a)] > r.weight[static_cast<size_t>(b)];
      });
    for (size_t j = static_cast<size_t>(r.capacity); j < list.size(); ++j) {
      r.kept[static_cast<size_t>(list[j])] = 0;
      r.weight[static_cast<size_t>(list[j])] = 0.0;
    }
  }
  return r;
}

void MoeCombineBackward(const double* expert_out, const double* weight, const Routing& r, int64_t H,
                        const double* dy, double* dexpert_out, double* dweight) {
  for (int64_t t = 0; t < r.tokens; ++t)
    for (int64_t i = 0; i < r.top_k; ++i) {
      const int64_t a = t * r.top_k + i;
      if (!r.kept[static_cast<size_t>(a)]) continue;
      double d = 0;
      for (int64_t h = 0; h < H; ++h) {
        d += dy[t * H + h] * expert_out[a * H + h];
        dexpert_out[a * H + h] += weight[a] * dy[t * H + h];
      }
      dweight[a] += d;
    }
}

}  // namespace escale::ops::ref
