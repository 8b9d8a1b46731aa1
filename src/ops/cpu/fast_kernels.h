// fp32 kernels of the training fast path: OpenBLAS sgemm for every matmul, OpenMP loops for the
// element-wise parts. Every reduction has a fixed order (per row, or per column over rows in
// order), so results depend only on the inputs and the thread count, never on scheduling.
//
// Shapes: activations [rows, cols] row-major; weights [out, in] as in Hugging Face checkpoints.
#pragma once

#include <cstdint>

namespace escale::ops::fast {

// y[M,N] = x[M,K] · W[N,K]^T + beta·y.
void LinearForward(const float* x, int64_t M, int64_t K, const float* W, int64_t N, float* y, float beta = 0.0f);
// dx[M,K] = dy[M,N] · W[N,K] + beta·dx.
void LinearBackwardInput(const float* dy, int64_t M, int64_t N, const float* W, int64_t K, float* dx,
                         float beta = 0.0f);
// dW[N,K] += dy[M,N]^T · x[M,K].
void LinearBackwardWeight(const float* dy, int64_t M, int64_t N, const float* x, int64_t K, float* dW);

// y[m, :N] += b for every row m (row stride ld).
void AddBias(float* y, int64_t M, int64_t N, int64_t ld, const float* b);
// out[c] += Σ_m x[m*ld + c] for c < C, summed over m in order.
void ColumnSumAccumulate(const float* x, int64_t M, int64_t C, int64_t ld, float* out);

// y = x · rstd · w with rstd = 1/sqrt(mean(x²) + eps), per row; rstd [T] kept for the backward.
void RmsNormForward(const float* x, int64_t T, int64_t H, const float* w, float eps, float* y, float* rstd);
// Given dy of y: dx += dL/dx, dw += dL/dw.
void RmsNormBackward(const float* x, const float* rstd, int64_t T, int64_t H, const float* w, const float* dy,
                     float* dx, float* dw);

// In place on `heads` heads of head_dim hd starting at x[row*ld], rotate-half convention; row r is
// position r % seq_len. cos/sin: [seq_len, hd/2].
void RopeForward(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hd, int64_t seq_len, const float* cos,
                 const float* sin);
// The transpose (inverse rotation), applied to a gradient in place.
void RopeBackward(float* dx, int64_t rows, int64_t ld, int64_t heads, int64_t hd, int64_t seq_len, const float* cos,
                  const float* sin);

// gu [M, 2F] holds gate then up per row; h[M, F] = silu(gate) * up.
void SwiGluForward(const float* gu, int64_t M, int64_t F, float* h);
// dgu [M, 2F] from dh [M, F].
void SwiGluBackward(const float* gu, const float* dh, int64_t M, int64_t F, float* dgu);

}  // namespace escale::ops::fast
