// The canonical model configuration every importer and exporter maps to (docs/method.md §1).
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "core/dtype.h"
#include "core/status.h"
#include "model/architecture.h"

namespace escale {

// mixtral: softmax over the k selected logits (renormalised). st: softmax over all E, then top-k,
// no renormalisation (Qwen2-MoE with norm_topk_prob=false).
enum class RouterType { kMixtral, kSt };
enum class DropPolicy { kProbability, kPosition };
std::string_view RouterTypeName(RouterType r);

struct MoeConfig {
  int64_t num_experts = 0;          // 0: dense model
  int64_t top_k = 0;
  int64_t expert_intermediate = 0;  // FFN size of one routed expert
  int64_t shared_intermediate = 0;  // 0: no shared expert
  int64_t every = 1;                // layer i is MoE iff (i+1) % every == 0 and i not in dense_layers
  std::vector<int64_t> dense_layers;
  RouterType router = RouterType::kMixtral;
  double capacity_factor = 0.0;  // 0: dropless
  DropPolicy drop_policy = DropPolicy::kProbability;
  double aux_loss_coef = 0.001;  // router_aux_loss_coef in HF configs
};

struct ModelConfig {
  Architecture arch = Architecture::kLlama;  // the Hugging Face class (model/architecture.h)
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;
  int64_t intermediate_size = 0;  // dense FFN size (dense layers of an MoE model too)
  int64_t num_layers = 0;
  int64_t num_heads = 0;
  int64_t num_kv_heads = 0;
  int64_t head_dim = 0;
  int64_t max_position_embeddings = 2048;
  double rope_theta = 10000.0;
  double rms_norm_eps = 1e-6;
  bool qkv_bias = false;
  QkNorm qk_norm = QkNorm::kNone;  // from the architecture's row: Qwen3 normalises q and k per head
  bool tie_word_embeddings = false;
  nlohmann::json rope_scaling;  // null: plain RoPE
  DType dtype = DType::kF32;    // torch_dtype / dtype of the checkpoint
  MoeConfig moe;
  // Every other config.json key (bos/eos ids, sliding window, ...), written back unchanged.
  nlohmann::json extra = nlohmann::json::object();

  bool is_moe() const { return moe.num_experts > 0; }
  // Mixtral routing renormalises the top-k probabilities: with k = 1 every weight is 1, so the
  // router gets no gradient (a model that runs, but cannot be trained; st routing or k >= 2 can).
  bool router_untrainable() const {
    return is_moe() && moe.router == RouterType::kMixtral && moe.top_k == 1;
  }
  bool IsMoeLayer(int64_t layer) const;
  int64_t q_dim() const { return num_heads * head_dim; }
  int64_t kv_dim() const { return num_kv_heads * head_dim; }
  // Every structural rule (divisibility, positivity, k <= E, ...); the message names the field.
  Status Validate() const;
};

}  // namespace escale
