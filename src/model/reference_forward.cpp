#include "model/reference_forward.h"

#include <cmath>

#include "model/layout.h"
#include "model/rope.h"
#include "ops/cpu/reference_ops.h"
#include "ops/cpu/reference_routing.h"

namespace escale {
namespace {

namespace ref = ops::ref;
using Vec = std::vector<double>;

// Every canonical tensor of the config as fp64, shapes checked.
class WeightsF64 {
 public:
  static Result<WeightsF64> Load(const ModelConfig& c, const TensorMap& tensors) {
    WeightsF64 w;
    for (const TensorSpec& spec : CanonicalTensors(c)) {
      auto it = tensors.find(spec.name);
      if (it == tensors.end()) return NotFound("tensor '" + spec.name + "' is missing from the model");
      if (it->second.shape() != spec.shape)
        return FormatError("tensor '" + spec.name + "' has shape " + ShapeToString(it->second.shape()) +
                           ", the config needs " + ShapeToString(spec.shape));
      auto v = ToF64Vector(it->second);
      if (!v.ok()) return v.status().WithContext("tensor '" + spec.name + "'");
      w.map_.emplace(spec.name, std::move(v).value());
    }
    return w;
  }
  const double* operator()(const std::string& name) const {
    auto it = map_.find(name);
    ESCALE_CHECK(it != map_.end());
    return it->second.data();
  }
  const double* Layer(int64_t l, const std::string& suffix) const { return (*this)(LayerTensorName(l, suffix)); }

 private:
  std::map<std::string, Vec> map_;
};

ref::RoutingParams RoutingParamsOf(const MoeConfig& m) {
  ref::RoutingParams p;
  p.experts = m.num_experts;
  p.top_k = m.top_k;
  p.softmax_after_topk = m.router == RouterType::kMixtral;
  p.capacity_factor = m.capacity_factor;
  p.drop_by_position = m.drop_policy == DropPolicy::kPosition;
  return p;
}

// x [T,H] normed input -> y [T,H] MoE output (routed + shared).
void MoeForward(const ModelConfig& c, const WeightsF64& w, int64_t l, const Vec& x, int64_t T, Vec& y) {
  const int64_t H = c.hidden_size, E = c.moe.num_experts, k = c.moe.top_k, Fe = c.moe.expert_intermediate;
  Vec logits(static_cast<size_t>(T * E));
  ref::Linear(x.data(), T, H, w.Layer(l, "moe.router"), static_cast<const double*>(nullptr), E, logits.data());
  const ref::RoutingParams params = RoutingParamsOf(c.moe);
  const ref::Routing r = ref::RouteTokens(logits.data(), T, params);
  y.assign(static_cast<size_t>(T * H), 0.0);
  Vec out(static_cast<size_t>(H));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t i = 0; i < k; ++i) {
      const size_t a = static_cast<size_t>(t * k + i);
      if (!r.kept[a]) continue;
      const int64_t e = r.expert[a];
      ref::SwiGlu(x.data() + t * H, 1, H, w(ExpertTensorName(l, e, "gate")), w(ExpertTensorName(l, e, "up")),
                  w(ExpertTensorName(l, e, "down")), Fe, out.data());
      for (int64_t h = 0; h < H; ++h) y[static_cast<size_t>(t * H + h)] += r.weight[a] * out[static_cast<size_t>(h)];
    }
  if (c.moe.shared_intermediate > 0) {
    Vec shared(static_cast<size_t>(T * H)), gate(static_cast<size_t>(T));
    ref::SwiGlu(x.data(), T, H, w.Layer(l, "moe.shared.gate"), w.Layer(l, "moe.shared.up"),
                w.Layer(l, "moe.shared.down"), c.moe.shared_intermediate, shared.data());
    ref::Linear(x.data(), T, H, w.Layer(l, "moe.shared_router"), static_cast<const double*>(nullptr), 1, gate.data());
    for (int64_t t = 0; t < T; ++t) {
      const double s = 1.0 / (1.0 + std::exp(-gate[static_cast<size_t>(t)]));
      for (int64_t h = 0; h < H; ++h) y[static_cast<size_t>(t * H + h)] += s * shared[static_cast<size_t>(t * H + h)];
    }
  }
}

}  // namespace

