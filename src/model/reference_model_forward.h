// The one whole-model forward of the reference path, templated on the number type: S = double for
// ReferenceForward and the backward pass (which reads the tape), S = std::complex<double> for
// complex-step gradient checks in tests. Routing decisions are made on real parts, so both types
// take the same branch.
#pragma once

#include <complex>
#include <cstdint>
#include <map>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "model/config.h"
#include "model/layout.h"
#include "model/reference_forward.h"
#include "model/reference_model.h"
#include "ops/cpu/reference_losses.h"
#include "ops/cpu/reference_ops.h"
#include "ops/cpu/reference_routing.h"

namespace escale::refmodel {

namespace ref = ops::ref;

template <class S>
using WeightsT = std::map<std::string, std::vector<S>>;

// Every canonical tensor as fp64, with names and shapes checked against the config.
Result<WeightsT<double>> LoadWeightsF64(const ModelConfig& c, const TensorMap& tensors);
ref::RoutingParams RoutingParamsOf(const MoeConfig& m);
Status CheckTokens(const ModelConfig& c, std::span<const int32_t> tokens, const char* what, bool allow_negative);

// Activations of one layer kept for the backward pass, [B*T, ...] row-major.
template <class S>
struct LayerTape {
  std::vector<S> x_in, xn1, q, k, v, probs, att, x_mid, xn2;
  std::vector<S> q_raw, k_raw;  // projections before the q/k norm (QkNorm::kPerHead)
};

template <class S>
struct ForwardState {
  int64_t batch = 0, seq_len = 0;
  std::vector<S> logits;                               // [B*T, V]
  std::vector<std::vector<S>> residuals;               // per layer, when asked
  std::vector<std::vector<S>> router_logits;           // per layer [B*T, E]; empty when dense
  std::vector<std::vector<ref::Routing>> routing;      // per layer, per sequence
  std::vector<LayerTape<S>> tape;                      // when asked
  std::vector<S> x_final, xn_final;                    // when the tape is asked
};

template <class S>
const S* W(const WeightsT<S>& w, const std::string& name) {
  auto it = w.find(name);
  ESCALE_CHECK(it != w.end());
  return it->second.data();
}

// x [B*T, H] -> y [B*T, H] for MoE layer l.
template <class S>
void MoeForwardT(const ModelConfig& c, const WeightsT<S>& w, int64_t l, const std::vector<S>& x, int64_t B,
                 int64_t T, ForwardState<S>& st, std::vector<S>& y) {
  const int64_t H = c.hidden_size, E = c.moe.num_experts, k = c.moe.top_k, Fe = c.moe.expert_intermediate;
  const int64_t N = B * T;
  auto z = [](int64_t i) { return static_cast<size_t>(i); };
  std::vector<S>& logits = st.router_logits[z(l)];
  logits.assign(z(N * E), S(0));
  ref::Linear(x.data(), N, H, W(w, LayerTensorName(l, "moe.router")), static_cast<const S*>(nullptr), E,
              logits.data());
  const ref::RoutingParams params = RoutingParamsOf(c.moe);
  y.assign(z(N * H), S(0));
  std::vector<double> re(z(T * E));
  std::vector<S> expert_out(z(T * k * H));
  for (int64_t b = 0; b < B; ++b) {
    const S* lb = logits.data() + b * T * E;
    for (int64_t i = 0; i < T * E; ++i) re[z(i)] = ref::Re(lb[i]);
    ref::Routing r = ref::RouteTokens(re.data(), T, params);
    const std::vector<S> weight = ref::RoutingWeights(lb, r, params);
    std::fill(expert_out.begin(), expert_out.end(), S(0));
    for (int64_t a = 0; a < T * k; ++a) {
      if (!r.kept[z(a)]) continue;
      const int64_t e = r.expert[z(a)];
      ref::SwiGlu(x.data() + (b * T + a / k) * H, 1, H, W(w, ExpertTensorName(l, e, "gate")),
                  W(w, ExpertTensorName(l, e, "up")), W(w, ExpertTensorName(l, e, "down")), Fe,
                  expert_out.data() + a * H);
    }
    ref::MoeCombine(expert_out.data(), weight.data(), r, H, y.data() + b * T * H);
    st.routing[z(l)].push_back(std::move(r));
  }
  if (c.moe.shared_intermediate > 0) {
    std::vector<S> shared(z(N * H)), gate(z(N));
    ref::SwiGlu(x.data(), N, H, W(w, LayerTensorName(l, "moe.shared.gate")), W(w, LayerTensorName(l, "moe.shared.up")),
                W(w, LayerTensorName(l, "moe.shared.down")), c.moe.shared_intermediate, shared.data());
    ref::Linear(x.data(), N, H, W(w, LayerTensorName(l, "moe.shared_router")), static_cast<const S*>(nullptr), 1,
                gate.data());
    for (int64_t t = 0; t < N; ++t) {
      const S s = ops::ref::Sigmoid(gate[z(t)]);
      for (int64_t h = 0; h < H; ++h) y[z(t * H + h)] += s * shared[z(t * H + h)];
    }
  }
}

// Runs B = tokens.size() / T sequences. Tokens must already be checked (CheckTokens).
template <class S>
void ModelForwardT(const ModelConfig& c, const WeightsT<S>& w, std::span<const int32_t> tokens, int64_t T,
                   const ref::RopeTables& rt, bool keep_tape, bool keep_residuals, ForwardState<S>& st) {
  auto z = [](int64_t i) { return static_cast<size_t>(i); };
  const int64_t N = static_cast<int64_t>(tokens.size());
  const int64_t B = T > 0 ? N / T : 0;
  const int64_t V = c.vocab_size, H = c.hidden_size, nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim;
  const int64_t qd = c.q_dim(), kvd = c.kv_dim();
  st.batch = B;
  st.seq_len = T;
  st.router_logits.assign(z(c.num_layers), {});
  st.routing.assign(z(c.num_layers), {});
  if (keep_tape) st.tape.assign(z(c.num_layers), {});

  std::vector<S> x(z(N * H));
  const S* embed = W(w, "embed");
  for (int64_t t = 0; t < N; ++t)
    for (int64_t h = 0; h < H; ++h) x[z(t * H + h)] = embed[tokens[z(t)] * H + h];

  std::vector<S> xn(z(N * H)), q(z(N * qd)), kk(z(N * kvd)), vv(z(N * kvd)), att(z(N * qd)), y(z(N * H));
  std::vector<S> probs(keep_tape ? z(B * nh * T * T) : 0);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    auto L = [&](const char* s) { return W(w, LayerTensorName(l, s)); };
    if (keep_tape) st.tape[z(l)].x_in = x;
    ref::RmsNorm(x.data(), N, H, L("attn_norm"), c.rms_norm_eps, xn.data());
    ref::Linear(xn.data(), N, H, L("wq"), c.qkv_bias ? L("bq") : nullptr, qd, q.data());
    ref::Linear(xn.data(), N, H, L("wk"), c.qkv_bias ? L("bk") : nullptr, kvd, kk.data());
    ref::Linear(xn.data(), N, H, L("wv"), c.qkv_bias ? L("bv") : nullptr, kvd, vv.data());
    if (c.qk_norm == QkNorm::kPerHead) {
      // Each head's head_dim values are one RMSNorm row: [N*heads, hd].
      std::vector<S> q_raw = q, k_raw = kk;
      ref::RmsNorm(q_raw.data(), N * nh, hd, L("q_norm"), c.rms_norm_eps, q.data());
      ref::RmsNorm(k_raw.data(), N * nkv, hd, L("k_norm"), c.rms_norm_eps, kk.data());
      if (keep_tape) {
        st.tape[z(l)].q_raw = std::move(q_raw);
        st.tape[z(l)].k_raw = std::move(k_raw);
      }
    }
    for (int64_t b = 0; b < B; ++b) {
      ref::ApplyRope(q.data() + b * T * qd, T, nh, hd, rt);
      ref::ApplyRope(kk.data() + b * T * kvd, T, nkv, hd, rt);
      ref::CausalAttention(q.data() + b * T * qd, kk.data() + b * T * kvd, vv.data() + b * T * kvd, T, nh, nkv, hd,
                           att.data() + b * T * qd, keep_tape ? probs.data() + b * nh * T * T : nullptr);
    }
    ref::Linear(att.data(), N, qd, L("wo"), static_cast<const S*>(nullptr), H, y.data());
    if (keep_tape) {
      LayerTape<S>& tp = st.tape[z(l)];
      tp.xn1 = xn;
      tp.q = q;
      tp.k = kk;
      tp.v = vv;
      tp.probs = probs;
      tp.att = att;
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
    ref::RmsNorm(x.data(), N, H, L("ffn_norm"), c.rms_norm_eps, xn.data());
    if (keep_tape) {
      st.tape[z(l)].x_mid = x;
      st.tape[z(l)].xn2 = xn;
    }
    if (c.IsMoeLayer(l)) {
      MoeForwardT(c, w, l, xn, B, T, st, y);
    } else {
      ref::SwiGlu(xn.data(), N, H, L("ffn.gate"), L("ffn.up"), L("ffn.down"), c.intermediate_size, y.data());
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
    if (keep_residuals) st.residuals.push_back(x);
  }
  ref::RmsNorm(x.data(), N, H, W(w, "norm"), c.rms_norm_eps, xn.data());
  st.logits.assign(z(N * V), S(0));
  const S* head = c.tie_word_embeddings ? embed : W(w, "lm_head");
  ref::Linear(xn.data(), N, H, head, static_cast<const S*>(nullptr), V, st.logits.data());
  if (keep_tape) {
    st.x_final = std::move(x);
    st.xn_final = std::move(xn);
  }
}

template <class S>
struct LossTermsT {
  S total = 0, ce = 0, aux = 0, router_max_z = 0, router_z = 0, output_z = 0, output_max_z = 0;
};

// Assignments per expert of layer l before dropping, over the whole batch.
std::vector<int64_t> ExpertLoad(const std::vector<ref::Routing>& per_sequence, int64_t experts);

template <class S>
LossTermsT<S> ComputeLossesT(const ModelConfig& c, const ForwardState<S>& st, std::span<const int32_t> targets,
                             const LossCoefficients& coef) {
  LossTermsT<S> r;
  const int64_t N = static_cast<int64_t>(targets.size()), V = c.vocab_size;
  r.ce = ref::CrossEntropyMean(st.logits.data(), N, V, targets.data());
  r.output_z = ref::OutputZLoss(st.logits.data(), N, V, targets.data());
  r.output_max_z = ref::OutputMaxZLoss(st.logits.data(), N, V, targets.data());
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    if (!c.IsMoeLayer(l)) continue;
    ++moe_layers;
    const int64_t E = c.moe.num_experts;
    const S* lg = st.router_logits[static_cast<size_t>(l)].data();
    r.aux += ref::AuxLoss(lg, N, E, c.moe.top_k, ExpertLoad(st.routing[static_cast<size_t>(l)], E));
    r.router_max_z += ref::RouterMaxZLoss(lg, N, E);
    r.router_z += ref::RouterZLoss(lg, N, E);
  }
  if (moe_layers > 0) {
    r.aux /= S(double(moe_layers));
    r.router_max_z /= S(double(moe_layers));
    r.router_z /= S(double(moe_layers));
  }
  r.total = r.ce + S(coef.aux) * r.aux + S(coef.router_max_z) * r.router_max_z + S(coef.router_z) * r.router_z +
            S(coef.output_z) * r.output_z + S(coef.output_max_z) * r.output_max_z;
  return r;
}

}  // namespace escale::refmodel
