#include "model/presets.h"

namespace escale {
namespace {

ModelConfig Dense(Architecture arch, int64_t vocab, int64_t hidden, int64_t ffn, int64_t layers, int64_t heads,
                  int64_t kv_heads, bool qkv_bias) {
  ModelConfig c;
  c.arch = arch;
  c.vocab_size = vocab;
  c.hidden_size = hidden;
  c.intermediate_size = ffn;
  c.num_layers = layers;
  c.num_heads = heads;
  c.num_kv_heads = kv_heads;
  c.head_dim = hidden / heads;
  c.qkv_bias = qkv_bias;
  c.max_position_embeddings = 4096;
  c.rope_theta = 10000.0;
  c.rms_norm_eps = 1e-6;
  return c;
}

ModelConfig Moe(ModelConfig c, int64_t experts, int64_t k) {
  c.arch = c.arch == Architecture::kQwen2 ? Architecture::kQwen2Moe : Architecture::kMixtral;
  c.moe.num_experts = experts;
  c.moe.top_k = k;
  c.moe.expert_intermediate = c.intermediate_size;
  c.moe.router = RouterType::kMixtral;
  return c;
}

}  // namespace

const std::vector<ModelPreset>& ModelPresets() {
  static const std::vector<ModelPreset> presets = {
      {"bench-dense", "benchmark: vocab 8192, hidden 256, 4 layers, 8/4 heads, FFN 688, QKV bias",
       Dense(Architecture::kQwen2, 8192, 256, 688, 4, 8, 4, true)},
      {"bench-moe", "benchmark: bench-dense with 8 experts of FFN 688, top-2, mixtral routing",
       Moe(Dense(Architecture::kQwen2, 8192, 256, 688, 4, 8, 4, true), 8, 2)},
      {"bench-124m",
       "benchmark at GPT-2-small scale: vocab 32000, hidden 768, 12 layers, 12/4 heads, FFN 2048, "
       "no "
       "bias (125M parameters)",
       Dense(Architecture::kLlama, 32000, 768, 2048, 12, 12, 4, false)},
      {"bench-moe-124m", "benchmark: bench-124m with 8 experts of FFN 2048, top-2, mixtral routing",
       Moe(Dense(Architecture::kLlama, 32000, 768, 2048, 12, 12, 4, false), 8, 2)},
      {"demo-small", "the demo's preparation model: hidden 128, 4 layers, 4/2 heads, FFN 344",
       Dense(Architecture::kLlama, 8192, 128, 344, 4, 4, 2, false)},
  };
  return presets;
}

Result<ModelConfig> FindModelPreset(const std::string& name) {
  std::string names;
  for (const auto& p : ModelPresets()) {
    if (p.name == name) return p.config;
    names += (names.empty() ? "" : ", ") + p.name;
  }
  return InvalidArgument("unknown preset '" + name + "'; choose one of " + names);
}

}  // namespace escale
