// AdamW with decoupled weight decay (Loshchilov & Hutter) on fp32 master weights and moments,
// plus global-norm gradient clipping. The update is element-wise and deterministic: the same
// inputs give the same bits for any thread count.
#pragma once

#include <cstdint>
#include <span>

namespace escale {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
};

// One update of `params` from `grads` at 1-based step `t` with learning rate `lr`.
// `decay` selects whether weight decay applies to this tensor (off for norms, biases, embeddings).
void AdamWUpdate(const AdamWConfig& c, int64_t t, double lr, bool decay, std::span<float> params,
                 std::span<const float> grads, std::span<float> m, std::span<float> v);

// Sum of squares in fp64 with a fixed reduction order (blocks of 4096, summed in order), so the
// global norm does not depend on the thread count.
double SumOfSquares(std::span<const float> x);
// Multiplies x by `scale` in place.
void Scale(std::span<float> x, float scale);
// The clip factor for a global gradient norm: min(1, max_norm / norm); 1 when clipping is off.
double ClipFactor(double global_norm, double max_norm);

}  // namespace escale
