#include "model/config.h"

#include <algorithm>

namespace escale {

std::string_view RouterTypeName(RouterType r) { return r == RouterType::kMixtral ? "mixtral" : "st"; }

bool ModelConfig::IsMoeLayer(int64_t layer) const {
  if (!is_moe()) return false;
  if (std::find(moe.dense_layers.begin(), moe.dense_layers.end(), layer) != moe.dense_layers.end())
    return false;
  return moe.every > 0 && (layer + 1) % moe.every == 0;
}

Status ModelConfig::Validate() const {
  auto positive = [](const char* name, int64_t v) -> Status {
    if (v <= 0) return InvalidArgument(std::string(name) + " must be positive, got " + std::to_string(v));
    return Status::Ok();
  };
  // Upper bounds far above any published model (Llama 3.1 405B: 126 layers, hidden 16384), so that
  // a typo such as num_hidden_layers 1e12 is refused here, naming the key, instead of running out
  // of memory while planning.
  auto at_most = [](const char* name, int64_t v, int64_t max) -> Status {
    if (v > max)
      return InvalidArgument(std::string(name) + " " + std::to_string(v) + " is more than " +
                             std::to_string(max) +
                             ", larger than any model escale can hold; check config.json");
    return Status::Ok();
  };
  ESCALE_RETURN_IF_ERROR(
      at_most("vocab_size", vocab_size, int64_t{1} << 31));  // token ids are int32
  ESCALE_RETURN_IF_ERROR(at_most("hidden_size", hidden_size, int64_t{1} << 20));
  ESCALE_RETURN_IF_ERROR(at_most("num_hidden_layers", num_layers, int64_t{1} << 16));
  ESCALE_RETURN_IF_ERROR(at_most("num_attention_heads", num_heads, int64_t{1} << 16));
  ESCALE_RETURN_IF_ERROR(at_most("num_key_value_heads", num_kv_heads, int64_t{1} << 16));
  ESCALE_RETURN_IF_ERROR(at_most("head_dim", head_dim, int64_t{1} << 16));
  ESCALE_RETURN_IF_ERROR(at_most("intermediate_size", intermediate_size, int64_t{1} << 24));
  ESCALE_RETURN_IF_ERROR(
      at_most("max_position_embeddings", max_position_embeddings, int64_t{1} << 31));
  if (is_moe()) {
    ESCALE_RETURN_IF_ERROR(at_most("num_experts", moe.num_experts, int64_t{1} << 16));
    ESCALE_RETURN_IF_ERROR(
        at_most("expert intermediate size", moe.expert_intermediate, int64_t{1} << 24));
    ESCALE_RETURN_IF_ERROR(
        at_most("shared_expert_intermediate_size", moe.shared_intermediate, int64_t{1} << 24));
  }
  {
    // Each size alone can be plausible while their product overflows int64 in the layout code:
    // bound the parameter count, computed in floating point.
    const long double H = hidden_size, L = num_layers, hd = head_dim;
    const long double attn = 2 * H * hd * (static_cast<long double>(num_heads) + num_kv_heads);
    const long double ffn =
        is_moe() ? 3 * H *
                       (static_cast<long double>(moe.num_experts) * moe.expert_intermediate +
                        moe.shared_intermediate + intermediate_size)
                 : 3 * H * intermediate_size;
    const long double total = 2 * H * vocab_size + L * (attn + ffn);
    if (total > 1e15L)
      return InvalidArgument("the config describes about " +
                             std::to_string(static_cast<double>(total)) +
                             " parameters, more than 10^15; check its sizes");
  }
  ESCALE_RETURN_IF_ERROR(positive("max_position_embeddings", max_position_embeddings));
  ESCALE_RETURN_IF_ERROR(positive("vocab_size", vocab_size));
  ESCALE_RETURN_IF_ERROR(positive("hidden_size", hidden_size));
  ESCALE_RETURN_IF_ERROR(positive("num_hidden_layers", num_layers));
  ESCALE_RETURN_IF_ERROR(positive("num_attention_heads", num_heads));
  ESCALE_RETURN_IF_ERROR(positive("num_key_value_heads", num_kv_heads));
  ESCALE_RETURN_IF_ERROR(positive("head_dim", head_dim));
  if (head_dim % 2 != 0) return InvalidArgument("head_dim must be even for RoPE, got " + std::to_string(head_dim));
  if (num_heads % num_kv_heads != 0)
    return InvalidArgument("num_attention_heads (" + std::to_string(num_heads) +
                           ") must be a multiple of num_key_value_heads (" + std::to_string(num_kv_heads) + ")");
  if (!(rms_norm_eps > 0)) return InvalidArgument("rms_norm_eps must be positive");
  if (!(rope_theta > 0)) return InvalidArgument("rope_theta must be positive");
  const bool needs_dense_ffn = !is_moe() || !moe.dense_layers.empty() || moe.every > 1;
  if (needs_dense_ffn) ESCALE_RETURN_IF_ERROR(positive("intermediate_size", intermediate_size));
  if (is_moe()) {
    if (moe.num_experts < 1) return InvalidArgument("num_experts must be at least 1");
    if (moe.top_k < 1 || moe.top_k > moe.num_experts)
      return InvalidArgument("num_experts_per_tok (" + std::to_string(moe.top_k) +
                             ") must be between 1 and the number of experts (" +
                             std::to_string(moe.num_experts) + ")");
    ESCALE_RETURN_IF_ERROR(positive("expert intermediate size", moe.expert_intermediate));
    if (moe.every < 1) return InvalidArgument("decoder_sparse_step must be at least 1");
    if (moe.shared_intermediate < 0) return InvalidArgument("shared_expert_intermediate_size must be >= 0");
    if (moe.capacity_factor < 0) return InvalidArgument("capacity factor must be >= 0 (0 = dropless)");
    for (int64_t l : moe.dense_layers)
      if (l < 0 || l >= num_layers)
        return InvalidArgument("mlp_only_layers entry " + std::to_string(l) + " is not a layer index");
  }
  return Status::Ok();
}

}  // namespace escale
