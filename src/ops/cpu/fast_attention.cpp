#include "ops/cpu/fast_attention.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>

#include "ops/cpu/fast_kernels.h"

namespace escale::ops::fast {
namespace {

constexpr int64_t kBlock = 64;  // query rows per score block
int I(int64_t v) { return static_cast<int>(v); }

inline float Dot(const float* a, const float* b, int64_t n) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

}  // namespace

int64_t AttentionScratchPerThread(int64_t seq_len) { return 2 * kBlock * seq_len; }

void CausalAttentionForward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                            float* lse, float* scratch) {
  const int64_t T = s.seq_len, nh = s.heads, hd = s.head_dim, group = s.heads / s.kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t tasks = s.batch * nh;
#pragma omp parallel for schedule(dynamic, 1) num_threads(s.threads)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t b = task / nh, h = task % nh, j = h / group;
    float* S = scratch + static_cast<int64_t>(omp_get_thread_num()) * AttentionScratchPerThread(T);
    const float* kb = k + b * T * s.kv_ld + j * hd;
    const float* vb = v + b * T * s.kv_ld + j * hd;
    for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
      const int64_t i1 = std::min(T, i0 + kBlock), rows = i1 - i0, keys = i1;
      const float* qb = q + (b * T + i0) * s.q_ld + h * hd;
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(rows), I(keys), I(hd), scale, qb, I(s.q_ld), kb,
                  I(s.kv_ld), 0.0f, S, I(T));
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t t = i0 + r;
        float* sr = S + r * T;
        float mx = sr[0];
        for (int64_t u = 1; u <= t; ++u) mx = std::max(mx, sr[u]);
        float sum = 0;
#pragma omp simd reduction(+ : sum)
        for (int64_t u = 0; u <= t; ++u) {
          sr[u] = FastExp(sr[u] - mx);
          sum += sr[u];
        }
        const float inv = 1.0f / sum;
#pragma omp simd
        for (int64_t u = 0; u <= t; ++u) sr[u] *= inv;
        for (int64_t u = t + 1; u < keys; ++u) sr[u] = 0;
        lse[(b * nh + h) * T + t] = mx + std::log(sum);
      }
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(rows), I(hd), I(keys), 1.0f, S, I(T), vb, I(s.kv_ld),
                  0.0f, out + (b * T + i0) * s.o_ld + h * hd, I(s.o_ld));
    }
  }
}

void CausalAttentionBackward(const AttentionShape& s, const float* q, const float* k, const float* v, const float* out,
                             const float* lse, const float* dout, float* dq, float* dk, float* dv, float* scratch) {
  const int64_t T = s.seq_len, nh = s.heads, hd = s.head_dim, group = s.heads / s.kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // One task per (sequence, KV head): it owns dk/dv of that head and dq of the group's query heads,
  // so nothing is shared between threads and the summation order is fixed.
  const int64_t tasks = s.batch * s.kv_heads;
#pragma omp parallel for schedule(dynamic, 1) num_threads(s.threads)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t b = task / s.kv_heads, j = task % s.kv_heads;
    float* P = scratch + static_cast<int64_t>(omp_get_thread_num()) * AttentionScratchPerThread(T);
    float* dS = P + kBlock * T;
    const float* kb = k + b * T * s.kv_ld + j * hd;
    const float* vb = v + b * T * s.kv_ld + j * hd;
    float* dkb = dk + b * T * s.kv_ld + j * hd;
    float* dvb = dv + b * T * s.kv_ld + j * hd;
    for (int64_t u = 0; u < T; ++u)
      for (int64_t i = 0; i < hd; ++i) {
        dkb[u * s.kv_ld + i] = 0;
        dvb[u * s.kv_ld + i] = 0;
      }
    for (int64_t h = j * group; h < (j + 1) * group; ++h) {
      for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
        const int64_t i1 = std::min(T, i0 + kBlock), rows = i1 - i0, keys = i1;
        const float* qb = q + (b * T + i0) * s.q_ld + h * hd;
        const float* dob = dout + (b * T + i0) * s.o_ld + h * hd;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(rows), I(keys), I(hd), scale, qb, I(s.q_ld), kb,
                    I(s.kv_ld), 0.0f, P, I(T));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, I(rows), I(keys), I(hd), 1.0f, dob, I(s.o_ld), vb,
                    I(s.kv_ld), 0.0f, dS, I(T));
        for (int64_t r = 0; r < rows; ++r) {
          const int64_t t = i0 + r, row = b * T + t;
          const float l = lse[(b * nh + h) * T + t];
          const float D = Dot(dout + row * s.o_ld + h * hd, out + row * s.o_ld + h * hd, hd);
          float* pr = P + r * T;
          float* dr = dS + r * T;
#pragma omp simd
          for (int64_t u = 0; u <= t; ++u) {
            pr[u] = FastExp(pr[u] - l);
            dr[u] = pr[u] * (dr[u] - D) * scale;
          }
          for (int64_t u = t + 1; u < keys; ++u) pr[u] = dr[u] = 0;
        }
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, I(rows), I(hd), I(keys), 1.0f, dS, I(T), kb, I(s.kv_ld),
                    0.0f, dq + (b * T + i0) * s.q_ld + h * hd, I(s.q_ld));
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(keys), I(hd), I(rows), 1.0f, dS, I(T), qb, I(s.q_ld),
                    1.0f, dkb, I(s.kv_ld));
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, I(keys), I(hd), I(rows), 1.0f, P, I(T), dob, I(s.o_ld),
                    1.0f, dvb, I(s.kv_ld));
      }
    }
  }
}

int64_t CachedAttentionScratch(int64_t positions, int threads) {
  return positions * threads;
}

void CachedAttentionForward(const AttentionShape& s, int64_t pos, int64_t rows, const float* q,
                            const float* k_cache, const float* v_cache, float* out,
                            float* scratch) {
  const int64_t nh = s.heads, hd = s.head_dim, group = s.heads / s.kv_heads, width = pos + rows;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  // One (row, head) per task: a decoded token has only its heads to share out.
#pragma omp parallel for collapse(2) schedule(static) \
    num_threads(s.threads) if (rows * nh * width * hd > (1 << 16))
  for (int64_t m = 0; m < rows; ++m)
    for (int64_t h = 0; h < nh; ++h) {
      float* sc = scratch + omp_get_thread_num() * width;
      const float* qv = q + m * s.q_ld + h * hd;
      const int64_t kvh = h / group, n = pos + m + 1;
      float mx = -INFINITY;
      for (int64_t j = 0; j < n; ++j) {
        const float* kj = k_cache + j * s.kv_ld + kvh * hd;
        float d = 0;
        for (int64_t i = 0; i < hd; ++i) d += qv[i] * kj[i];
        sc[j] = d * scale;
        mx = std::max(mx, sc[j]);
      }
      float sum = 0;
      for (int64_t j = 0; j < n; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
      float* o = out + m * s.o_ld + h * hd;
      std::fill_n(o, hd, 0.0f);
      for (int64_t j = 0; j < n; ++j) {
        const float p = sc[j] / sum;
        const float* vj = v_cache + j * s.kv_ld + kvh * hd;
        for (int64_t i = 0; i < hd; ++i) o[i] += p * vj[i];
      }
    }
}

}  // namespace escale::ops::fast
