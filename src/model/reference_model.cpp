#include "model/reference_model.h"

#include <array>
#include <cmath>

#include "model/reference_model_forward.h"
#include "model/rope.h"
#include "ops/cpu/reference_backward.h"

namespace escale {
namespace refmodel {

Result<WeightsT<double>> LoadWeightsF64(const ModelConfig& c, const TensorMap& tensors) {
  WeightsT<double> w;
  for (const TensorSpec& spec : CanonicalTensors(c)) {
    auto it = tensors.find(spec.name);
    if (it == tensors.end()) return NotFound("tensor '" + spec.name + "' is missing from the model");
    if (it->second.shape() != spec.shape)
      return FormatError("tensor '" + spec.name + "' has shape " + ShapeToString(it->second.shape()) +
                         ", the config needs " + ShapeToString(spec.shape));
    auto v = ToF64Vector(it->second);
    if (!v.ok()) return v.status().WithContext("tensor '" + spec.name + "'");
    w.emplace(spec.name, std::move(v).value());
  }
  return w;
}

ref::RoutingParams RoutingParamsOf(const MoeConfig& m) {
  ref::RoutingParams p;
  p.experts = m.num_experts;
  p.top_k = m.top_k;
  p.softmax_after_topk = m.router == RouterType::kMixtral;
  p.capacity_factor = m.capacity_factor;
  p.drop_by_position = m.drop_policy == DropPolicy::kPosition;
  return p;
}

Status CheckTokens(const ModelConfig& c, std::span<const int32_t> tokens, const char* what, bool allow_negative) {
  for (size_t t = 0; t < tokens.size(); ++t) {
    const int32_t v = tokens[t];
    if ((v < 0 && !allow_negative) || v >= c.vocab_size)
      return InvalidArgument(std::string(what) + " " + std::to_string(v) + " at position " + std::to_string(t) +
                             " is outside the vocabulary [0, " + std::to_string(c.vocab_size) + ")");
  }
  return Status::Ok();
}

std::vector<int64_t> ExpertLoad(const std::vector<ref::Routing>& per_sequence, int64_t experts) {
  std::vector<int64_t> load(static_cast<size_t>(experts), 0);
  for (const ref::Routing& r : per_sequence)
    for (int64_t e : r.expert) ++load[static_cast<size_t>(e)];
  return load;
}

}  // namespace refmodel

namespace {

namespace ref = ops::ref;
using refmodel::WeightsT;
size_t Z(int64_t i) { return static_cast<size_t>(i); }

// Backward of MoE layer l: dy [N,H] is the gradient of the layer output; adds into dxn [N,H].
void MoeBackward(const ModelConfig& c, const WeightsT<double>& w, int64_t l, const refmodel::ForwardState<double>& st,
                 const std::vector<double>& xn, const std::vector<double>& dy, const LossCoefficients& coef,
                 int64_t moe_layers, std::map<std::string, std::vector<double>>& g, std::vector<double>& dxn) {
  const int64_t H = c.hidden_size, E = c.moe.num_experts, k = c.moe.top_k, Fe = c.moe.expert_intermediate;
  const int64_t B = st.batch, T = st.seq_len, N = B * T;
  const std::vector<double>& logits = st.router_logits[Z(l)];
  const ref::RoutingParams params = refmodel::RoutingParamsOf(c.moe);
  std::vector<double> dweight(Z(N * k), 0.0), expert_out(Z(T * k * H)), dexpert_out(Z(T * k * H));
  for (int64_t b = 0; b < B; ++b) {
    const ref::Routing& r = st.routing[Z(l)][Z(b)];
    std::fill(expert_out.begin(), expert_out.end(), 0.0);
    std::fill(dexpert_out.begin(), dexpert_out.end(), 0.0);
    auto names = [&](int64_t e) {
      return std::array<std::string, 3>{ExpertTensorName(l, e, "gate"), ExpertTensorName(l, e, "up"),
                                        ExpertTensorName(l, e, "down")};
    };
    for (int64_t a = 0; a < T * k; ++a) {
      if (!r.kept[Z(a)]) continue;
      const auto n = names(r.expert[Z(a)]);
      ref::SwiGlu(xn.data() + (b * T + a / k) * H, 1, H, refmodel::W(w, n[0]), refmodel::W(w, n[1]),
                  refmodel::W(w, n[2]), Fe, expert_out.data() + a * H);
    }
    ref::MoeCombineBackward(expert_out.data(), r.weight.data(), r, H, dy.data() + b * T * H, dexpert_out.data(),
                            dweight.data() + b * T * k);
    for (int64_t a = 0; a < T * k; ++a) {
      if (!r.kept[Z(a)]) continue;
      const auto n = names(r.expert[Z(a)]);
      ref::SwiGluBackward(xn.data() + (b * T + a / k) * H, 1, H, refmodel::W(w, n[0]), refmodel::W(w, n[1]),
                          refmodel::W(w, n[2]), Fe, dexpert_out.data() + a * H, dxn.data() + (b * T + a / k) * H,
                          g[n[0]].data(), g[n[1]].data(), g[n[2]].data());
    }
  }
  std::vector<double> dlogits(Z(N * E), 0.0);
  for (int64_t b = 0; b < B; ++b)
    ref::RoutingWeightsBackward(logits.data() + b * T * E, st.routing[Z(l)][Z(b)], params, dweight.data() + b * T * k,
                                dlogits.data() + b * T * E);
  const double per_layer = 1.0 / double(moe_layers);
  if (coef.aux != 0.0)
    ref::AuxLossBackward(logits.data(), N, E, k, refmodel::ExpertLoad(st.routing[Z(l)], E), coef.aux * per_layer,
                         dlogits.data());
  if (coef.router_max_z != 0.0)
    ref::RouterMaxZLossBackward(logits.data(), N, E, coef.router_max_z * per_layer, dlogits.data());
  if (coef.router_z != 0.0) ref::RouterZLossBackward(logits.data(), N, E, coef.router_z * per_layer, dlogits.data());
  const std::string rn = LayerTensorName(l, "moe.router");
  ref::LinearBackward(xn.data(), N, H, refmodel::W(w, rn), E, dlogits.data(), dxn.data(), g[rn].data(), nullptr);

  if (c.moe.shared_intermediate > 0) {
    const int64_t Fs = c.moe.shared_intermediate;
    const std::string gn = LayerTensorName(l, "moe.shared.gate"), un = LayerTensorName(l, "moe.shared.up"),
                      dn = LayerTensorName(l, "moe.shared.down"), sr = LayerTensorName(l, "moe.shared_router");
    std::vector<double> shared(Z(N * H)), gate(Z(N)), dgate(Z(N)), dshared(Z(N * H));
    ref::SwiGlu(xn.data(), N, H, refmodel::W(w, gn), refmodel::W(w, un), refmodel::W(w, dn), Fs, shared.data());
    ref::Linear(xn.data(), N, H, refmodel::W(w, sr), static_cast<const double*>(nullptr), 1, gate.data());
    for (int64_t t = 0; t < N; ++t) {
      const double s = ref::Sigmoid(gate[Z(t)]);
      double ds = 0;
      for (int64_t h = 0; h < H; ++h) {
        ds += dy[Z(t * H + h)] * shared[Z(t * H + h)];
        dshared[Z(t * H + h)] = s * dy[Z(t * H + h)];
      }
      dgate[Z(t)] = ds * s * (1.0 - s);
    }
    ref::LinearBackward(xn.data(), N, H, refmodel::W(w, sr), 1, dgate.data(), dxn.data(), g[sr].data(), nullptr);
    ref::SwiGluBackward(xn.data(), N, H, refmodel::W(w, gn), refmodel::W(w, un), refmodel::W(w, dn), Fs,
                        dshared.data(), dxn.data(), g[gn].data(), g[un].data(), g[dn].data());
  }
}

}  // namespace

Result<ReferenceModelResult> ReferenceLossAndGradients(const ModelConfig& c, const TensorMap& tensors,
                                                       std::span<const int32_t> tokens,
                                                       std::span<const int32_t> targets, int64_t seq_len,
                                                       const LossCoefficients& coef) {
  ESCALE_RETURN_IF_ERROR(c.Validate());
  if (seq_len <= 0) return InvalidArgument("sequence length must be positive");
  if (tokens.size() != targets.size())
    return InvalidArgument("tokens (" + std::to_string(tokens.size()) + ") and targets (" +
                           std::to_string(targets.size()) + ") differ in length");
  if (tokens.empty() || tokens.size() % static_cast<size_t>(seq_len) != 0)
    return InvalidArgument("the batch of " + std::to_string(tokens.size()) +
                           " tokens is not a positive multiple of the sequence length " + std::to_string(seq_len));
  if (c.router_untrainable())
    return InvalidArgument("mixtral routing with top-k = 1 gives the router no gradient; use k >= 2 or st routing");
  ESCALE_RETURN_IF_ERROR(refmodel::CheckTokens(c, tokens, "token", false));
  ESCALE_RETURN_IF_ERROR(refmodel::CheckTokens(c, targets, "target", true));
  bool any_target = false;
  for (int32_t t : targets) any_target = any_target || t >= 0;
  if (!any_target) return InvalidArgument("every target is ignored (< 0): nothing to train on");

  const int64_t T = seq_len, N = static_cast<int64_t>(tokens.size());
  const int64_t V = c.vocab_size, H = c.hidden_size, nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim;
  const int64_t qd = c.q_dim(), kvd = c.kv_dim(), B = N / T;
  ESCALE_ASSIGN_OR_RETURN(const RopeFrequencies rope, ComputeRopeFrequencies(c));
  ESCALE_ASSIGN_OR_RETURN(const WeightsT<double> w, refmodel::LoadWeightsF64(c, tensors));
  const ref::RopeTables rt = ref::MakeRopeTables(rope.inv_freq, T, rope.attention_factor);
  refmodel::ForwardState<double> st;
  refmodel::ModelForwardT(c, w, tokens, T, rt, /*keep_tape=*/true, /*keep_residuals=*/false, st);
  const refmodel::LossTermsT<double> lt = refmodel::ComputeLossesT(c, st, targets, coef);

  ReferenceModelResult res;
  res.loss = {lt.total, lt.ce, lt.aux, lt.router_max_z, lt.router_z, lt.output_z, lt.output_max_z};
  std::map<std::string, std::vector<double>>& g = res.grads;
  for (const auto& [name, v] : w) g[name].assign(v.size(), 0.0);
  int64_t moe_layers = 0;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    if (!c.IsMoeLayer(l)) {
      res.expert_load.emplace_back();
      continue;
    }
    ++moe_layers;
    res.expert_load.push_back(refmodel::ExpertLoad(st.routing[Z(l)], c.moe.num_experts));
    for (const ref::Routing& r : st.routing[Z(l)])
      for (uint8_t kept : r.kept) res.dropped_assignments += kept ? 0 : 1;
  }

