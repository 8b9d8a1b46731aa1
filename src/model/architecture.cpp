#include "model/architecture.h"

#include <string>

namespace escale {
namespace {

using A = Architecture;

// Defaults are transformers' config-class defaults; names are its module paths. The GGUF names
// are llama.cpp's (LLM_ARCH_*): its llama graph runs Llama, Mistral and Mixtral alike.
constexpr ArchitectureInfo kTable[] = {
    {.arch = A::kLlama,
     .class_name = "LlamaForCausalLM",
     .model_type = "llama",
     .cli_name = "llama",
     .qkv_bias_key = "attention_bias",
     .moe_form = A::kMixtral,
     .dense_form = A::kLlama,
     .gguf_arch = "llama",
     .gguf_permute_qk = true,
     .gguf_optional_qkv_bias = true,
     .gguf_rope_freqs = true},
    {.arch = A::kQwen2,
     .class_name = "Qwen2ForCausalLM",
     .model_type = "qwen2",
     .cli_name = "qwen2",
     .default_max_positions = 32768,
     .qkv_bias = QkvBias::kAlways,
     .sliding_window_needs_flag = true,
     .moe_form = A::kQwen2Moe,
     .dense_form = A::kQwen2,
     .gguf_arch = "qwen2"},
    {.arch = A::kQwen3,
     .class_name = "Qwen3ForCausalLM",
     .model_type = "qwen3",
     .cli_name = "qwen3",
     .default_max_positions = 32768,
     .qkv_bias_key = "attention_bias",
     .qk_norm = QkNorm::kPerHead,
     .sliding_window_needs_flag = true,
     .moe_form = A::kQwen3Moe,
     .dense_form = A::kQwen3,
     .gguf_arch = "qwen3"},
    {.arch = A::kMistral,
     .class_name = "MistralForCausalLM",
     .model_type = "mistral",
     .cli_name = "mistral",
     .default_max_positions = 32768,
     .moe_form = A::kMixtral,
     .dense_form = A::kMistral,
     .gguf_arch = "llama",
     .gguf_permute_qk = true,
     .gguf_optional_qkv_bias = true,
     .gguf_rope_freqs = true},
    {.arch = A::kMixtral,
     .class_name = "MixtralForCausalLM",
     .model_type = "mixtral",
     .cli_name = "mixtral",
     .moe = true,
     .default_max_positions = 131072,
     .default_rope_theta = 1e6,
     .default_rms_norm_eps = 1e-5,
     .moe_module = "block_sparse_moe",
     .expert_gate = "w1",
     .expert_up = "w3",
     .expert_down = "w2",
     .experts_key = "num_local_experts",
     .expert_size_is_intermediate = true,
     .moe_form = A::kMixtral,
     .dense_form = A::kLlama,
     .gguf_arch = "llama",
     .gguf_permute_qk = true,
     .gguf_optional_qkv_bias = true,
     .gguf_rope_freqs = true,
     .rope_scaling_ignored_by =
         "transformers releases whose MixtralRotaryEmbedding predates the shared RoPE "
         "initialisation (reported for 4.44 and 4.45)"},
    {.arch = A::kQwen2Moe,
     .class_name = "Qwen2MoeForCausalLM",
     .model_type = "qwen2_moe",
     .cli_name = "qwen2-moe",
     .moe = true,
     .default_max_positions = 32768,
     .qkv_bias = QkvBias::kConfigKey,
     .qkv_bias_key = "qkv_bias",
     .qkv_bias_default = true,
     .sliding_window_needs_flag = true,
     .default_top_k = 4,
     .shared_expert = true,
     .sparse_layers = true,
     .router_choice = true,
     .moe_form = A::kQwen2Moe,
     .dense_form = A::kQwen2,
     .gguf_arch = "qwen2moe",
     .gguf_renormalises_top_k = false,
     .gguf_shared_expert = true},
    {.arch = A::kQwen3Moe,
     .class_name = "Qwen3MoeForCausalLM",
     .model_type = "qwen3_moe",
     .cli_name = "qwen3-moe",
     .moe = true,
     .default_max_positions = 32768,
     .qkv_bias_key = "attention_bias",
     .qk_norm = QkNorm::kPerHead,
     .sliding_window_needs_flag = true,
     .default_top_k = 8,
     .sparse_layers = true,
     .router_choice = true,
     .moe_form = A::kQwen3Moe,
     .dense_form = A::kQwen3,
     .gguf_arch = "qwen3moe"},
};

constexpr RefusedArchitecture kRefused[] = {
    {.class_name = "OlmoeForCausalLM",
     .model_type = "olmoe",
     .reason = "OLMoE normalises q and k over the whole projection, which no dense model escale "
               "grows has, so upcycling cannot produce it exactly"},
};

std::string JoinNames(bool cli, bool moe_only) {
  std::string s;
  for (const ArchitectureInfo& r : kTable) {
    if (moe_only && !r.moe) continue;
    if (!s.empty()) s += ", ";
    s += cli ? r.cli_name : r.class_name;
  }
  return s;
}

}  // namespace

std::span<const ArchitectureInfo> Architectures() {
  return kTable;
}

const ArchitectureInfo& ArchInfo(Architecture a) {
  for (const ArchitectureInfo& r : kTable)
    if (r.arch == a) return r;
  return kTable[0];  // unreachable: every enumerator has a row (tests/model/architecture_test.cpp)
}

const ArchitectureInfo* FindArchitecture(std::string_view name) {
  for (const ArchitectureInfo& r : kTable)
    if (r.class_name == name || r.model_type == name || r.cli_name == name) return &r;
  return nullptr;
}

const RefusedArchitecture* FindRefusedArchitecture(std::string_view name) {
  for (const RefusedArchitecture& r : kRefused)
    if (r.class_name == name || r.model_type == name) return &r;
  return nullptr;
}

std::string ArchitectureClassesWhere(bool (*pred)(const ArchitectureInfo&)) {
  std::string s;
  for (const ArchitectureInfo& r : kTable) {
    if (!pred(r)) continue;
    if (!s.empty()) s += " or ";
    s += r.class_name;
  }
  return s;
}

std::string_view ArchitectureClassList() {
  static const std::string s = JoinNames(false, false);
  return s;
}

std::string_view ArchitectureCliList(bool moe_only) {
  static const std::string all = JoinNames(true, false), moe = JoinNames(true, true);
  return moe_only ? moe : all;
}

std::string_view ArchitectureClassName(Architecture a) {
  return ArchInfo(a).class_name;
}
std::string_view ArchitectureModelType(Architecture a) {
  return ArchInfo(a).model_type;
}
bool IsMoeArchitecture(Architecture a) {
  return ArchInfo(a).moe;
}

}  // namespace escale
