// Tiny random models for the surgery tests: fp64 weights from escale's own portable RNG.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "model/layout.h"
#include "model/reference_forward.h"
#include "core/rng.h"

namespace escale::surgery::testing {

struct Variant {
  bool gqa;
  bool bias;
  bool tied;
  bool qk_norm = false;  // Qwen3 (needs bias false)
};

inline std::string VariantName(const Variant& v) {
  return std::string(v.gqa ? "gqa" : "mha") + (v.bias ? "_bias" : "") + (v.tied ? "_tied" : "") +
         (v.qk_norm ? "_qknorm" : "");
}

// hidden 16 = 4 heads x head_dim 4; 2 KV heads with gqa; Qwen2 when it has q/k/v biases, Qwen3
// with q/k norm.
inline ModelConfig TinyConfig(const Variant& v, int64_t layers = 3) {
  ModelConfig c;
  c.arch = v.bias ? Architecture::kQwen2 : Architecture::kLlama;
  c.vocab_size = 29;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = layers;
  c.num_heads = 4;
  c.num_kv_heads = v.gqa ? 2 : 4;
  c.head_dim = 4;
  c.rms_norm_eps = 1e-6;
  c.qkv_bias = v.bias;
  c.tie_word_embeddings = v.tied;
  c.dtype = DType::kF64;
  if (v.qk_norm) {
    c.arch = Architecture::kQwen3;
    c.qk_norm = QkNorm::kPerHead;
  }
  return c;
}

inline Tensor F64Tensor(const std::vector<double>& v, const Shape& shape) {
  Tensor t = Tensor::Zeros(DType::kF64, shape);
  std::memcpy(t.mutable_bytes(), v.data(), v.size() * sizeof(double));
  return t;
}

inline std::vector<double> Values(const Tensor& t) { return ToF64Vector(t).value(); }

// Matrices ~ N(0, 0.35^2), norm gains 1 + N(0, 0.1^2): large enough that every layer matters.
inline TensorMap RandomModel(const ModelConfig& c, uint64_t seed, DType dtype = DType::kF64) {
  Rng rng = Rng::Stream(seed, "test-model");
  TensorMap m;
  for (const TensorSpec& s : CanonicalTensors(c)) {
    std::vector<double> v(static_cast<size_t>(ShapeNumel(s.shape)));
    const bool norm = IsNormRole(s.role);
    for (double& x : v) x = norm ? 1.0 + 0.1 * rng.NextNormal() : 0.35 * rng.NextNormal();
    Tensor t = F64Tensor(v, s.shape);
    m.emplace(s.name, dtype == DType::kF64 ? t : ToDType(t, dtype).value());
  }
  return m;
}

inline const std::vector<int32_t>& ProbeTokens() {
  static const std::vector<int32_t> t = {1, 5, 3, 7, 2, 9, 11, 4, 28, 0, 13, 21};
  return t;
}

inline ReferenceForwardResult Forward(const ModelConfig& c, const TensorMap& m, bool residuals = false,
                                      const std::vector<int32_t>& tokens = ProbeTokens()) {
  ReferenceForwardOptions o;
  o.collect_residuals = residuals;
  auto r = ReferenceForward(c, m, tokens, o);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? std::move(r).value() : ReferenceForwardResult{};
}

inline double MaxAbsDiff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double m = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) m = std::max(m, std::abs(a[i] - b[i]));
  return m;
}

inline double MaxAbs(const std::vector<double>& a) {
  double m = 0;
  for (double x : a) m = std::max(m, std::abs(x));
  return m;
}

}  // namespace escale::surgery::testing
