// Whole-model reference gradients against complex-step derivatives of the same templated forward
// and loss, for every element of every canonical tensor: dense GQA with QKV bias, tied head, and MoE
// (mixtral and st routing, capacity dropping, an empty expert, shared expert) with every loss term on.
#include <gtest/gtest.h>

#include <complex>
#include <cstring>
#include <random>

#include "model/layout.h"
#include "model/reference_model.h"
#include "model/reference_model_forward.h"
#include "model/rope.h"

namespace escale {
namespace {

using C = std::complex<double>;

ModelConfig Dense() {
  ModelConfig c;
  c.vocab_size = 11;
  c.hidden_size = 8;
  c.intermediate_size = 6;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 2;
  c.qkv_bias = true;
  c.rope_theta = 100.0;
  return c;
}

ModelConfig Moe(RouterType router, double cf) {
  ModelConfig c = Dense();
  c.arch = Architecture::kMixtral;
  c.moe.num_experts = 4;
  c.moe.top_k = 2;
  c.moe.expert_intermediate = 4;
  c.moe.router = router;
  c.moe.capacity_factor = cf;
  return c;
}

TensorMap RandomWeights(const ModelConfig& c, uint32_t seed, double router_scale = 1.0) {
  std::mt19937 rng(seed);
  TensorMap m;
  for (const TensorSpec& s : CanonicalTensors(c)) {
    std::vector<double> v(static_cast<size_t>(ShapeNumel(s.shape)));
    const bool is_norm = IsNormRole(s.role);
    const double scale = s.role == TensorRole::kRouter ? router_scale : 0.6;
    for (double& x : v) {
      const double u = double(rng()) / 4294967295.0 * 2.0 - 1.0;
      x = is_norm ? 1.0 + 0.3 * u : scale * u;
    }
    Tensor t = Tensor::Zeros(DType::kF64, s.shape);
    std::memcpy(t.mutable_bytes(), v.data(), v.size() * sizeof(double));
    m[s.name] = std::move(t);
  }
  return m;
}

struct Batch {
  std::vector<int32_t> tokens, targets;
  int64_t seq_len;
};

Batch MakeBatch(const ModelConfig& c, uint32_t seed, int64_t B, int64_t T) {
  std::mt19937 rng(seed);
  Batch b;
  b.seq_len = T;
  for (int64_t i = 0; i < B * T; ++i) {
    b.tokens.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(c.vocab_size)));
    b.targets.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(c.vocab_size)));
  }
  b.targets[1] = -1;  // an ignored position
  return b;
}

C ComplexLoss(const ModelConfig& c, const refmodel::WeightsT<C>& w, const Batch& b, const LossCoefficients& coef) {
  const auto rope = ComputeRopeFrequencies(c).value();
  const auto rt = ops::ref::MakeRopeTables(rope.inv_freq, b.seq_len);
  refmodel::ForwardState<C> st;
  refmodel::ModelForwardT(c, w, b.tokens, b.seq_len, rt, false, false, st);
  return refmodel::ComputeLossesT(c, st, b.targets, coef).total;
}

// Checks every gradient element; returns the number checked.
size_t CheckModelGradients(const ModelConfig& c, const TensorMap& m, const Batch& b, const LossCoefficients& coef) {
  auto res = ReferenceLossAndGradients(c, m, b.tokens, b.targets, b.seq_len, coef);
  EXPECT_TRUE(res.ok()) << res.status().message();
  if (!res.ok()) return 0;
  const auto w64 = refmodel::LoadWeightsF64(c, m).value();
  refmodel::WeightsT<C> w;
  for (const auto& [name, v] : w64) w[name] = std::vector<C>(v.begin(), v.end());
  const C base = ComplexLoss(c, w, b, coef);
  EXPECT_NEAR(base.real(), res->loss.total, 1e-13 * std::max(1.0, std::abs(res->loss.total)));
  const double h = 1e-30;
  size_t checked = 0;
  double worst = 0;
  for (const TensorSpec& spec : CanonicalTensors(c)) {
    const auto& g = res->grads.at(spec.name);
    EXPECT_EQ(g.size(), static_cast<size_t>(ShapeNumel(spec.shape))) << spec.name;
    std::vector<C>& p = w.at(spec.name);
    for (size_t j = 0; j < p.size(); ++j) {
      p[j] += C(0, h);
      const double d = ComplexLoss(c, w, b, coef).imag() / h;
      p[j] -= C(0, h);
      const double err = std::abs(g[j] - d) / (1e-4 + std::abs(d));
      worst = std::max(worst, err);
      EXPECT_LE(err, 1e-8) << spec.name << "[" << j << "]: analytic " << g[j] << " complex-step " << d;
      ++checked;
    }
  }
  EXPECT_EQ(res->grads.size(), CanonicalTensors(c).size());
  return checked;
}