Result<ReferenceForwardResult> ReferenceForward(const ModelConfig& c, const TensorMap& tensors,
                                                std::span<const int32_t> tokens,
                                                const ReferenceForwardOptions& opt) {
  ESCALE_RETURN_IF_ERROR(c.Validate());
  const int64_t T = static_cast<int64_t>(tokens.size());
  const int64_t V = c.vocab_size, H = c.hidden_size, nh = c.num_heads, nkv = c.num_kv_heads, hd = c.head_dim;
  for (int64_t t = 0; t < T; ++t)
    if (tokens[static_cast<size_t>(t)] < 0 || tokens[static_cast<size_t>(t)] >= V)
      return InvalidArgument("token " + std::to_string(tokens[static_cast<size_t>(t)]) + " at position " +
                             std::to_string(t) + " is outside the vocabulary [0, " + std::to_string(V) + ")");
  ESCALE_ASSIGN_OR_RETURN(const RopeFrequencies rope, ComputeRopeFrequencies(c, T));
  ESCALE_ASSIGN_OR_RETURN(const WeightsF64 w, WeightsF64::Load(c, tensors));
  const ref::RopeTables rt = ref::MakeRopeTables(rope.inv_freq, T, rope.attention_factor);

  ReferenceForwardResult res;
  res.tokens = T;
  res.vocab = V;
  auto sz = [](int64_t n) { return static_cast<size_t>(n); };
  Vec x(sz(T * H));
  for (int64_t t = 0; t < T; ++t)
    for (int64_t h = 0; h < H; ++h) x[sz(t * H + h)] = w("embed")[tokens[sz(t)] * H + h];

  const int64_t qd = c.q_dim(), kvd = c.kv_dim();
  Vec xn(sz(T * H)), q(sz(T * qd)), kk(sz(T * kvd)), vv(sz(T * kvd)), att(sz(T * qd)), y(sz(T * H));
  for (int64_t l = 0; l < c.num_layers; ++l) {
    ref::RmsNorm(x.data(), T, H, w.Layer(l, "attn_norm"), c.rms_norm_eps, xn.data());
    const double* bq = c.qkv_bias ? w.Layer(l, "bq") : nullptr;
    const double* bk = c.qkv_bias ? w.Layer(l, "bk") : nullptr;
    const double* bv = c.qkv_bias ? w.Layer(l, "bv") : nullptr;
    ref::Linear(xn.data(), T, H, w.Layer(l, "wq"), bq, qd, q.data());
    ref::Linear(xn.data(), T, H, w.Layer(l, "wk"), bk, kvd, kk.data());
    ref::Linear(xn.data(), T, H, w.Layer(l, "wv"), bv, kvd, vv.data());
    ref::ApplyRope(q.data(), T, nh, hd, rt);
    ref::ApplyRope(kk.data(), T, nkv, hd, rt);
    ref::CausalAttention(q.data(), kk.data(), vv.data(), T, nh, nkv, hd, att.data());
    ref::Linear(att.data(), T, qd, w.Layer(l, "wo"), static_cast<const double*>(nullptr), H, y.data());
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];

    ref::RmsNorm(x.data(), T, H, w.Layer(l, "ffn_norm"), c.rms_norm_eps, xn.data());
    if (c.IsMoeLayer(l)) {
      MoeForward(c, w, l, xn, T, y);
    } else {
      ref::SwiGlu(xn.data(), T, H, w.Layer(l, "ffn.gate"), w.Layer(l, "ffn.up"), w.Layer(l, "ffn.down"),
                  c.intermediate_size, y.data());
    }
    for (size_t i = 0; i < x.size(); ++i) x[i] += y[i];
    if (opt.collect_residuals) res.residuals.push_back(x);
  }
  ref::RmsNorm(x.data(), T, H, w("norm"), c.rms_norm_eps, xn.data());
  res.logits.resize(sz(T * V));
  const double* head = c.tie_word_embeddings ? w("embed") : w("lm_head");
  ref::Linear(xn.data(), T, H, head, static_cast<const double*>(nullptr), V, res.logits.data());
  return res;
}

}  // namespace escale
