// MoE routing for the reference path (docs/method.md §3.2, §3.3): which experts each token goes
// to, with which weight, and which assignments a capacity limit drops. The discrete decisions are
// made once on real numbers (RouteTokens); the weights are a smooth function of the router logits
// given those decisions (RoutingWeights), templated so complex-step checks can differentiate them.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/cpu/reference_ops.h"

namespace escale::ops::ref {

struct RoutingParams {
  int64_t experts = 0;
  int64_t top_k = 0;
  // true (mixtral): top-k on the logits, softmax over the k selected.
  // false (st): softmax over all experts, top-k, no renormalisation.
  bool softmax_after_topk = true;
  double capacity_factor = 0.0;  // 0: dropless
  bool drop_by_position = false; // else drop the lowest routing weights first
};

struct Routing {
  int64_t tokens = 0, top_k = 0, experts = 0;
  std::vector<int64_t> expert;   // [T*k] chosen expert of assignment (t, i), by descending logit
  std::vector<uint8_t> kept;     // [T*k] 0 when dropped by the capacity limit
  std::vector<double> weight;    // [T*k] routing weight (0 contribution when dropped)
  int64_t capacity = -1;         // per expert; -1 when dropless
  int64_t Load(int64_t e) const; // assignments to e before dropping
};

// ceil(CF * T * k / E); CF must be > 0.
int64_t ExpertCapacity(double capacity_factor, int64_t tokens, int64_t top_k, int64_t experts);

// Decides the routing of T tokens from logits [T, E]. Top-k picks the larger logit; on an exact tie
// the lower expert index wins. Capacity dropping keeps, per expert, the `capacity` assignments with
// the largest routing weight (ties: lower token index), or the earliest tokens (drop_by_position).
Routing RouteTokens(const double* logits, int64_t T, const RoutingParams& p);

// The routing weights [T*k] as a function of the logits, for decisions already made. Dropped
// assignments get weight 0.
template <class S>
std::vector<S> RoutingWeights(const S* logits, const Routing& r, const RoutingParams& p) {
  const int64_t T = r.tokens, k = r.top_k, E = r.experts;
  std::vector<S> w(static_cast<size_t>(T * k));
  std::vector<S> tmp(static_cast<size_t>(E));
  for (int64_t t = 0; t < T; ++t) {
    const S* lt = logits + t * E;
    if (p.softmax_after_topk) {
      for (int64_t i = 0; i < k; ++i) tmp[static_cast<size_t>(i)] = lt[r.expert[static_cast<size_t>(t * k + i)]];
      Softmax(tmp.data(), 1, k, tmp.data());
      for (int64_t i = 0; i < k; ++i) w[static_cast<size_t>(t * k + i)] = tmp[static_cast<size_t>(i)];
    } else {
      Softmax(lt, 1, E, tmp.data());
      for (int64_t i = 0; i < k; ++i)
        w[static_cast<size_t>(t * k + i)] = tmp[static_cast<size_t>(r.expert[static_cast<size_t>(t * k + i)])];
    }
    for (int64_t i = 0; i < k; ++i)
      if (!r.kept[static_cast<size_t>(t * k + i)]) w[static_cast<size_t>(t * k + i)] = S(0);
  }
  return w;
}

// y[t] = Σ_i weight[t*k+i] · expert_out[t*k+i] over the kept assignments; expert_out [T*k, H]
// (rows of dropped assignments are ignored).
template <class S>
void MoeCombine(const S* expert_out, const S* weight, const Routing& r, int64_t H, S* y) {
  for (int64_t t = 0; t < r.tokens; ++t) {
    for (int64_t h = 0; h < H; ++h) y[t * H + h] = S(0);
    for (int64_t i = 0; i < r.top_k; ++i) {
      const int64_t a = t * r.top_k + i;
      if (!r.kept[static_cast<size_t>(a)]) continue;
      for (int64_t h = 0; h < H; ++h) y[t * H + h] += weight[a] * expert_out[a * H + h];
    }
  }
}

// Adds into dexpert_out [T*k, H] and dweight [T*k]; dropped assignments receive nothing.
void MoeCombineBackward(const double* expert_out, const double* weight, const Routing& r, int64_t H,
                        const double* dy, double* dexpert_out, double* dweight);

}  // namespace escale::ops::ref
