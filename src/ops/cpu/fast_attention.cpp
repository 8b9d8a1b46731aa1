#include "ops/cpu/fast_attention.h"

#include <omp.h>

#include <cmath>

namespace escale::ops::fast {
namespace {

inline float Dot(const float* a, const float* b, int64_t n) {
  float acc = 0;
#pragma omp simd reduction(+ : acc)
  for (int64_t i = 0; i < n; ++i) acc += a[i] * b[i];
  return acc;
}

inline void Axpy(float a, const float* x, float* y, int64_t n) {
#pragma omp simd
  for (int64_t i = 0; i < n; ++i) y[i] += a * x[i];
}

}  // namespace

void CausalAttentionForward(const AttentionShape& s, const float* q, const float* k, const float* v, float* out,
                            float* lse, float* scratch) {
  const int64_t T = s.seq_len, nh = s.heads, hd = s.head_dim, group = s.heads / s.kv_heads;
  const float scale = 1.0f / std::sqrt(static_cast<float>(hd));
  const int64_t tasks = s.batch * nh;
#pragma omp parallel for schedule(dynamic, 1) num_threads(s.threads)
  for (int64_t task = 0; task < tasks; ++task) {
    const int64_t b = task / nh, h = task % nh, j = h / group;
    float* sc = scratch + static_cast<int64_t>(omp_get_thread_num()) * T;
    const float* kb = k + b * T * s.kv_ld + j * hd;
    const float* vb = v + b * T * s.kv_ld + j * hd;
    for (int64_t t = 0; t < T; ++t) {
      const float* qt = q + (b * T + t) * s.q_ld + h * hd;
      float mx = -INFINITY;
      for (int64_t u = 0; u <= t; ++u) {
        sc[u] = Dot(qt, kb + u * s.kv_ld, hd) * scale;
        mx = sc[u] > mx ? sc[u] : mx;
      }
      float sum = 0;
      for (int64_t u = 0; u <= t; ++u) {
        sc[u] = std::exp(sc[u] - mx);
        sum += sc[u];
      }
      const float inv = 1.0f / sum;
      float* ot = out + (b * T + t) * s.o_ld + h * hd;
      for (int64_t i = 0; i < hd; ++i) ot[i] = 0;
      for (int64_t u = 0; u <= t; ++u) Axpy(sc[u] * inv, vb + u * s.kv_ld, ot, hd);
      lse[(b * nh + h) * T + t] = mx + std::log(sum);
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
    float* p = scratch + static_cast<int64_t>(omp_get_thread_num()) * 2 * T;
    float* ds = p + T;
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
      for (int64_t t = 0; t < T; ++t) {
        const int64_t row = b * T + t;
        const float* qt = q + row * s.q_ld + h * hd;
        const float* dot_ = dout + row * s.o_ld + h * hd;
        const float l = lse[(b * nh + h) * T + t];
        const float D = Dot(dot_, out + row * s.o_ld + h * hd, hd);
        for (int64_t u = 0; u <= t; ++u) {
          p[u] = std::exp(Dot(qt, kb + u * s.kv_ld, hd) * scale - l);
          ds[u] = p[u] * (Dot(dot_, vb + u * s.kv_ld, hd) - D) * scale;
        }
        float* dqt = dq + row * s.q_ld + h * hd;
        for (int64_t i = 0; i < hd; ++i) dqt[i] = 0;
        for (int64_t u = 0; u <= t; ++u) {
          Axpy(ds[u], kb + u * s.kv_ld, dqt, hd);
          Axpy(ds[u], qt, dkb + u * s.kv_ld, hd);
          Axpy(p[u], dot_, dvb + u * s.kv_ld, hd);
        }
      }
    }
  }
}

}  // namespace escale::ops::fast
