#include "ops/cpu/fast_kernels.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

namespace escale::ops::fast {
namespace {
int I(int64_t v) { return static_cast<int>(v); }
}  // namespace

namespace {

// The fast path calls BLAS single-threaded from inside its own OpenMP team: OpenBLAS's pthread
// pool and OpenMP's would otherwise spin against each other on every switch between a GEMM and an
// element-wise loop. Each thread takes a fixed contiguous slice (multiples of 16 rows), so the
// result does not depend on scheduling.
constexpr double kParallelFlops = 1 << 18;

struct Slice {
  int64_t begin, end;
};
Slice ThreadSlice(int64_t n) {
  const int64_t nt = omp_get_num_threads(), id = omp_get_thread_num();
  const int64_t per = ((n + nt - 1) / nt + 15) / 16 * 16;
  return {std::min(n, id * per), std::min(n, (id + 1) * per)};
}

template <class Fn>
void ForSlices(int64_t n, double flops, Fn fn) {
  if (flops < kParallelFlops || omp_get_max_threads() == 1) {
    fn(int64_t{0}, n);
    return;
  }
#pragma omp parallel
  {
    const Slice s = ThreadSlice(n);
    if (s.end > s.begin) fn(s.begin, s.end);
  }
}

}  // namespace

void UseSingleThreadedBlas() { openblas_set_num_threads(1); }

void LinearForward(const float* x, int64_t M, int64_t K, const float* W, int64_t N, float* y, float beta) {
  if (M == 0 || N == 0) return;
  const double flops = 2.0 * double(M) * double(N) * double(K);
  const int threads = omp_get_max_threads();
  if (threads > 1 && M < 4 * threads && flops >= kParallelFlops) {
    // Too few rows to share (decoding a token): the threads split the output columns instead.
#pragma omp parallel
    {
      const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
      const int64_t n0 = N * t / nt, n1 = N * (t + 1) / nt;
      if (n1 > n0)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(M), I(n1 - n0), I(K), 1.0f, x, I(K),
                    W + n0 * K, I(K), beta, y + n0, I(N));
    }
    return;
  }
  ForSlices(M, flops, [&](int64_t m0, int64_t m1) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(m1 - m0), I(N), I(K), 1.0f, x + m0 * K,
                I(K), W, I(K), beta, y + m0 * N, I(N));
  });
}

void LinearBackwardInput(const float* dy, int64_t M, int64_t N, const float* W, int64_t K, float* dx, float beta) {
  if (M == 0 || K == 0) return;
  ForSlices(M, 2.0 * double(M) * double(N) * double(K), [&](int64_t m0, int64_t m1) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(m1 - m0), I(K), I(N), 1.0f, dy + m0 * N, I(N), W, I(K),
                beta, dx + m0 * K, I(K));
  });
}

void LinearBackwardWeight(const float* dy, int64_t M, int64_t N, const float* x, int64_t K, float* dW) {
  if (M == 0 || N == 0) return;
  // Split the output rows (n) when there are enough, else the columns (k); never the sum over m.
  const double flops = 2.0 * double(M) * double(N) * double(K);
  if (N >= 32) {
    ForSlices(N, flops, [&](int64_t n0, int64_t n1) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(n1 - n0), I(K), I(M), 1.0f, dy + n0, I(N), x, I(K), 1.0f,
                  dW + n0 * K, I(K));
    });
  } else {
    ForSlices(K, flops, [&](int64_t k0, int64_t k1) {
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(N), I(k1 - k0), I(M), 1.0f, dy, I(N), x + k0, I(K), 1.0f,
                  dW + k0, I(K));
    });
  }
}

void GroupedLinearForward(const float* x, const int32_t* start, int64_t groups, int64_t K, const float* const* W,
                          int64_t N, float* y) {
  if (start[groups] < 4 * omp_get_max_threads()) {
    // A token or two per group (decoding): one group at a time, its columns split over the threads.
    for (int64_t g = 0; g < groups; ++g)
      LinearForward(x + start[g] * K, start[g + 1] - start[g], K, W[g], N, y + start[g] * N);
    return;
  }
#pragma omp parallel
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t r0 = start[g];
    const Slice s = ThreadSlice(start[g + 1] - r0);
    if (s.end <= s.begin) continue;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(s.end - s.begin), I(N), I(K), 1.0f,
                x + (r0 + s.begin) * K, I(K), W[g], I(K), 0.0f, y + (r0 + s.begin) * N, I(N));
  }
}

