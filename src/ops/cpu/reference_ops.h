// Reference forward ops, templated on the number type S (double; std::complex<double> for
// complex-step derivative checks). Written for clarity: plain loops, row-major buffers, no
// allocation tricks. Every comparison (max, top-k) uses the real part, so a complex S carries the
// derivative through the same branch the real computation takes.
//
// Shapes: activations are [T, N] row-major; weights are [out, in] as in Hugging Face checkpoints.
#pragma once

#include <cmath>
#include <complex>
#include <cstdint>
#include <vector>

#include "core/check.h"

namespace escale::ops::ref {

// The shared expert's gate (Qwen2-MoE): sigmoid of its one-column router.
template <class S>
S Sigmoid(S x) {
  return S(1) / (S(1) + std::exp(-x));
}

inline double Re(double x) { return x; }
inline double Re(const std::complex<double>& x) { return x.real(); }

// y[T,N] = x[T,K] · W[N,K]^T (+ b[N]); b may be null.
template <class S>
void Linear(const S* x, int64_t T, int64_t K, const S* W, const S* b, int64_t N, S* y) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      S acc = b ? b[n] : S(0);
      const S* xr = x + t * K;
      const S* wr = W + n * K;
      for (int64_t k = 0; k < K; ++k) acc += xr[k] * wr[k];
      y[t * N + n] = acc;
    }
}

// y = x / sqrt(mean(x^2) + eps) * w, row by row.
template <class S>
void RmsNorm(const S* x, int64_t T, int64_t H, const S* w, double eps, S* y) {
  for (int64_t t = 0; t < T; ++t) {
    S ss = 0;
    for (int64_t i = 0; i < H; ++i) ss += x[t * H + i] * x[t * H + i];
    const S inv = S(1) / std::sqrt(ss / S(double(H)) + S(eps));
    for (int64_t i = 0; i < H; ++i) y[t * H + i] = x[t * H + i] * inv * w[i];
  }
}

// cos/sin tables [T, hd/2] for positions 0..T-1 from inverse frequencies [hd/2].
struct RopeTables {
  int64_t tokens = 0, half = 0;
  std::vector<double> cos, sin;
};
inline RopeTables MakeRopeTables(const std::vector<double>& inv_freq, int64_t T, double attention_factor = 1.0) {
  RopeTables r;
  r.tokens = T;
  r.half = static_cast<int64_t>(inv_freq.size());
  r.cos.assign(static_cast<size_t>(T * r.half), 0.0);
  r.sin.assign(static_cast<size_t>(T * r.half), 0.0);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t j = 0; j < r.half; ++j) {
      const double a = double(t) * inv_freq[static_cast<size_t>(j)];
      r.cos[static_cast<size_t>(t * r.half + j)] = std::cos(a) * attention_factor;
      r.sin[static_cast<size_t>(t * r.half + j)] = std::sin(a) * attention_factor;
    }
  return r;
}

// In place on x [T, heads*hd], rotate-half convention: for j < hd/2,
// x1' = x1 cos - x2 sin, x2' = x2 cos + x1 sin, with x1 = x[j], x2 = x[j + hd/2].
template <class S>
void ApplyRope(S* x, int64_t T, int64_t heads, int64_t hd, const RopeTables& rt) {
  const int64_t half = hd / 2;
  ESCALE_CHECK(rt.half == half && rt.tokens >= T);
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      S* p = x + t * heads * hd + h * hd;
      for (int64_t j = 0; j < half; ++j) {
        const double c = rt.cos[static_cast<size_t>(t * half + j)];
        const double s = rt.sin[static_cast<size_t>(t * half + j)];
        const S x1 = p[j], x2 = p[j + half];
        p[j] = x1 * c - x2 * s;
        p[j + half] = x2 * c + x1 * s;
      }
    }
}

