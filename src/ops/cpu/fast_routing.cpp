#include "ops/cpu/fast_routing.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace escale::ops::fast {

int64_t ExpertCapacityPerSequence(const RouterSpec& r, int64_t seq_len) {
  if (r.capacity_factor <= 0) return -1;
  // In lowest terms, as ref::ExpertCapacity (copied experts keep bit-identical capacities).
  const int64_t g = std::gcd(seq_len * r.top_k, r.experts);
  return static_cast<int64_t>(std::ceil(r.capacity_factor * double(seq_len * r.top_k / g) / double(r.experts / g)));
}

int64_t RouteTokens(const float* logits, int64_t rows, int64_t seq_len, const RouterSpec& r, const RoutingBuffers& out,
                    int32_t* scratch) {
  const int64_t E = r.experts, k = r.top_k;
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < rows; ++t) {
    const float* l = logits + t * E;
    int32_t* ex = out.expert + t * k;
    // Insertion into a sorted list of k: strictly larger logits move ahead, so the lower index
    // wins a tie (the reference's stable sort).
    int64_t n = 0;
    for (int64_t e = 0; e < E; ++e) {
      int64_t pos = n < k ? n : k;
      while (pos > 0 && l[e] > l[ex[pos - 1]]) --pos;
      if (pos >= k) continue;
      for (int64_t m = std::min(n, k - 1); m > pos; --m) ex[m] = ex[m - 1];
      ex[pos] = static_cast<int32_t>(e);
      n = std::min(n + 1, k);
    }
    float mx = l[0];
    for (int64_t e = 1; e < E; ++e) mx = std::max(mx, l[e]);
    float* p = out.softmax + t * E;
    float sum = 0;
    for (int64_t e = 0; e < E; ++e) {
      p[e] = std::exp(l[e] - mx);
      sum += p[e];
    }
    for (int64_t e = 0; e < E; ++e) p[e] /= sum;
    float* w = out.prob + t * k;
    if (r.mixtral) {
      const float top = l[ex[0]];  // the largest of the selected
      float s = 0;
      for (int64_t i = 0; i < k; ++i) {
        w[i] = std::exp(l[ex[i]] - top);
        s += w[i];
      }
      for (int64_t i = 0; i < k; ++i) w[i] /= s;
    } else {
      for (int64_t i = 0; i < k; ++i) w[i] = p[ex[i]];
    }
    for (int64_t i = 0; i < k; ++i) out.kept[t * k + i] = 1;
  }
  for (int64_t e = 0; e < E; ++e) out.load[e] = 0;
  for (int64_t a = 0; a < rows * k; ++a) ++out.load[out.expert[a]];

  const int64_t cap = ExpertCapacityPerSequence(r, seq_len);
  if (cap < 0) return 0;
  int64_t dropped = 0;
  const int64_t per_seq = seq_len * k;
  int32_t* list = scratch;              // assignment indices of one sequence grouped by expert
  int32_t* start = scratch + per_seq;   // [E+1]
  for (int64_t b = 0; b < rows / seq_len; ++b) {
    const int32_t* ex = out.expert + b * per_seq;
    for (int64_t e = 0; e <= E; ++e) start[e] = 0;
    for (int64_t a = 0; a < per_seq; ++a) ++start[ex[a] + 1];
    for (int64_t e = 0; e < E; ++e) start[e + 1] += start[e];
    for (int64_t a = 0; a < per_seq; ++a) list[start[ex[a]]++] = static_cast<int32_t>(a);  // ascending a
    for (int64_t e = E; e > 0; --e) start[e] = start[e - 1];
    start[0] = 0;
    const float* w = out.prob + b * per_seq;
    for (int64_t e = 0; e < E; ++e) {
      int32_t* first = list + start[e];
      int32_t* last = list + start[e + 1];
      if (last - first <= cap) continue;
      if (!r.drop_by_position)
        std::sort(first, last, [w](int32_t x, int32_t y) { return w[x] > w[y] || (w[x] == w[y] && x < y); });
      for (int32_t* it = first + cap; it < last; ++it) {
        out.kept[b * per_seq + *it] = 0;
        ++dropped;
      }
    }
  }
  return dropped;
}

