#include "ops/cpu/reference_backward.h"

#include <cmath>

#include "ops/cpu/reference_losses.h"

namespace escale::ops::ref {
namespace {

size_t Z(int64_t i) { return static_cast<size_t>(i); }

double Sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }

int64_t CountedRows(int64_t T, const int32_t* targets) {
  int64_t n = 0;
  for (int64_t t = 0; t < T; ++t) n += targets[t] >= 0 ? 1 : 0;
  return n;
}

}  // namespace

void LinearBackward(const double* x, int64_t T, int64_t K, const double* W, int64_t N, const double* dy,
                    double* dx, double* dW, double* db) {
  for (int64_t t = 0; t < T; ++t)
    for (int64_t n = 0; n < N; ++n) {
      const double g = dy[t * N + n];
      if (g == 0.0) continue;
      if (db) db[n] += g;
      const double* xr = x + t * K;
      const double* wr = W + n * K;
      double* dwr = dW + n * K;
      for (int64_t k = 0; k < K; ++k) dwr[k] += g * xr[k];
      if (dx)
        for (int64_t k = 0; k < K; ++k) dx[t * K + k] += g * wr[k];
    }
}

void RmsNormBackward(const double* x, int64_t T, int64_t H, const double* w, double eps, const double* dy,
                     double* dx, double* dw) {
  for (int64_t t = 0; t < T; ++t) {
    const double* xr = x + t * H;
    const double* gr = dy + t * H;
    double ss = 0;
    for (int64_t i = 0; i < H; ++i) ss += xr[i] * xr[i];
    const double r = 1.0 / std::sqrt(ss / double(H) + eps);
    double dot = 0;  // Σ_j dy_j w_j x_j
    for (int64_t i = 0; i < H; ++i) {
      dw[i] += gr[i] * xr[i] * r;
      dot += gr[i] * w[i] * xr[i];
    }
    const double c = r * r * r * dot / double(H);
    for (int64_t i = 0; i < H; ++i) dx[t * H + i] += r * gr[i] * w[i] - c * xr[i];
  }
}

void RopeBackward(double* dx, int64_t T, int64_t heads, int64_t hd, const RopeTables& rt) {
  const int64_t half = hd / 2;
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < heads; ++h) {
      double* p = dx + t * heads * hd + h * hd;
      for (int64_t j = 0; j < half; ++j) {
        const double c = rt.cos[Z(t * half + j)], s = rt.sin[Z(t * half + j)];
        const double g1 = p[j], g2 = p[j + half];
        p[j] = g1 * c + g2 * s;
        p[j + half] = -g1 * s + g2 * c;
      }
    }
}

void CausalAttentionBackward(const double* q, const double* k, const double* v, const double* probs, int64_t T,
                             int64_t nh, int64_t nkv, int64_t hd, const double* dout, double* dq, double* dk,
                             double* dv) {
  const int64_t group = nh / nkv;
  const double scale = 1.0 / std::sqrt(double(hd));
  std::vector<double> dp(Z(T));
  for (int64_t h = 0; h < nh; ++h) {
    const int64_t j = h / group;
    for (int64_t t = 0; t < T; ++t) {
      const double* go = dout + t * nh * hd + h * hd;
      const double* pr = probs + (h * T + t) * T;
      double sum = 0;
      for (int64_t u = 0; u <= t; ++u) {
        const double* vu = v + u * nkv * hd + j * hd;
        double* dvu = dv + u * nkv * hd + j * hd;
        double d = 0;
        for (int64_t i = 0; i < hd; ++i) {
          d += go[i] * vu[i];
          dvu[i] += pr[u] * go[i];
        }
        dp[Z(u)] = d;
        sum += pr[u] * d;
      }
      const double* qt = q + t * nh * hd + h * hd;
      double* dqt = dq + t * nh * hd + h * hd;
      for (int64_t u = 0; u <= t; ++u) {
        const double ds = pr[u] * (dp[Z(u)] - sum) * scale;
        const double* ku = k + u * nkv * hd + j * hd;
        double* dku = dk + u * nkv * hd + j * hd;
        for (int64_t i = 0; i < hd; ++i) {
          dqt[i] += ds * ku[i];
          dku[i] += ds * qt[i];
        }
      }
    }
  }
}

void SwiGluBackward(const double* x, int64_t T, int64_t H, const double* gate, const double* up, const double* down,
                    int64_t F, const double* dy, double* dx, double* dgate, double* dup, double* ddown) {
  std::vector<double> g(Z(T * F)), u(Z(T * F)), a(Z(T * F)), da(Z(T * F), 0.0);
  Linear(x, T, H, gate, static_cast<const double*>(nullptr), F, g.data());
  Linear(x, T, H, up, static_cast<const double*>(nullptr), F, u.data());
  for (size_t i = 0; i < g.size(); ++i) a[i] = Silu(g[i]) * u[i];
  LinearBackward(a.data(), T, F, down, H, dy, da.data(), ddown, nullptr);
  std::vector<double> dg(Z(T * F)), du(Z(T * F));
  for (size_t i = 0; i < g.size(); ++i) {
    const double s = Sigmoid(g[i]);
    du[i] = da[i] * g[i] * s;
    dg[i] = da[i] * u[i] * s * (1.0 + g[i] * (1.0 - s));
  }
  LinearBackward(x, T, H, gate, F, dg.data(), dx, dgate, nullptr);
  LinearBackward(x, T, H, up, F, du.data(), dx, dup, nullptr);
}

