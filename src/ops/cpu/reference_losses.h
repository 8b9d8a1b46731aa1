// The training losses of docs/method.md §4 as functions of logits, templated on the number type so
// complex-step checks can differentiate them. Backward versions live in reference_backward.h.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/cpu/reference_ops.h"

namespace escale::ops::ref {

// Mean over rows t with targets[t] >= 0 of logsumexp(y_t) - y_t[target]. `count` receives the
// number of counted rows (the caller refuses a batch with none).
template <class S>
S CrossEntropyMean(const S* logits, int64_t T, int64_t V, const int32_t* targets, int64_t* count = nullptr) {
  S sum = 0;
  int64_t n = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (targets[t] < 0) continue;
    sum += LogSumExp(logits + t * V, V) - logits[t * V + targets[t]];
    ++n;
  }
  if (count) *count = n;
  return n > 0 ? sum / S(double(n)) : S(0);
}

// mean over counted rows of logsumexp(y_t)^2 (PaLM output z-loss). Rows with targets < 0 skipped.
template <class S>
S OutputZLoss(const S* logits, int64_t T, int64_t V, const int32_t* targets) {
  S sum = 0;
  int64_t n = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (targets[t] < 0) continue;
    const S z = LogSumExp(logits + t * V, V);
    sum += z * z;
    ++n;
  }
  return n > 0 ? sum / S(double(n)) : S(0);
}

// Index of the largest real part in x[0..N); ties go to the lower index.
template <class S>
int64_t ArgMax(const S* x, int64_t N) {
  int64_t best = 0;
  for (int64_t n = 1; n < N; ++n)
    if (Re(x[n]) > Re(x[best])) best = n;
  return best;
}

// mean over counted rows of (max_v y_tv)^2 (Baichuan 2 max-z).
template <class S>
S OutputMaxZLoss(const S* logits, int64_t T, int64_t V, const int32_t* targets) {
  S sum = 0;
  int64_t n = 0;
  for (int64_t t = 0; t < T; ++t) {
    if (targets[t] < 0) continue;
    const S m = logits[t * V + ArgMax(logits + t * V, V)];
    sum += m * m;
    ++n;
  }
  return n > 0 ? sum / S(double(n)) : S(0);
}

// Router losses over router logits [T, E], every row counted.
// mean_t (max_e l_te)^2 (AquilaMoE "max z-loss" default reading).
template <class S>
S RouterMaxZLoss(const S* logits, int64_t T, int64_t E) {
  S sum = 0;
  for (int64_t t = 0; t < T; ++t) {
    const S m = logits[t * E + ArgMax(logits + t * E, E)];
    sum += m * m;
  }
  return sum / S(double(T));
}

// mean_t logsumexp_e(l_te)^2 (ST-MoE router z-loss).
template <class S>
S RouterZLoss(const S* logits, int64_t T, int64_t E) {
  S sum = 0;
  for (int64_t t = 0; t < T; ++t) {
    const S z = LogSumExp(logits + t * E, E);
    sum += z * z;
  }
  return sum / S(double(T));
}

// Switch load-balancing loss E · Σ_e f_e · P_e. f_e = load[e] / (T·k) with load counted before
// capacity dropping (a constant here: routing decisions carry no gradient); P_e = mean_t softmax.
// Uniform routing gives 1.
template <class S>
S AuxLoss(const S* logits, int64_t T, int64_t E, int64_t top_k, const std::vector<int64_t>& load) {
  std::vector<S> p(static_cast<size_t>(T * E));
  Softmax(logits, T, E, p.data());
  S sum = 0;
  for (int64_t e = 0; e < E; ++e) {
    S pe = 0;
    for (int64_t t = 0; t < T; ++t) pe += p[static_cast<size_t>(t * E + e)];
    const double f = double(load[static_cast<size_t>(e)]) / double(T * top_k);
    sum += pe / S(double(T)) * f;
  }
  return sum * S(double(E));
}

}  // namespace escale::ops::ref