void GroupedLinearBackwardInput(const float* dy, const int32_t* start, int64_t groups, int64_t N,
                                const float* const* W, int64_t K, float* dx) {
#pragma omp parallel
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t r0 = start[g];
    const Slice s = ThreadSlice(start[g + 1] - r0);
    if (s.end <= s.begin) continue;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(s.end - s.begin), I(K), I(N), 1.0f,
                dy + (r0 + s.begin) * N, I(N), W[g], I(K), 0.0f, dx + (r0 + s.begin) * K, I(K));
  }
}

void GroupedLinearBackwardWeight(const float* dy, const int32_t* start, int64_t groups, int64_t N, const float* x,
                                 int64_t K, float* const* dW) {
#pragma omp parallel
  for (int64_t g = 0; g < groups; ++g) {
    const int64_t r0 = start[g], rows = start[g + 1] - r0;
    if (rows == 0) continue;
    const Slice s = ThreadSlice(N);  // rows of dW: the sum over tokens stays in one thread
    if (s.end <= s.begin) continue;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(s.end - s.begin), I(K), I(rows), 1.0f,
                dy + r0 * N + s.begin, I(N), x + r0 * K, I(K), 1.0f, dW[g] + s.begin * K, I(K));
  }
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

namespace {

// One RMSNorm row: y = x · r · w with r = 1/sqrt(mean(x²) + eps); returns r.
inline float RmsNormRow(const float* x, int64_t n, const float* w, float eps, float* y) {
  float ss = 0;
#pragma omp simd reduction(+ : ss)
  for (int64_t i = 0; i < n; ++i) ss += x[i] * x[i];
  const float r = 1.0f / std::sqrt(ss / static_cast<float>(n) + eps);
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] = x[i] * r * w[i];
  return r;
}

}  // namespace

void RmsNormForward(const float* x, int64_t T, int64_t H, const float* w, float eps, float* y,
                    float* rstd) {
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < T; ++t) rstd[t] = RmsNormRow(x + t * H, H, w, eps, y + t * H);
}

void HeadRmsNormForward(float* x, int64_t rows, int64_t ld, int64_t heads, int64_t hd,
                        const float* w, float eps, float* raw, float* rstd) {
  const int64_t width = heads * hd;
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    float* xr = x + r * ld;
    float* kept = raw + r * width;
    std::copy(xr, xr + width, kept);
    for (int64_t h = 0; h < heads; ++h)
      rstd[r * heads + h] = RmsNormRow(kept + h * hd, hd, w, eps, xr + h * hd);
  }
}

void HeadRmsNormBackward(const float* raw, const float* rstd, int64_t rows, int64_t ld,
                         int64_t heads, int64_t hd, const float* w, float* d, float* dw) {
  const int64_t width = heads * hd;
  // dw first, while d still holds the output's gradient: each thread owns a block of the hd
  // columns and sums every (row, head) in order, so the result does not depend on scheduling.
  constexpr int64_t kBlock = 16;
  const int64_t blocks = (hd + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static)
  for (int64_t blk = 0; blk < blocks; ++blk) {
    const int64_t c0 = blk * kBlock, c1 = std::min(hd, c0 + kBlock);
    float acc[kBlock] = {};
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t h = 0; h < heads; ++h) {
        const float* xr = raw + r * width + h * hd;
        const float* dr = d + r * ld + h * hd;
        const float inv = rstd[r * heads + h];
        for (int64_t c = c0; c < c1; ++c) acc[c - c0] += dr[c] * xr[c] * inv;
      }
    for (int64_t c = c0; c < c1; ++c) dw[c] += acc[c - c0];
  }
  // dx = r·(dy·w − x·r²·mean(dy·w·x)), in place over dy.
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t h = 0; h < heads; ++h) {
      const float* xr = raw + r * width + h * hd;
      float* dr = d + r * ld + h * hd;
      const float inv = rstd[r * heads + h];
      float dot = 0;
#pragma omp simd reduction(+ : dot)
      for (int64_t i = 0; i < hd; ++i) dot += dr[i] * w[i] * xr[i];
      const float c = dot * inv * inv / static_cast<float>(hd);
#pragma omp simd
      for (int64_t i = 0; i < hd; ++i) dr[i] = inv * (dr[i] * w[i] - xr[i] * c);
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
    for (int64_t i = 0; i < F; ++i) o[i] = g[i] / (1.0f + FastExp(-g[i])) * u[i];
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
      const float s = 1.0f / (1.0f + FastExp(-g[i]));
      const float silu = g[i] * s;
      du[i] = d[i] * silu;
      dg[i] = d[i] * u[i] * s * (1.0f + g[i] * (1.0f - s));
    }
  }
}

}  // namespace escale::ops::fast
