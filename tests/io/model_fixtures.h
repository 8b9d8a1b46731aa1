// Small random models and hand-built safetensors files for the io and cli tests.
#pragma once

#include <cstdint>
#include <cstring>
#include <filesystem>
#include <stdexcept>
#include <utility>
#include <vector>
#include <map>
#include <random>
#include <string>

#include "core/tensor.h"
#include "io/hf_model.h"
#include "model/layout.h"
#include "support/test_support.h"

namespace escale::testing {

// Tiny configs for each supported architecture, with the features the round trips must keep.
inline ModelConfig TinyLlama(bool tied = false) {
  ModelConfig c;
  c.arch = Architecture::kLlama;
  c.vocab_size = 11;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;  // GQA
  c.head_dim = 2;
  c.max_position_embeddings = 64;
  c.rope_theta = 500000.0;
  c.rms_norm_eps = 1e-5;
  c.tie_word_embeddings = tied;
  c.extra = {{"bos_token_id", 1}, {"eos_token_id", {2, 3}}, {"custom_key", {{"nested", {1, 2}}}}};
  return c;
}

inline ModelConfig TinyQwen2() {
  ModelConfig c = TinyLlama(/*tied=*/true);
  c.arch = Architecture::kQwen2;
  c.qkv_bias = true;
  c.num_kv_heads = 1;
  c.rope_scaling = {{"rope_type", "linear"}, {"factor", 2.0}};
  return c;
}

inline ModelConfig TinyMistral() {
  ModelConfig c = TinyLlama();
  c.arch = Architecture::kMistral;
  c.extra["sliding_window"] = 4096;
  return c;
}

inline ModelConfig TinyMixtral() {
  ModelConfig c = TinyLlama();
  c.arch = Architecture::kMixtral;
  c.moe.num_experts = 4;
  c.moe.top_k = 2;
  c.moe.expert_intermediate = 6;
  c.intermediate_size = 6;
  c.moe.router = RouterType::kSt;
  c.moe.capacity_factor = 1.5;
  c.moe.drop_policy = DropPolicy::kPosition;
  c.moe.aux_loss_coef = 0.02;
  return c;
}

// Qwen2-MoE with a shared expert and dense layers from both decoder_sparse_step and
// mlp_only_layers: layers 1 and 5 are sparse, 0, 2, 3 (mlp_only), 4 dense.
inline ModelConfig TinyQwen2Moe() {
  ModelConfig c = TinyLlama();
  c.arch = Architecture::kQwen2Moe;
  c.qkv_bias = true;
  c.num_layers = 6;
  c.moe.num_experts = 4;
  c.moe.top_k = 2;
  c.moe.expert_intermediate = 4;
  c.moe.shared_intermediate = 6;
  c.moe.every = 2;
  c.moe.dense_layers = {3};
  c.moe.router = RouterType::kMixtral;  // norm_topk_prob true
  return c;
}

// Qwen3: per-head q/k norm, explicit head_dim (q_dim 16 != hidden 8), no biases, tied head,
// and the layer_types list newer configs carry.
inline ModelConfig TinyQwen3() {
  ModelConfig c = TinyLlama(/*tied=*/true);
  c.arch = Architecture::kQwen3;
  c.qk_norm = QkNorm::kPerHead;
  c.head_dim = 4;
  c.extra["use_sliding_window"] = false;
  c.extra["layer_types"] = {"full_attention", "full_attention"};
  return c;
}

// Qwen3-MoE: renormalised top-k (norm_topk_prob true), a dense layer from mlp_only_layers.
inline ModelConfig TinyQwen3Moe() {
  ModelConfig c = TinyQwen3();
  c.arch = Architecture::kQwen3Moe;
  c.tie_word_embeddings = false;
  c.num_layers = 3;
  c.extra.erase("layer_types");
  c.moe.num_experts = 4;
  c.moe.top_k = 2;
  c.moe.expert_intermediate = 4;
  c.moe.dense_layers = {0};
  c.moe.router = RouterType::kMixtral;
  return c;
}

// One config per row of the architecture table (tests/model/architecture_test.cpp checks that
// every row is here), plus a tied Llama.
inline std::vector<ModelConfig> AllTiny() {
  return {TinyLlama(),   TinyLlama(true), TinyQwen2(),    TinyQwen3(),
          TinyMistral(), TinyMixtral(),   TinyQwen2Moe(), TinyQwen3Moe()};
}

inline Tensor RandomTensor(const Shape& shape, std::mt19937& rng) {
  Tensor t = Tensor::Zeros(DType::kF32, shape);
  std::normal_distribution<float> d(0.0f, 1.0f);
  float* p = t.mutable_data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = d(rng);
  return t;
}

inline std::map<std::string, Tensor> RandomWeights(const ModelConfig& c, uint32_t seed = 1) {
  std::mt19937 rng(seed);
  std::map<std::string, Tensor> out;
  for (const TensorSpec& s : CanonicalTensors(c)) out[s.name] = RandomTensor(s.shape, rng);
  return out;
}

inline bool SameBytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && a.nbytes() == b.nbytes() &&
         (a.nbytes() == 0 || std::memcmp(a.bytes(), b.bytes(), a.nbytes()) == 0);
}

