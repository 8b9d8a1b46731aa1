// Every supported Hugging Face architecture, one row each (architecture.cpp). Reading and writing
// config.json and tensor names, scale-out's choice of MoE class, inspect and GGUF export consult
// this table; no other file lists architectures. docs/architectures.md: how to add a row.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace escale {

enum class Architecture { kLlama, kQwen2, kQwen3, kMistral, kMixtral, kQwen2Moe, kQwen3Moe };

// q/k/v projection biases: never (Llama), always (Qwen2), or as a config.json key says.
enum class QkvBias { kNever, kAlways, kConfigKey };

// RMSNorm of queries and keys before RoPE. kPerHead (Qwen3): one weight of head_dim shared by
// every head, each head normalised on its own.
enum class QkNorm { kNone, kPerHead };

// A row names only what differs from these defaults (architecture.cpp).
struct ArchitectureInfo {
  Architecture arch = Architecture::kLlama;
  std::string_view class_name = {};  // config.json "architectures": "LlamaForCausalLM"
  std::string_view model_type = {};  // config.json "model_type": "llama"
  std::string_view cli_name = {};    // --format / --arch spelling: "llama", "qwen2-moe"
  bool moe = false;

  // What transformers assumes when config.json leaves a key out.
  int64_t default_max_positions = 2048;
  double default_rope_theta = 10000.0;
  double default_rms_norm_eps = 1e-6;

  // Attention.
  QkvBias qkv_bias = QkvBias::kNever;
  std::string_view qkv_bias_key = {};  // kConfigKey: the key; else a key that must be false (or "")
  bool qkv_bias_default = false;       // kConfigKey: its value when absent
  QkNorm qk_norm = QkNorm::kNone;
  // Whether a sliding_window value is in force by itself (Mistral) or only with
  // use_sliding_window true (Qwen configs carry a window they do not use).
  bool sliding_window_needs_flag = false;

  // MoE layout (MoE rows). The router is <moe_module>.gate, expert e is
  // <moe_module>.experts.<e>.<expert_gate|expert_up|expert_down>.
  std::string_view moe_module = "mlp";  // "block_sparse_moe" | "mlp"
  std::string_view expert_gate = "gate_proj", expert_up = "up_proj", expert_down = "down_proj";
  std::string_view experts_key = "num_experts";  // "num_local_experts" | "num_experts"
  bool expert_size_is_intermediate = false;  // Mixtral: intermediate_size is the expert's FFN size
  int64_t default_top_k = 2;
  bool shared_expert = false;  // can hold a shared expert (and then needs its keys)
  bool sparse_layers =
      false;  // decoder_sparse_step and mlp_only_layers: dense layers between MoE ones
  bool router_choice = false;  // norm_topk_prob: both renormalised (mixtral) and st routing

  // The MoE class an upcycled dense model of this row is written as first (dense rows), and the
  // dense class of one MoE layer's attention and norms (MoE rows).
  Architecture moe_form = Architecture::kMixtral;
  Architecture dense_form = Architecture::kLlama;

  // GGUF: llama.cpp's architecture name ("" = not exported), whether Q/K rows are permuted
  // from rotate-half to interleaved RoPE pairs, and for MoE rows the routing llama.cpp's graph
  // hard-codes and whether it needs a shared expert (every layer MoE in all of them). A model
  // whose own row's graph cannot hold it is exported with the first row's graph that can.
  std::string_view gguf_arch = {};
  bool gguf_permute_qk = false;
  bool gguf_renormalises_top_k = true;
  bool gguf_shared_expert = false;
  bool gguf_optional_qkv_bias = false;  // the graph adds q/k/v biases when the file has them
  bool gguf_rope_freqs = false;  // the graph reads llama3 rope_scaling as a rope_freqs tensor

  // Loaders known to build plain RoPE for this class whatever config.json's rope_scaling says;
  // writing a model with rope_scaling under it prints this as a warning ("" = none known).
  std::string_view rope_scaling_ignored_by = {};
};

// Architectures users ask for that escale knows and refuses, with the reason.
struct RefusedArchitecture {
  std::string_view class_name, model_type, reason;
};

std::span<const ArchitectureInfo> Architectures();
const ArchitectureInfo& ArchInfo(Architecture a);
// By class name, model_type or CLI name; nullptr when unknown.
const ArchitectureInfo* FindArchitecture(std::string_view name);
const RefusedArchitecture* FindRefusedArchitecture(std::string_view name);
// The class names of the rows `pred` accepts, "A or B or C", for messages that say what to write.
std::string ArchitectureClassesWhere(bool (*pred)(const ArchitectureInfo&));
// "LlamaForCausalLM, Qwen2ForCausalLM, ..." (or the CLI names) for messages.
std::string_view ArchitectureClassList();
std::string_view ArchitectureCliList(bool moe_only);

std::string_view ArchitectureClassName(Architecture a);
std::string_view ArchitectureModelType(Architecture a);
bool IsMoeArchitecture(Architecture a);

}  // namespace escale