TEST(ReferenceModel, DenseGqaBiasUntiedGradients) {
  const ModelConfig c = Dense();
  LossCoefficients coef;
  coef.output_z = 0.05;
  coef.output_max_z = 0.02;
  const size_t n = CheckModelGradients(c, RandomWeights(c, 1), MakeBatch(c, 2, 2, 5), coef);
  EXPECT_EQ(n, static_cast<size_t>(CountParameters(c).total));
}

// Qwen3: per-head RMSNorm of q and k before RoPE (head_dim 4 so the norm is not trivial).
TEST(ReferenceModel, Qwen3QkNormGradients) {
  ModelConfig c = Dense();
  c.arch = Architecture::kQwen3;
  c.qk_norm = QkNorm::kPerHead;
  c.qkv_bias = false;
  c.head_dim = 4;
  const size_t n = CheckModelGradients(c, RandomWeights(c, 5), MakeBatch(c, 6, 2, 4), {});
  EXPECT_EQ(n, static_cast<size_t>(CountParameters(c).total));
}

TEST(ReferenceModel, Qwen3MoeQkNormStRoutingGradients) {
  ModelConfig c = Moe(RouterType::kSt, 0.0);
  c.arch = Architecture::kQwen3Moe;
  c.qk_norm = QkNorm::kPerHead;
  c.qkv_bias = false;
  c.head_dim = 4;
  LossCoefficients coef;
  coef.aux = 0.01;
  coef.router_z = 0.001;
  const size_t n = CheckModelGradients(c, RandomWeights(c, 7), MakeBatch(c, 8, 2, 4), coef);
  EXPECT_EQ(n, static_cast<size_t>(CountParameters(c).total));
}

TEST(ReferenceModel, TiedHeadGradients) {
  ModelConfig c = Dense();
  c.tie_word_embeddings = true;
  c.qkv_bias = false;
  c.num_kv_heads = 1;
  const size_t n = CheckModelGradients(c, RandomWeights(c, 3), MakeBatch(c, 4, 1, 6), {});
  EXPECT_EQ(n, static_cast<size_t>(CountParameters(c).total));
}

// Picks the first seed whose routing has an empty expert in some MoE layer and dropped assignments,
// so the checked case provably exercises them.
struct MoeSetup {
  TensorMap weights;
  Batch batch;
};
MoeSetup FindMoeSetup(const ModelConfig& c, uint32_t first_seed) {
  LossCoefficients none;
  for (uint32_t seed = first_seed; seed < first_seed + 200; ++seed) {
    MoeSetup s{RandomWeights(c, seed, 2.0), MakeBatch(c, seed + 1, 2, 5)};
    auto r = ReferenceLossAndGradients(c, s.weights, s.batch.tokens, s.batch.targets, s.batch.seq_len, none);
    if (!r.ok()) continue;
    bool empty = false;
    for (const auto& load : r->expert_load)
      for (int64_t v : load) empty = empty || (v == 0 && !load.empty());
    const bool drops_ok = c.moe.capacity_factor > 0 ? r->dropped_assignments > 0 : r->dropped_assignments == 0;
    if (empty && drops_ok) return s;
  }
  ADD_FAILURE() << "no seed gave an empty expert with dropped tokens";
  return {};
}

TEST(ReferenceModel, MixtralMoeWithCapacityDropsAndAllLosses) {
  ModelConfig c = Moe(RouterType::kMixtral, 1.0);
  c.moe.dense_layers = {0};  // layer 0 dense, layer 1 MoE
  LossCoefficients coef;
  coef.aux = 0.1;
  coef.router_max_z = 0.05;
  coef.router_z = 0.03;
  coef.output_z = 0.01;
  coef.output_max_z = 0.01;
  const MoeSetup s = FindMoeSetup(c, 10);
  ASSERT_FALSE(s.weights.empty());
  const size_t n = CheckModelGradients(c, s.weights, s.batch, coef);
  EXPECT_EQ(n, static_cast<size_t>(CountParameters(c).total));
}

