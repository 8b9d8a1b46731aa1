// The canonical tensor layout: one name and shape per parameter tensor, independent of any file
// format. io/ maps these names to and from Hugging Face names; surgery and the engine use them.
//
//   embed                       [V, H]
//   layers.{l}.attn_norm        [H]
//   layers.{l}.wq / wk / wv     [h*hd, H] / [g*hd, H] / [g*hd, H]
//   layers.{l}.bq / bk / bv     [h*hd] / [g*hd] / [g*hd]          (qkv_bias only)
//   layers.{l}.q_norm / k_norm  [hd] / [hd]                        (QkNorm::kPerHead only)
//   layers.{l}.wo               [H, h*hd]
//   layers.{l}.ffn_norm         [H]
//   layers.{l}.ffn.gate / up    [F, H]                             (dense layers)
//   layers.{l}.ffn.down         [H, F]
//   layers.{l}.moe.router       [E, H]                             (MoE layers)
//   layers.{l}.moe.experts.{e}.gate / up   [Fe, H]
//   layers.{l}.moe.experts.{e}.down        [H, Fe]
//   layers.{l}.moe.shared.gate / up        [Fs, H]                 (shared expert only)
//   layers.{l}.moe.shared.down             [H, Fs]
//   layers.{l}.moe.shared_router           [1, H]
//   norm                        [H]
//   lm_head                     [V, H]                             (absent when tied)
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"
#include "model/config.h"

namespace escale {

enum class TensorRole {
  kEmbed,
  kAttnNorm,
  kWq,
  kWk,
  kWv,
  kBq,
  kBk,
  kBv,
  kQNorm,
  kKNorm,
  kWo,
  kFfnNorm,
  kFfnGate,
  kFfnUp,
  kFfnDown,
  kRouter,
  kExpertGate,
  kExpertUp,
  kExpertDown,
  kSharedGate,
  kSharedUp,
  kSharedDown,
  kSharedRouter,
  kFinalNorm,
  kLmHead,
};

struct TensorSpec {
  std::string name;   // canonical name, see above
  TensorRole role;
  int64_t layer = -1;  // -1 for embed, norm, lm_head
  int64_t expert = -1; // routed expert index, else -1
  Shape shape;
};

// RMSNorm weights: attention, FFN, final, and the q/k norms.
bool IsNormRole(TensorRole r);

// Every parameter tensor of the model in a fixed order (embed, layer 0..L-1, norm, lm_head).
std::vector<TensorSpec> CanonicalTensors(const ModelConfig& c);
std::string LayerTensorName(int64_t layer, const std::string& suffix);
std::string ExpertTensorName(int64_t layer, int64_t expert, const std::string& which);

struct ParameterCounts {
  int64_t total = 0;             // every stored parameter (tied head counted once)
  int64_t embedding = 0;         // token embedding
  int64_t active = 0;            // per token: dense parts + k routed experts + router + shared
  int64_t active_matmul = 0;     // active minus embedding lookup and norms (the "N" in 6N)
  int64_t routed_experts = 0;    // all routed expert parameters
};
ParameterCounts CountParameters(const ModelConfig& c);

struct FlopsPerToken {
  double matmul = 0;          // 6 * active matmul parameters (forward + backward)
  double attention = 0;       // 12 * L * T * d_attn (PaLM convention, full T x T)
  double attention_causal = 0;// half of the above (only the causal triangle)
  double total() const { return matmul + attention; }
  double total_causal() const { return matmul + attention_causal; }
};
// Model FLOPs per trained token at sequence length T (docs/method.md §6.1).
FlopsPerToken TrainingFlopsPerToken(const ModelConfig& c, int64_t seq_len);

}  // namespace escale