void SoftmaxBackward(const double* y, int64_t T, int64_t N, const double* dy, double* dx) {
  for (int64_t t = 0; t < T; ++t) {
    double dot = 0;
    for (int64_t n = 0; n < N; ++n) dot += y[t * N + n] * dy[t * N + n];
    for (int64_t n = 0; n < N; ++n) dx[t * N + n] += y[t * N + n] * (dy[t * N + n] - dot);
  }
}

void RoutingWeightsBackward(const double* logits, const Routing& r, const RoutingParams& p, const double* dweight,
                            double* dlogits) {
  const int64_t T = r.tokens, k = r.top_k, E = r.experts;
  std::vector<double> sel(Z(k)), dsel(Z(k)), probs(Z(E)), dprobs(Z(E));
  for (int64_t t = 0; t < T; ++t) {
    const double* lt = logits + t * E;
    double* gt = dlogits + t * E;
    if (p.softmax_after_topk) {
      for (int64_t i = 0; i < k; ++i) {
        sel[Z(i)] = lt[r.expert[Z(t * k + i)]];
        dsel[Z(i)] = r.kept[Z(t * k + i)] ? dweight[t * k + i] : 0.0;
      }
      Softmax(sel.data(), 1, k, sel.data());
      std::vector<double> dl(Z(k), 0.0);
      SoftmaxBackward(sel.data(), 1, k, dsel.data(), dl.data());
      for (int64_t i = 0; i < k; ++i) gt[r.expert[Z(t * k + i)]] += dl[Z(i)];
    } else {
      Softmax(lt, 1, E, probs.data());
      std::fill(dprobs.begin(), dprobs.end(), 0.0);
      for (int64_t i = 0; i < k; ++i)
        if (r.kept[Z(t * k + i)]) dprobs[Z(r.expert[Z(t * k + i)])] += dweight[t * k + i];
      SoftmaxBackward(probs.data(), 1, E, dprobs.data(), gt);
    }
  }
}

void CrossEntropyMeanBackward(const double* logits, int64_t T, int64_t V, const int32_t* targets, double scale,
                              double* dlogits) {
  const int64_t n = CountedRows(T, targets);
  if (n == 0) return;
  std::vector<double> p(Z(V));
  for (int64_t t = 0; t < T; ++t) {
    if (targets[t] < 0) continue;
    Softmax(logits + t * V, 1, V, p.data());
    for (int64_t v = 0; v < V; ++v) dlogits[t * V + v] += scale * p[Z(v)] / double(n);
    dlogits[t * V + targets[t]] -= scale / double(n);
  }
}

void OutputZLossBackward(const double* logits, int64_t T, int64_t V, const int32_t* targets, double scale,
                         double* dlogits) {
  const int64_t n = CountedRows(T, targets);
  if (n == 0) return;
  std::vector<double> p(Z(V));
  for (int64_t t = 0; t < T; ++t) {
    if (targets[t] < 0) continue;
    const double z = LogSumExp(logits + t * V, V);
    Softmax(logits + t * V, 1, V, p.data());
    for (int64_t v = 0; v < V; ++v) dlogits[t * V + v] += scale * 2.0 * z * p[Z(v)] / double(n);
  }
}

void OutputMaxZLossBackward(const double* logits, int64_t T, int64_t V, const int32_t* targets, double scale,
                            double* dlogits) {
  const int64_t n = CountedRows(T, targets);
  if (n == 0) return;
  for (int64_t t = 0; t < T; ++t) {
    if (targets[t] < 0) continue;
    const int64_t a = ArgMax(logits + t * V, V);
    dlogits[t * V + a] += scale * 2.0 * logits[t * V + a] / double(n);
  }
}

void RouterMaxZLossBackward(const double* logits, int64_t T, int64_t E, double scale, double* dlogits) {
  for (int64_t t = 0; t < T; ++t) {
    const int64_t a = ArgMax(logits + t * E, E);
    dlogits[t * E + a] += scale * 2.0 * logits[t * E + a] / double(T);
  }
}

void RouterZLossBackward(const double* logits, int64_t T, int64_t E, double scale, double* dlogits) {
  std::vector<double> p(Z(E));
  for (int64_t t = 0; t < T; ++t) {
    const double z = LogSumExp(logits + t * E, E);
    Softmax(logits + t * E, 1, E, p.data());
    for (int64_t e = 0; e < E; ++e) dlogits[t * E + e] += scale * 2.0 * z * p[Z(e)] / double(T);
  }
}

void AuxLossBackward(const double* logits, int64_t T, int64_t E, int64_t top_k, const std::vector<int64_t>& load,
                     double scale, double* dlogits) {
  std::vector<double> p(Z(T * E)), dp(Z(T * E));
  Softmax(logits, T, E, p.data());
  for (int64_t t = 0; t < T; ++t)
    for (int64_t e = 0; e < E; ++e)
      dp[Z(t * E + e)] = scale * double(E) * (double(load[Z(e)]) / double(T * top_k)) / double(T);
  SoftmaxBackward(p.data(), T, E, dp.data(), dlogits);
}

}  // namespace escale::ops::ref