TEST(ReferenceModel, StMoeWithSharedExpertAndPositionDropping) {
  ModelConfig c = Moe(RouterType::kSt, 0.75);
  c.arch = Architecture::kQwen2Moe;
  c.moe.shared_intermediate = 3;
  c.moe.drop_policy = DropPolicy::kPosition;
  LossCoefficients coef;
  coef.aux = 0.2;
  coef.router_max_z = 0.01;
  coef.router_z = 0.02;
  const MoeSetup s = FindMoeSetup(c, 50);
  ASSERT_FALSE(s.weights.empty());
  CheckModelGradients(c, s.weights, s.batch, coef);
}

TEST(ReferenceModel, DroplessMixtralGradients) {
  ModelConfig c = Moe(RouterType::kMixtral, 0.0);
  c.num_layers = 1;
  LossCoefficients coef;
  coef.aux = 0.5;
  coef.router_max_z = 0.1;
  Batch b = MakeBatch(c, 90, 1, 7);
  CheckModelGradients(c, RandomWeights(c, 91), b, coef);
}

TEST(ReferenceModel, LossMatchesForwardLogitsAndTerms) {
  const ModelConfig c = Moe(RouterType::kMixtral, 0.0);
  const TensorMap m = RandomWeights(c, 20);
  const Batch b = MakeBatch(c, 21, 1, 6);
  LossCoefficients coef;
  coef.aux = 0.001;
  coef.router_max_z = 0.01;
  const auto r = ReferenceLossAndGradients(c, m, b.tokens, b.targets, b.seq_len, coef).value();
  const auto f = ReferenceForward(c, m, b.tokens).value();
  ASSERT_EQ(r.logits.size(), f.logits.size());
  for (size_t i = 0; i < f.logits.size(); ++i) EXPECT_DOUBLE_EQ(r.logits[i], f.logits[i]);
  // CE by hand from the forward logits.
  const int64_t V = c.vocab_size;
  double ce = 0;
  int n = 0;
  for (size_t t = 0; t < b.tokens.size(); ++t) {
    if (b.targets[t] < 0) continue;
    double mx = -1e300, s = 0;
    for (int64_t v = 0; v < V; ++v) mx = std::max(mx, f.logits[t * V + static_cast<size_t>(v)]);
    for (int64_t v = 0; v < V; ++v) s += std::exp(f.logits[t * V + static_cast<size_t>(v)] - mx);
    ce += std::log(s) + mx - f.logits[t * V + static_cast<size_t>(b.targets[t])];
    ++n;
  }
  EXPECT_NEAR(r.loss.ce, ce / n, 1e-13);
  EXPECT_NEAR(r.loss.total, r.loss.ce + 0.001 * r.loss.aux + 0.01 * r.loss.router_max_z, 1e-13);
  EXPECT_GT(r.loss.aux, 0.0);
  EXPECT_GT(r.loss.router_z, 0.0);
  for (const auto& load : r.expert_load) {
    int64_t sum = 0;
    for (int64_t v : load) sum += v;
    EXPECT_EQ(sum, static_cast<int64_t>(b.tokens.size()) * c.moe.top_k);
  }
}

TEST(ReferenceModel, BadBatchesAreErrors) {
  ModelConfig c = Moe(RouterType::kMixtral, 0.0);
  const TensorMap m = RandomWeights(c, 30);
  const std::vector<int32_t> tok = {1, 2, 3, 4}, tgt = {2, 3, 4, 5};
  EXPECT_EQ(ReferenceLossAndGradients(c, m, tok, std::vector<int32_t>{1, 2}, 2, {}).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(ReferenceLossAndGradients(c, m, tok, tgt, 3, {}).status().code(), ErrorCode::kInvalidArgument);
  EXPECT_EQ(ReferenceLossAndGradients(c, m, tok, std::vector<int32_t>{-1, -1, -1, -1}, 2, {}).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_EQ(ReferenceLossAndGradients(c, m, tok, std::vector<int32_t>{1, 2, 3, 11}, 2, {}).status().code(),
            ErrorCode::kInvalidArgument);
  EXPECT_TRUE(ReferenceLossAndGradients(c, m, tok, tgt, 2, {}).ok());
  ModelConfig k1 = c;
  k1.moe.top_k = 1;
  const auto r = ReferenceLossAndGradients(k1, RandomWeights(k1, 31), tok, tgt, 2, {});
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("no gradient"), std::string::npos);
}

}  // namespace
}  // namespace escale
