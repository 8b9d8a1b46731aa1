#include "ops/cpu/fast_kernels.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>

namespace escale::ops::fast {
namespace {
int I(int64_t v) { return static_cast<int>(v); }
}  // namespace

void LinearForward(const float* x, int64_t M, int64_t K, const float* W, int64_t N, float* y, float beta) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(M), I(N), I(K), 1.0f, x, I(K), W, I(K), beta, y, I(N));
}

void LinearBackwardInput(const float* dy, int64_t M, int64_t N, const float* W, int64_t K, float* dx, float beta) {
  if (M == 0 || K == 0) return;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(M), I(K), I(N), 1.0f, dy, I(N), W, I(K), beta, dx, I(K));
}

void LinearBackwardWeight(const float* dy, int64_t M, int64_t N, const float* x, int64_t K, float* dW) {
  if (M == 0 || N == 0) return;
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(N), I(K), I(M), 1.0f, dy, I(N), x, I(K), 1.0f, dW, I(K));
}

void AddBias(float* y, int64_t M, int64_t N, int64_t ld, const float* b) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    float* r = y + m * ld;
#pragma omp simd
    for (int64_t n = 0; n < N; ++n) r[n] += b[n];
  }
}

void ColumnSumAccumulate(const float* x, int64_t M, int64_t C, int64_t ld, float* out) {
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (C + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kBlock, c1 = std::min(C, c0 + kBlock);
    float acc[kBlock] = {};
    for (int64_t m = 0; m < M; ++m) {
      const float* r = x + m * ld;
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += r[c];
    }
    for (int64_t c = c0; c < c1; ++c) out[c] += acc[c - c0];
  }
}

void RmsNormForward(const float* x, int64_t T, int64_t H, const float* w, float eps, float* y, float* rstd) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * H;
    float ss = 0;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < H; ++i) ss += xr[i] * xr[i];
    const float r = 1.0f / std::sqrt(ss / static_cast<float>(H) + eps);
    rstd[t] = r;
    float* yr = y + t * H;
#pragma omp simd
    for (int64_t i = 0; i < H; ++i) yr[i] = xr[i] * r * w[i];
  }
}

void RmsNormBackward(const float* x, const float* rstd, int64_t T, int64_t H, const float* w, const float* dy,
                     float* dx, float* dw) {
  // dx = r·(dy·w − x̂·mean(dy·w·x̂)), x̂ = x·r.
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) {
    const float* xr = x + t * H;
    const float* dr = dy + t * H;
    const float r = rstd[t];
    float dot = 0;
#pragma omp simd reduction(+ : dot)
    for (int64_t i = 0; i < H; ++i) dot += dr[i] * w[i] * xr[i];
    const float c = dot * r * r / static_cast<float>(H);
    float* o = dx + t * H;
#pragma omp simd
    for (int64_t i = 0; i < H; ++i) o[i] += r * (dr[i] * w[i] - xr[i] * c);
  }
  constexpr int64_t kBlock = 64;
  const int64_t blocks = (H + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kBlock, c1 = std::min(H, c0 + kBlock);
    float acc[kBlock] = {};
    for (int64_t t = 0; t < T; ++t) {
      const float* xr = x + t * H;
      const float* dr = dy + t * H;
      const float r = rstd[t];
#pragma omp simd
      for (int64_t c = c0; c < c1; ++c) acc[c - c0] += dr[c] * xr[c] * r;
    }
    for (int64_t c = c0; c < c1; ++c) dw[c] += acc[c - c0];
  }
}

namespace {
template <bool kInverse>
void Rotate(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hd, int64_t seq_len, const float* cos,
            const float* sin) {
  const int64_t half = hd / 2;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t pos = r % seq_len;
    const float* cr = cos + pos * half;
    const float* sr = sin + pos * half;
    for (int64_t h = 0; h < heads; ++h) {
      float* p = x + r * ld + h * hd;
#pragma omp simd
      for (int64_t j = 0; j < half; ++j) {
        const float x1 = p[j], x2 = p[j + half];
        const float s = kInverse ? -sr[j] : sr[j];
        p[j] = x1 * cr[j] - x2 * s;
        p[j + half] = x2 * cr[j] + x1 * s;
      }
    }
  }
}
}  // namespace

void RopeForward(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hd, int64_t seq_len, const float* cos,
                 const float* sin) {
  Rotate<false>(x, rows, ld, heads, hd, seq_len, cos, sin);
}

void RopeBackward(float* dx, int64_t rows, int64_t ld, int64_t heads, int64_t hd, int64_t seq_len, const float* cos,
                  const float* sin) {
  Rotate<true>(dx, rows, ld, heads, hd, seq_len, cos, sin);
}

void SwiGluForward(const float* gu, int64_t M, int64_t F, float* h) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const float* g = gu + m * 2 * F;
    const float* u = g + F;
    float* o = h + m * F;
#pragma omp simd
    for (int64_t i = 0; i < F; ++i) o[i] = g[i] / (1.0f + std::exp(-g[i])) * u[i];
  }
}

void SwiGluBackward(const float* gu, const float* dh, int64_t M, int64_t F, float* dgu) {
#pragma omp parallel for schedule(static)
  for (int64_t m = 0; m < M; ++m) {
    const float* g = gu + m * 2 * F;
    const float* u = g + F;
    const float* d = dh + m * F;
    float* dg = dgu + m * 2 * F;
    float* du = dg + F;
#pragma omp simd
    for (int64_t i = 0; i < F; ++i) {
      const float s = 1.0f / (1.0f + std::exp(-g[i]));
      const float silu = g[i] * s;
      du[i] = d[i] * silu;
      dg[i] = d[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
  }
}

}  // namespace escale::ops::fast
