// fp32 kernels of the training fast path: OpenBLAS sgemm for every matmul, OpenMP loops for the
// element-wise parts. Every reduction has a fixed order (per row, or per column over rows in
// order), so results depend only on the inputs and the thread count, never on scheduling.
//
// Shapes: activations [rows, cols] row-major; weights [out, in] as in Hugging Face checkpoints.
#pragma once

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>

namespace escale::ops::fast {

// exp(x) to about 1e-7 relative (Cephes polynomial) without a libm call, so loops over it
// vectorise under `omp simd` (std::floor would become a call to floorf). Rounding to the nearest
// integer uses the 1.5·2^23 trick, so this must not be compiled with -ffast-math. x is clamped to
// [-87.3, 88.3]: exp(-inf) gives ~1e-38, not 0 (callers mask explicitly).
// The shared expert's gate (Qwen2-MoE): sigmoid of its one-column router, with libm's exp.
inline float Sigmoid(float x) {
  return 1.0f / (1.0f + std::exp(-x));
}

inline float FastExp(float x) {
  x = std::min(std::max(x, -87.3f), 88.3f);
  const float t = x * 1.44269504088896341f + 12582912.0f;  // round(x·log2 e) in the low mantissa bits
  const float n = t - 12582912.0f;
  float r = x - n * 0.693359375f;
  r = r + n * 2.12194440e-4f;
  float p = 1.9875691500e-4f;
  p = p * r + 1.3981999507e-3f;
  p = p * r + 8.3334519073e-3f;
  p = p * r + 4.1665795894e-2f;
  p = p * r + 1.6666665459e-1f;
  p = p * r + 5.0000001201e-1f;
  p = p * r * r + r + 1.0f;
  const int32_t bits = (std::bit_cast<int32_t>(t) - 0x4B400000 + 127) << 23;  // 2^n
  return p * std::bit_cast<float>(bits);
}

// Sets OpenBLAS to one thread: the matmuls below split their rows over the calling OpenMP team
// and call BLAS from each thread. TrainModel::Create calls it.
void UseSingleThreadedBlas();

// y[M,N] = x[M,K] · W[N,K]^T + beta·y. The threads split the rows, or the output columns when
// there are fewer than 4 rows per thread (decoding).
void LinearForward(const float* x, int64_t M, int64_t K, const float* W, int64_t N, float* y, float beta = 0.0f);

// dx[M,K] = dy[M,N] · W[N,K] + beta·dx.
void LinearBackwardInput(const float* dy, int64_t M, int64_t N, const float* W, int64_t K, float* dx,
                         float beta = 0.0f);
// dW[N,K] += dy[M,N]^T · x[M,K].
void LinearBackwardWeight(const float* dy, int64_t M, int64_t N, const float* x, int64_t K, float* dW);

// Grouped matmuls over experts: group g owns rows [start[g], start[g+1]) of the row-major
// activations and its own weight W[g] ([N,K] as above). One OpenMP team runs every group, each
// thread a fixed slice of each group's rows (or of its dW rows); empty groups are skipped.
void GroupedLinearForward(const float* x, const int32_t* start, int64_t groups, int64_t K, const float* const* W,
                          int64_t N, float* y);
void GroupedLinearBackwardInput(const float* dy, const int32_t* start, int64_t groups, int64_t N,
                                const float* const* W, int64_t K, float* dx);
void GroupedLinearBackwardWeight(const float* dy, const int32_t* start, int64_t groups, int64_t N, const float* x,
                                 int64_t K, float* const* dW);

// y[m, :N] += b for every row m (row stride ld).
void AddBias(float* y, int64_t M, int64_t N, int64_t ld, const float* b);
// out[c] += Σ_m x[m*ld + c] for c < C, summed over m in order.
void ColumnSumAccumulate(const float* x, int64_t M, int64_t C, int64_t ld, float* out);

// y = x · rstd · w with rstd = 1/sqrt(mean(x²) + eps), per row; rstd [T] kept for the backward.
void RmsNormForward(const float* x, int64_t T, int64_t H, const float* w, float eps, float* y, float* rstd);
// Given dy of y: dx += dL/dx, dw += dL/dw.
void RmsNormBackward(const float* x, const float* rstd, int64_t T, int64_t H, const float* w, const float* dy,
                     float* dx, float* dw);

// Qwen3's q/k norm, in place: row r holds `heads` heads of hd values from x[r*ld]; each head is
// one RMSNorm row with the shared weight w[hd]. raw [rows, heads*hd] keeps the input and
// rstd [rows*heads] the inverse RMS for the backward.
void HeadRmsNormForward(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hd,
                        const float* w, float eps, float* raw, float* rstd);
// d holds the gradient of the output (layout of x) and is replaced by the input's; dw += dL/dw.
void HeadRmsNormBackward(const float* raw, const float* rstd, int64_t rows, int64_t ld,
                         int64_t heads, int64_t hd, const float* w, float* d, float* dw);

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