RouterLossValues ComputeRouterLosses(const float* logits, int64_t rows, const RouterSpec& r, const RoutingBuffers& rb) {
  const int64_t E = r.experts;
  RouterLossValues v;
  double aux = 0;
  for (int64_t e = 0; e < E; ++e) {
    double pe = 0;
    for (int64_t t = 0; t < rows; ++t) pe += rb.softmax[t * E + e];
    aux += pe / double(rows) * (double(rb.load[e]) / double(rows * r.top_k));
  }
  v.aux = aux * double(E);
  for (int64_t t = 0; t < rows; ++t) {
    const float* l = logits + t * E;
    double mx = l[0];
    for (int64_t e = 1; e < E; ++e) mx = std::max(mx, double(l[e]));
    double s = 0, ent = 0;
    for (int64_t e = 0; e < E; ++e) {
      s += std::exp(double(l[e]) - mx);
      const double p = rb.softmax[t * E + e];
      if (p > 0) ent -= p * std::log(p);
    }
    const double z = mx + std::log(s);
    v.router_max_z += mx * mx;
    v.router_z += z * z;
    v.entropy += ent;
  }
  v.router_max_z /= double(rows);
  v.router_z /= double(rows);
  v.entropy /= double(rows);
  return v;
}

void RouterBackward(const float* logits, int64_t rows, const RouterSpec& r, const RoutingBuffers& rb,
                    const float* dweight, const RouterGradScales& g, float* dlogits) {
  const int64_t E = r.experts, k = r.top_k;
  const double inv_rows = 1.0 / double(rows);
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < rows; ++t) {
    const float* l = logits + t * E;
    const float* p = rb.softmax + t * E;
    const int32_t* ex = rb.expert + t * k;
    const float* w = rb.prob + t * k;
    const uint8_t* kept = rb.kept + t * k;
    const float* dw = dweight + t * k;
    float* d = dlogits + t * E;
    for (int64_t e = 0; e < E; ++e) d[e] = 0;
    if (r.mixtral) {
      // Weights are a softmax over the selected logits; a dropped weight is the constant 0.
      float s = 0;
      for (int64_t i = 0; i < k; ++i) s += kept[i] ? w[i] * dw[i] : 0.0f;
      for (int64_t i = 0; i < k; ++i) d[ex[i]] += w[i] * ((kept[i] ? dw[i] : 0.0f) - s);
    } else {
      float s = 0;
      for (int64_t i = 0; i < k; ++i) s += kept[i] ? p[ex[i]] * dw[i] : 0.0f;
      for (int64_t e = 0; e < E; ++e) d[e] -= p[e] * s;
      for (int64_t i = 0; i < k; ++i)
        if (kept[i]) d[ex[i]] += p[ex[i]] * dw[i];
    }
    if (g.aux != 0) {
      // L = E·Σ_e f_e·mean_t P_te: dL/dP_te = E·f_e/rows, through the softmax.
      float acc = 0;
      for (int64_t e = 0; e < E; ++e) {
        const float c = static_cast<float>(g.aux * double(E) * double(rb.load[e]) / double(rows * k) * inv_rows);
        acc += p[e] * c;
      }
      for (int64_t e = 0; e < E; ++e) {
        const float c = static_cast<float>(g.aux * double(E) * double(rb.load[e]) / double(rows * k) * inv_rows);
        d[e] += p[e] * (c - acc);
      }
    }
    if (g.router_z != 0) {
      float mx = l[0];
      for (int64_t e = 1; e < E; ++e) mx = std::max(mx, l[e]);
      float s = 0;
      for (int64_t e = 0; e < E; ++e) s += std::exp(l[e] - mx);
      const float z = mx + std::log(s);
      const float c = static_cast<float>(g.router_z * 2.0 * inv_rows) * z;
      for (int64_t e = 0; e < E; ++e) d[e] += c * p[e];
    }
    if (g.router_max_z != 0) {
      int64_t am = 0;
      for (int64_t e = 1; e < E; ++e)
        if (l[e] > l[am]) am = e;
      d[am] += static_cast<float>(g.router_max_z * 2.0 * inv_rows) * l[am];
    }
  }
}

}  // namespace escale::ops::fast
