// Hand-written backward passes of the reference ops (fp64). Every function *adds* into its
// gradient outputs (callers zero them once), so shared inputs such as a residual accumulate
// naturally. Checked against complex-step derivatives of the forward templates in tests/ops/.
#pragma once

#include <cstdint>
#include <vector>

#include "ops/cpu/reference_ops.h"
#include "ops/cpu/reference_routing.h"

namespace escale::ops::ref {

// y = x W^T + b: dx += dy W, dW += dy^T x, db += Σ_t dy (db may be null; dx may be null).
void LinearBackward(const double* x, int64_t T, int64_t K, const double* W, int64_t N, const double* dy,
                    double* dx, double* dW, double* db);

// y = x / sqrt(mean(x^2) + eps) * w.
void RmsNormBackward(const double* x, int64_t T, int64_t H, const double* w, double eps, const double* dy,
                     double* dx, double* dw);

// The transpose of ApplyRope (a rotation), in place on the gradient [T, heads*hd].
void RopeBackward(double* dx, int64_t T, int64_t heads, int64_t hd, const RopeTables& rt);

// probs [nh, T, T] as written by CausalAttention.
void CausalAttentionBackward(const double* q, const double* k, const double* v, const double* probs, int64_t T,
                             int64_t nh, int64_t nkv, int64_t hd, const double* dout, double* dq, double* dk,
                             double* dv);

// y = down(silu(gate x) * up x). dx may be null.
void SwiGluBackward(const double* x, int64_t T, int64_t H, const double* gate, const double* up, const double* down,
                    int64_t F, const double* dy, double* dx, double* dgate, double* dup, double* ddown);

// y = softmax(x) row-wise: dx += y ⊙ (dy - Σ y dy).
void SoftmaxBackward(const double* y, int64_t T, int64_t N, const double* dy, double* dx);

// Routing weights (RoutingWeights) -> router logits [T, E]; dweight [T*k] (entries of dropped
// assignments are ignored: a dropped assignment contributes nothing).
void RoutingWeightsBackward(const double* logits, const Routing& r, const RoutingParams& p, const double* dweight,
                            double* dlogits);

// Loss backward passes: add scale * d(loss)/d(logits) to dlogits. Targets < 0 are not counted.
void CrossEntropyMeanBackward(const double* logits, int64_t T, int64_t V, const int32_t* targets, double scale,
                              double* dlogits);
void OutputZLossBackward(const double* logits, int64_t T, int64_t V, const int32_t* targets, double scale,
                         double* dlogits);
void OutputMaxZLossBackward(const double* logits, int64_t T, int64_t V, const int32_t* targets, double scale,
                            double* dlogits);
void RouterMaxZLossBackward(const double* logits, int64_t T, int64_t E, double scale, double* dlogits);
void RouterZLossBackward(const double* logits, int64_t T, int64_t E, double scale, double* dlogits);
void AuxLossBackward(const double* logits, int64_t T, int64_t E, int64_t top_k, const std::vector<int64_t>& load,
                     double scale, double* dlogits);

}  // namespace escale::ops::ref