// Causal grouped-query attention. q [T, nh*hd], k/v [T, nkv*hd] (RoPE already applied),
// out [T, nh*hd]. Query head h reads KV head h / (nh/nkv); scale 1/sqrt(hd).
// probs, when non-null, receives the attention weights [nh, T, T] (zero above the diagonal).
template <class S>
void CausalAttention(const S* q, const S* k, const S* v, int64_t T, int64_t nh, int64_t nkv, int64_t hd,
                     S* out, S* probs = nullptr) {
  ESCALE_CHECK(nkv > 0 && nh % nkv == 0);
  const int64_t group = nh / nkv;
  const double scale = 1.0 / std::sqrt(double(hd));
  std::vector<S> s(static_cast<size_t>(T));
  for (int64_t h = 0; h < nh; ++h) {
    const int64_t j = h / group;
    for (int64_t t = 0; t < T; ++t) {
      const S* qt = q + t * nh * hd + h * hd;
      double mx = -INFINITY;
      for (int64_t u = 0; u <= t; ++u) {
        const S* ku = k + u * nkv * hd + j * hd;
        S acc = 0;
        for (int64_t i = 0; i < hd; ++i) acc += qt[i] * ku[i];
        s[static_cast<size_t>(u)] = acc * scale;
        mx = std::max(mx, Re(s[static_cast<size_t>(u)]));
      }
      S sum = 0;
      for (int64_t u = 0; u <= t; ++u) {
        s[static_cast<size_t>(u)] = std::exp(s[static_cast<size_t>(u)] - mx);
        sum += s[static_cast<size_t>(u)];
      }
      S* ot = out + t * nh * hd + h * hd;
      for (int64_t i = 0; i < hd; ++i) ot[i] = 0;
      for (int64_t u = 0; u <= t; ++u) {
        const S p = s[static_cast<size_t>(u)] / sum;
        if (probs) probs[(h * T + t) * T + u] = p;
        const S* vu = v + u * nkv * hd + j * hd;
        for (int64_t i = 0; i < hd; ++i) ot[i] += p * vu[i];
      }
      if (probs)
        for (int64_t u = t + 1; u < T; ++u) probs[(h * T + t) * T + u] = 0;
    }
  }
}

template <class S>
S Silu(const S& x) {
  return x / (S(1) + std::exp(-x));
}

// y[T,H] = down(silu(gate x) * up x); gate/up [F,H], down [H,F].
template <class S>
void SwiGlu(const S* x, int64_t T, int64_t H, const S* gate, const S* up, const S* down, int64_t F, S* y) {
  std::vector<S> g(static_cast<size_t>(T * F)), u(static_cast<size_t>(T * F));
  Linear(x, T, H, gate, static_cast<const S*>(nullptr), F, g.data());
  Linear(x, T, H, up, static_cast<const S*>(nullptr), F, u.data());
  for (size_t i = 0; i < g.size(); ++i) g[i] = Silu(g[i]) * u[i];
  Linear(g.data(), T, F, down, static_cast<const S*>(nullptr), H, y);
}

// Row-wise softmax of x [T, N] into y (may alias x).
template <class S>
void Softmax(const S* x, int64_t T, int64_t N, S* y) {
  for (int64_t t = 0; t < T; ++t) {
    double mx = -INFINITY;
    for (int64_t n = 0; n < N; ++n) mx = std::max(mx, Re(x[t * N + n]));
    S sum = 0;
    for (int64_t n = 0; n < N; ++n) {
      y[t * N + n] = std::exp(x[t * N + n] - mx);
      sum += y[t * N + n];
    }
    for (int64_t n = 0; n < N; ++n) y[t * N + n] /= sum;
  }
}

template <class S>
S LogSumExp(const S* x, int64_t N) {
  double mx = -INFINITY;
  for (int64_t n = 0; n < N; ++n) mx = std::max(mx, Re(x[n]));
  S sum = 0;
  for (int64_t n = 0; n < N; ++n) sum += std::exp(x[n] - mx);
  return std::log(sum) + mx;
}

}  // namespace escale::ops::ref