// A safetensors file from a literal header and data; `n` overrides the length prefix.
inline std::string RawSafetensors(const std::string& header, const std::string& data,
                                  int64_t n = -1) {
  const uint64_t len = n < 0 ? header.size() : static_cast<uint64_t>(n);
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((len >> (8 * i)) & 0xff);
  return out + header + data;
}

inline WriteOptions QuietOptions() {
  WriteOptions o;
  o.progress = false;
  return o;
}

// Writes `c` with random weights into `dir`; returns the weights.
inline std::map<std::string, Tensor> WriteRandomModel(const std::string& dir, const ModelConfig& c,
                                                      WriteOptions opt = QuietOptions(),
                                                      uint32_t seed = 1) {
  auto w = RandomWeights(c, seed);
  const Status st = WriteHfModel(dir, c, w, opt);
  if (!st.ok()) throw std::runtime_error("fixture: " + st.message());
  return w;
}

}  // namespace escale::testing

namespace escale::testing {

// A model directory written tensor by tensor under Hugging Face names of the caller's choosing
// (to build fused, damaged or mismatched checkpoints), with `config` as config.json.
inline void WriteRawCheckpoint(const std::string& dir, const nlohmann::json& config,
                               const std::vector<std::pair<std::string, Tensor>>& tensors,
                               uint64_t max_shard_bytes = 5'000'000'000) {
  std::filesystem::create_directories(dir);
  std::vector<SafetensorsEntry> decl;
  for (const auto& [name, t] : tensors) decl.push_back({name, t.dtype(), t.shape(), 0, 0});
  SafetensorsWriter::Options o;
  o.max_shard_bytes = max_shard_bytes;
  auto w = SafetensorsWriter::Create(dir, decl, o);
  if (!w.ok()) throw std::runtime_error("fixture: " + w.status().message());
  for (const auto& [name, t] : tensors)
    if (!w->Write(name, t.bytes(), t.nbytes()).ok()) throw std::runtime_error("fixture: write " + name);
  if (!w->Finish().ok()) throw std::runtime_error("fixture: finish");
  WriteFile(dir + "/config.json", config.dump(2));
}

// The weights of `c` under their Hugging Face names, in canonical order.
inline std::vector<std::pair<std::string, Tensor>> HfNamed(const ModelConfig& c,
                                                           const std::map<std::string, Tensor>& w) {
  std::vector<std::pair<std::string, Tensor>> out;
  for (const TensorSpec& s : CanonicalTensors(c)) out.emplace_back(HfTensorName(c, s), w.at(s.name));
  return out;
}

inline nlohmann::json ConfigJson(const ModelConfig& c) {
  auto j = HfConfigToJson(c);
  if (!j.ok()) throw std::runtime_error("fixture: " + j.status().message());
  return *j;
}

}  // namespace escale::testing