  // Output losses -> logits -> final norm.
  std::vector<double> dlogits(Z(N * V), 0.0);
  ref::CrossEntropyMeanBackward(st.logits.data(), N, V, targets.data(), 1.0, dlogits.data());
  if (coef.output_z != 0.0) ref::OutputZLossBackward(st.logits.data(), N, V, targets.data(), coef.output_z, dlogits.data());
  if (coef.output_max_z != 0.0)
    ref::OutputMaxZLossBackward(st.logits.data(), N, V, targets.data(), coef.output_max_z, dlogits.data());
  const std::string head = c.tie_word_embeddings ? "embed" : "lm_head";
  std::vector<double> dx(Z(N * H), 0.0), dxn(Z(N * H), 0.0);
  ref::LinearBackward(st.xn_final.data(), N, H, refmodel::W(w, head), V, dlogits.data(), dxn.data(), g[head].data(),
                      nullptr);
  ref::RmsNormBackward(st.x_final.data(), N, H, refmodel::W(w, "norm"), c.rms_norm_eps, dxn.data(), dx.data(),
                       g["norm"].data());

  std::vector<double> datt(Z(N * qd)), dq(Z(N * qd)), dk(Z(N * kvd)), dv(Z(N * kvd));
  for (int64_t l = c.num_layers - 1; l >= 0; --l) {
    const refmodel::LayerTape<double>& tp = st.tape[Z(l)];
    auto name = [&](const char* s) { return LayerTensorName(l, s); };
    auto L = [&](const char* s) { return refmodel::W(w, LayerTensorName(l, s)); };
    // FFN sub-block: x_out = x_mid + FFN(RMSNorm(x_mid)); dx is the gradient of x_out.
    std::fill(dxn.begin(), dxn.end(), 0.0);
    if (c.IsMoeLayer(l)) {
      MoeBackward(c, w, l, st, tp.xn2, dx, coef, moe_layers, g, dxn);
    } else {
      ref::SwiGluBackward(tp.xn2.data(), N, H, L("ffn.gate"), L("ffn.up"), L("ffn.down"), c.intermediate_size,
                          dx.data(), dxn.data(), g[name("ffn.gate")].data(), g[name("ffn.up")].data(),
                          g[name("ffn.down")].data());
    }
    ref::RmsNormBackward(tp.x_mid.data(), N, H, L("ffn_norm"), c.rms_norm_eps, dxn.data(), dx.data(),
                         g[name("ffn_norm")].data());
    // Attention sub-block: x_mid = x_in + wo · Attn(RoPE(q), RoPE(k), v).
    std::fill(datt.begin(), datt.end(), 0.0);
    std::fill(dq.begin(), dq.end(), 0.0);
    std::fill(dk.begin(), dk.end(), 0.0);
    std::fill(dv.begin(), dv.end(), 0.0);
    ref::LinearBackward(tp.att.data(), N, qd, L("wo"), H, dx.data(), datt.data(), g[name("wo")].data(), nullptr);
    for (int64_t b = 0; b < B; ++b) {
      ref::CausalAttentionBackward(tp.q.data() + b * T * qd, tp.k.data() + b * T * kvd, tp.v.data() + b * T * kvd,
                                   tp.probs.data() + b * nh * T * T, T, nh, nkv, hd, datt.data() + b * T * qd,
                                   dq.data() + b * T * qd, dk.data() + b * T * kvd, dv.data() + b * T * kvd);
      ref::RopeBackward(dq.data() + b * T * qd, T, nh, hd, rt);
      ref::RopeBackward(dk.data() + b * T * kvd, T, nkv, hd, rt);
    }
    if (c.qk_norm == QkNorm::kPerHead) {
      std::vector<double> dq_raw(dq.size(), 0.0), dk_raw(dk.size(), 0.0);
      ref::RmsNormBackward(tp.q_raw.data(), N * nh, hd, L("q_norm"), c.rms_norm_eps, dq.data(),
                           dq_raw.data(), g[name("q_norm")].data());
      ref::RmsNormBackward(tp.k_raw.data(), N * nkv, hd, L("k_norm"), c.rms_norm_eps, dk.data(),
                           dk_raw.data(), g[name("k_norm")].data());
      dq.swap(dq_raw);
      dk.swap(dk_raw);
    }
    std::fill(dxn.begin(), dxn.end(), 0.0);
    ref::LinearBackward(tp.xn1.data(), N, H, L("wq"), qd, dq.data(), dxn.data(), g[name("wq")].data(),
                        c.qkv_bias ? g[name("bq")].data() : nullptr);
    ref::LinearBackward(tp.xn1.data(), N, H, L("wk"), kvd, dk.data(), dxn.data(), g[name("wk")].data(),
                        c.qkv_bias ? g[name("bk")].data() : nullptr);
    ref::LinearBackward(tp.xn1.data(), N, H, L("wv"), kvd, dv.data(), dxn.data(), g[name("wv")].data(),
                        c.qkv_bias ? g[name("bv")].data() : nullptr);
    ref::RmsNormBackward(tp.x_in.data(), N, H, L("attn_norm"), c.rms_norm_eps, dxn.data(), dx.data(),
                         g[name("attn_norm")].data());
  }
  std::vector<double>& dembed = g["embed"];
  for (int64_t t = 0; t < N; ++t)
    for (int64_t h = 0; h < H; ++h) dembed[Z(tokens[Z(t)] * H + h)] += dx[Z(t * H + h)];
  res.logits = std::move(st.logits);
  return res;
}

}  // namespace escale
