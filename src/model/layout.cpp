#include "model/layout.h"

namespace escale {

std::string LayerTensorName(int64_t layer, const std::string& suffix) {
  return "layers." + std::to_string(layer) + "." + suffix;
}

std::string ExpertTensorName(int64_t layer, int64_t expert, const std::string& which) {
  return LayerTensorName(layer, "moe.experts." + std::to_string(expert) + "." + which);
}

bool IsNormRole(TensorRole r) {
  return r == TensorRole::kAttnNorm || r == TensorRole::kFfnNorm || r == TensorRole::kFinalNorm ||
         r == TensorRole::kQNorm || r == TensorRole::kKNorm;
}

std::vector<TensorSpec> CanonicalTensors(const ModelConfig& c) {
  const int64_t V = c.vocab_size, H = c.hidden_size, q = c.q_dim(), kv = c.kv_dim();
  std::vector<TensorSpec> out;
  out.push_back({"embed", TensorRole::kEmbed, -1, -1, {V, H}});
  for (int64_t l = 0; l < c.num_layers; ++l) {
    auto add = [&](const std::string& s, TensorRole r, Shape shape, int64_t e = -1) {
      out.push_back({LayerTensorName(l, s), r, l, e, std::move(shape)});
    };
    add("attn_norm", TensorRole::kAttnNorm, {H});
    add("wq", TensorRole::kWq, {q, H});
    add("wk", TensorRole::kWk, {kv, H});
    add("wv", TensorRole::kWv, {kv, H});
    if (c.qkv_bias) {
      add("bq", TensorRole::kBq, {q});
      add("bk", TensorRole::kBk, {kv});
      add("bv", TensorRole::kBv, {kv});
    }
    if (c.qk_norm == QkNorm::kPerHead) {
      add("q_norm", TensorRole::kQNorm, {c.head_dim});
      add("k_norm", TensorRole::kKNorm, {c.head_dim});
    }
    add("wo", TensorRole::kWo, {H, q});
    add("ffn_norm", TensorRole::kFfnNorm, {H});
    if (!c.IsMoeLayer(l)) {
      const int64_t F = c.intermediate_size;
      add("ffn.gate", TensorRole::kFfnGate, {F, H});
      add("ffn.up", TensorRole::kFfnUp, {F, H});
      add("ffn.down", TensorRole::kFfnDown, {H, F});
      continue;
    }
    const int64_t E = c.moe.num_experts, Fe = c.moe.expert_intermediate;
    add("moe.router", TensorRole::kRouter, {E, H});
    for (int64_t e = 0; e < E; ++e) {
      add("moe.experts." + std::to_string(e) + ".gate", TensorRole::kExpertGate, {Fe, H}, e);
      add("moe.experts." + std::to_string(e) + ".up", TensorRole::kExpertUp, {Fe, H}, e);
      add("moe.experts." + std::to_string(e) + ".down", TensorRole::kExpertDown, {H, Fe}, e);
    }
    if (c.moe.shared_intermediate > 0) {
      const int64_t Fs = c.moe.shared_intermediate;
      add("moe.shared.gate", TensorRole::kSharedGate, {Fs, H});
      add("moe.shared.up", TensorRole::kSharedUp, {Fs, H});
      add("moe.shared.down", TensorRole::kSharedDown, {H, Fs});
      add("moe.shared_router", TensorRole::kSharedRouter, {1, H});
    }
  }
  out.push_back({"norm", TensorRole::kFinalNorm, -1, -1, {H}});
  if (!c.tie_word_embeddings) out.push_back({"lm_head", TensorRole::kLmHead, -1, -1, {V, H}});
  return out;
}

ParameterCounts CountParameters(const ModelConfig& c) {
  ParameterCounts p;
  for (const TensorSpec& t : CanonicalTensors(c)) {
    const int64_t n = ShapeNumel(t.shape);
    p.total += n;
    const bool is_norm = IsNormRole(t.role);
    const bool is_routed = t.expert >= 0;
    if (is_routed) p.routed_experts += n;
    if (t.role == TensorRole::kEmbed) p.embedding += n;
    if (is_routed) continue;  // added below: a token passes through k of E routed experts
    p.active += n;
    // Biases are added, not multiplied; norms and the embedding lookup are not matmuls.
    const bool is_bias = t.role == TensorRole::kBq || t.role == TensorRole::kBk || t.role == TensorRole::kBv;
    if (!is_norm && !is_bias && t.role != TensorRole::kEmbed) p.active_matmul += n;
  }
  if (c.is_moe()) {
    // Every expert of a layer has the same size, so routed/E is exact.
    const int64_t active_routed = p.routed_experts / c.moe.num_experts * c.moe.top_k;
    p.active += active_routed;
    p.active_matmul += active_routed;
  }
  // A tied head is a matmul even though its weights are the embedding's.
  if (c.tie_word_embeddings) p.active_matmul += c.vocab_size * c.hidden_size;
  return p;
}

FlopsPerToken TrainingFlopsPerToken(const ModelConfig& c, int64_t seq_len) {
  FlopsPerToken f;
  f.matmul = 6.0 * static_cast<double>(CountParameters(c).active_matmul);
  f.attention = 12.0 * static_cast<double>(c.num_layers) * static_cast<double>(seq_len) *
                static_cast<double>(c.q_dim());
  f.attention_causal = f.attention / 2.0;
  return f;
}

}  // namespace escale
