// Scale-up on random tiny models in fp64: what is exact is exact to ~1e-12, and what is not differs
// the way the maths says it must.
#include "surgery/scale_up.h"

#include <gtest/gtest.h>

#include <cmath>

#include "model/reference_model.h"
#include "surgery_fixtures.h"

namespace escale::surgery {
namespace {

using testing::Forward;
using testing::MaxAbs;
using testing::MaxAbsDiff;
using testing::ProbeTokens;
using testing::RandomModel;
using testing::TinyConfig;
using testing::Values;
using testing::Variant;

struct Grown {
  ScaleUpPlan plan;
  TensorMap tensors;
};

Grown Grow(const ModelConfig& c, const TensorMap& m, const ScaleUpOptions& o) {
  auto plan = PlanScaleUp(c, o);
  EXPECT_TRUE(plan.ok()) << plan.status().message();
  auto t = ScaleUpInMemory(*plan, SourceFromMap(m), DType::kF64);
  EXPECT_TRUE(t.ok()) << t.status().message();
  return {std::move(plan).value(), std::move(t).value()};
}

double LogitDiff(const ModelConfig& a, const TensorMap& ta, const Grown& g) {
  return MaxAbsDiff(Forward(a, ta).logits, Forward(g.plan.target, g.tensors).logits);
}

class ScaleUpVariants : public ::testing::TestWithParam<Variant> {};

TEST_P(ScaleUpVariants, FpiIntegerWidthFactorsAreExact) {
  const ModelConfig c = TinyConfig(GetParam());
  const TensorMap m = RandomModel(c, 1);
  ScaleUpOptions o;
  o.hidden = 32;        // x2, heads 4 -> 8 with head_dim 4 kept
  o.intermediate = 72;  // x3
  const Grown g = Grow(c, m, o);
  EXPECT_TRUE(g.plan.exact());
  EXPECT_EQ(g.plan.target.num_heads, 8);
  EXPECT_EQ(g.plan.target.num_kv_heads, c.num_kv_heads);
  EXPECT_FALSE(g.plan.target.tie_word_embeddings);  // width growth unties
  const double scale = MaxAbs(Forward(c, m).logits);
  ASSERT_GT(scale, 0.5);  // the model is not trivially small
  EXPECT_LT(LogitDiff(c, m, g), 1e-12 * scale);
}

// dLoss/dW of the FFN gate rows of unit j and of its FPI copy j + f1, in layer 0.
std::pair<std::vector<double>, std::vector<double>> CopyGateGrads(const Grown& g, int64_t j,
                                                                  int64_t f1) {
  const std::vector<int32_t>& tokens = ProbeTokens();
  std::vector<int32_t> targets(tokens.begin() + 1, tokens.end());
  targets.push_back(-1);
  auto r = ReferenceLossAndGradients(g.plan.target, g.tensors, tokens, targets,
                                     static_cast<int64_t>(tokens.size()), LossCoefficients{});
  EXPECT_TRUE(r.ok()) << r.status().message();
  const std::vector<double>& gate = r->grads.at("layers.0.ffn.gate");
  const int64_t H = g.plan.target.hidden_size;
  auto row = [&](int64_t i) {
    return std::vector<double>(gate.begin() + i * H, gate.begin() + (i + 1) * H);
  };
  return {row(j), row(j + f1)};
}

TEST_P(ScaleUpVariants, FpiSymmetryNoiseKeepsTheFunctionAndSeparatesTheCopies) {
  const ModelConfig c = TinyConfig(GetParam());
  const TensorMap m = RandomModel(c, 11);
  ScaleUpOptions o;
  o.hidden = 32;  // x2
  o.intermediate = 2 * c.intermediate_size;
  const Grown plain = Grow(c, m, o);
  o.symmetry_noise = 0.1;
  o.seed = 4;
  const Grown noisy = Grow(c, m, o);
  EXPECT_TRUE(noisy.plan.exact());
  const double scale = MaxAbs(Forward(c, m).logits);
  EXPECT_LT(LogitDiff(c, m, noisy), 1e-12 * scale);
  // The split (input-expanded) weights moved, by about 10%; tensors without a split input, such
  // as the norms, are as in plain FPI.
  const auto down_p = Values(plain.tensors.at("layers.0.ffn.down"));
  const auto down_n = Values(noisy.tensors.at("layers.0.ffn.down"));
  EXPECT_GT(MaxAbsDiff(down_p, down_n), 1e-3);
  EXPECT_LT(MaxAbsDiff(down_p, down_n), 0.6 * MaxAbs(down_p));
  EXPECT_EQ(Values(plain.tensors.at("layers.0.attn_norm")),
            Values(noisy.tensors.at("layers.0.attn_norm")));
  // Without noise an FPI copy gets exactly its original's gradient (it can never diverge); with
  // noise the gradients differ, so training separates them.
  const int64_t f1 = c.intermediate_size;
  const auto [a, b] = CopyGateGrads(plain, 1, f1);
  EXPECT_LT(MaxAbsDiff(a, b), 1e-12 * MaxAbs(a));
  ASSERT_GT(MaxAbs(a), 1e-6);
  const auto [na, nb] = CopyGateGrads(noisy, 1, f1);
  EXPECT_GT(MaxAbsDiff(na, nb), 1e-3 * MaxAbs(na));
  // Seeded: the same seed gives the same tensors, another seed others.
  EXPECT_EQ(Values(Grow(c, m, o).tensors.at("layers.0.ffn.down")), down_n);
  o.seed = 5;
  EXPECT_NE(Values(Grow(c, m, o).tensors.at("layers.0.ffn.down")), down_n);
}

TEST_P(ScaleUpVariants, FpiWithMoreKvGroupsAndZeroDepthIsExact) {
  const ModelConfig c = TinyConfig(GetParam());
  const TensorMap m = RandomModel(c, 2);
  ScaleUpOptions o;
  o.hidden = 32;
  o.kv_heads = c.num_kv_heads * 2;
  o.layers = 7;  // 3 -> 7: uneven repeats
  o.depth = DepthMethod::kZero;
  const Grown g = Grow(c, m, o);
  EXPECT_TRUE(g.plan.exact());
  EXPECT_LT(LogitDiff(c, m, g), 1e-11);
}

TEST_P(ScaleUpVariants, NonIntegerFfnFactorIsExact) {
  // FFN units never pass through a norm, so any copy counts keep the function.
  const ModelConfig c = TinyConfig(GetParam());
  const TensorMap m = RandomModel(c, 3);
  ScaleUpOptions o;
  o.intermediate = 37;
  o.map = MapKind::kRandom;
  o.seed = 5;
  const Grown g = Grow(c, m, o);
  EXPECT_TRUE(g.plan.exact());
  EXPECT_LT(LogitDiff(c, m, g), 1e-12);
}

TEST_P(ScaleUpVariants, NonIntegerHiddenFactorBreaksOnlyThroughRmsNorm) {
  const ModelConfig c = TinyConfig(GetParam());
  const TensorMap m = RandomModel(c, 4);
  ScaleUpOptions o;
  if (GetParam().gqa) {
    o.hidden = 24;  // heads 4 -> 6: 3 per KV group
    o.intermediate = 36;
  } else {
    o.hidden = 32;  // 4 KV heads cannot take 6 query heads: an uneven random map at x2 instead
    o.map = MapKind::kRandom;
    o.seed = 3;
  }
  const Grown g = Grow(c, m, o);
  ASSERT_FALSE(g.plan.hidden->uniform_counts());
  ASSERT_FALSE(g.plan.exact());
  EXPECT_NE(g.plan.inexact.front().find("RMSNorm"), std::string::npos);
  EXPECT_GT(LogitDiff(c, m, g), 1e-6);
}

INSTANTIATE_TEST_SUITE_P(All, ScaleUpVariants,
                         ::testing::Values(Variant{true, false, false}, Variant{true, true, false},
                                           Variant{false, false, true}, Variant{true, true, true},
                                           Variant{true, false, true, true}),
                         [](const auto& p) { return testing::VariantName(p.param); });

TEST(ScaleUp, RmsNormOfAnUnevenCopyIsTheCountWeightedMeanSquare) {
  // The only inexact step of non-integer FPI: for x' = x[g(i)], mean(x'^2) = sum_j C(j) x_j^2 / d2,
  // which equals mean(x^2) exactly when every C(j) is the same.
  const DimMap g = MakeWidthMap(5, 8, MapKind::kCircular, 0, "hidden");
  const std::vector<double> x = {0.3, -1.2, 2.0, 0.7, -0.1};
  double ms_grown = 0, ms_weighted = 0, ms = 0;
  for (int64_t i = 0; i < 8; ++i)
    ms_grown += x[static_cast<size_t>(g.src[static_cast<size_t>(i)])] *
                x[static_cast<size_t>(g.src[static_cast<size_t>(i)])];
  for (size_t j = 0; j < 5; ++j) {
    ms_weighted += static_cast<double>(g.count[j]) * x[j] * x[j];
    ms += x[j] * x[j];
  }
  EXPECT_NEAR(ms_grown / 8, ms_weighted / 8, 1e-15);
  EXPECT_GT(std::abs(ms_grown / 8 - ms / 5), 0.05);
}

TEST(ScaleUp, KeepTiedMultipliesEveryLogitByTheCopyCount) {
  const ModelConfig c = TinyConfig({true, false, true});
  const TensorMap m = RandomModel(c, 5);
  ScaleUpOptions o;
  o.hidden = 48;  // x3
  o.keep_tied = true;
  const Grown g = Grow(c, m, o);
  EXPECT_TRUE(g.plan.target.tie_word_embeddings);
  ASSERT_FALSE(g.plan.exact());
  const auto a = Forward(c, m).logits, b = Forward(g.plan.target, g.tensors).logits;
  std::vector<double> a3(a.size());
  for (size_t i = 0; i < a.size(); ++i) a3[i] = 3 * a[i];
  EXPECT_LT(MaxAbsDiff(a3, b), 1e-11);
}

TEST(ScaleUp, TiedSourceWithoutHiddenGrowthStaysTied) {
  const ModelConfig c = TinyConfig({true, false, true});
  const TensorMap m = RandomModel(c, 6);
  ScaleUpOptions o;
  o.intermediate = 48;
  const Grown g = Grow(c, m, o);
  EXPECT_TRUE(g.plan.target.tie_word_embeddings);
  EXPECT_TRUE(g.plan.exact());
  EXPECT_LT(LogitDiff(c, m, g), 1e-12);
}

TEST(ScaleUp, NonStandardHeadGrowthWithUnevenCountsIsExact) {
  // q_dim != hidden (2 heads of 4 in a 16-wide model): heads may grow 2 -> 3 alone; copies of a
  // head produce identical outputs and o_proj divides by the count, so any factor is exact.
  ModelConfig c = TinyConfig({false, true, false});
  c.num_heads = 2;
  c.num_kv_heads = 1;
  const TensorMap m = RandomModel(c, 7);
  ScaleUpOptions o;
  o.heads = 3;
  const Grown g = Grow(c, m, o);
  EXPECT_TRUE(g.plan.exact());
  EXPECT_EQ(g.plan.q_heads->count, (std::vector<int64_t>{2, 1}));
  EXPECT_LT(LogitDiff(c, m, g), 1e-12);
}

TEST(ScaleUp, InterpolationRepeatsEachSourceLayerInPlaceAndStackingCycles) {
  const ModelConfig c = TinyConfig({true, true, false});
  const TensorMap m = RandomModel(c, 8);
  for (DepthMethod d : {DepthMethod::kInterpolate, DepthMethod::kStack}) {
    ScaleUpOptions o;
    o.layers = 6;
    o.depth = d;
    const Grown g = Grow(c, m, o);
    ASSERT_FALSE(g.plan.exact());
    for (int64_t l = 0; l < 6; ++l) {
      const int64_t s = d == DepthMethod::kInterpolate ? l / 2 : l % 3;
      for (const char* t : {"wq", "bk", "wo", "ffn.down", "attn_norm"})
        EXPECT_EQ(Values(g.tensors.at(LayerTensorName(l, t))), Values(m.at(LayerTensorName(s, t))))
            << l << t;
    }
    EXPECT_GT(LogitDiff(c, m, g), 1e-3);
  }
}

TEST(ScaleUp, ZeroDepthDiffersFromInterpolationOnlyInTheCopiesOutputProjections) {
  const ModelConfig c = TinyConfig({true, false, false});
  const TensorMap m = RandomModel(c, 9);
  ScaleUpOptions o;
  o.layers = 6;
  o.depth = DepthMethod::kInterpolate;
  const Grown interp = Grow(c, m, o);
  o.depth = DepthMethod::kZero;
  const Grown zero = Grow(c, m, o);
  for (const auto& [name, t] : zero.tensors) {
    const bool copy = name.rfind("layers.1.", 0) == 0 || name.rfind("layers.3.", 0) == 0 ||
                      name.rfind("layers.5.", 0) == 0;
    const bool out_proj = name.ends_with(".wo") || name.ends_with(".ffn.down");
    if (copy && out_proj)
      EXPECT_EQ(MaxAbs(Values(t)), 0.0) << name;
    else
      EXPECT_EQ(Values(t), Values(interp.tensors.at(name))) << name;
  }
  // Each zeroed block is an identity, so the residual after target layer 2s+1 is the source's after
  // s.
  const auto rs = Forward(c, m, true).residuals,
             rz = Forward(zero.plan.target, zero.tensors, true).residuals;
  for (int64_t s = 0; s < 3; ++s)
    EXPECT_LT(MaxAbsDiff(rs[static_cast<size_t>(s)], rz[static_cast<size_t>(2 * s + 1)]), 1e-12);
}

TEST(ScaleUp, AkiNewUnitsDifferFromFpiByTheNextLayersWeights) {
  const ModelConfig c = TinyConfig({true, true, false});
  const TensorMap m = RandomModel(c, 10);
  ScaleUpOptions o;
  o.hidden = 32;
  o.intermediate = 40;
  const Grown fpi = Grow(c, m, o);
  o.method = ScaleUpMethod::kAki;
  const Grown aki = Grow(c, m, o);
  ASSERT_TRUE(fpi.plan.exact());
  ASSERT_FALSE(aki.plan.exact());
  const DimMap& H = *fpi.plan.hidden;
  const DimMap& F = *fpi.plan.ffn;
  // gate of layer 0: [f2, d2], rows FFN, columns hidden (divided).
  const auto a0 = Values(aki.tensors.at("layers.0.ffn.gate")),
             f0 = Values(fpi.tensors.at("layers.0.ffn.gate"));
  const auto w0 = Values(m.at("layers.0.ffn.gate")), w1 = Values(m.at("layers.1.ffn.gate"));
  int64_t fresh_entries = 0;
  for (int64_t i = 0; i < 40; ++i)
    for (int64_t j = 0; j < 32; ++j) {
      const auto si = static_cast<size_t>(F.src[static_cast<size_t>(i)]);
      const auto sj = static_cast<size_t>(H.src[static_cast<size_t>(j)]);
      const bool fresh = F.fresh[static_cast<size_t>(i)] || H.fresh[static_cast<size_t>(j)];
      const double want =
          fresh ? (w1[si * 16 + sj] - w0[si * 16 + sj]) / static_cast<double>(H.count[sj]) : 0.0;
      EXPECT_NEAR(a0[static_cast<size_t>(i * 32 + j)] - f0[static_cast<size_t>(i * 32 + j)], want,
                  1e-15);
      fresh_entries += fresh;
    }
  EXPECT_EQ(fresh_entries, 40 * 32 - 24 * 16);
  // Biases follow AKI too; norms, the embedding, the head and the top layer are FPI.
  EXPECT_NE(Values(aki.tensors.at("layers.0.bq")), Values(fpi.tensors.at("layers.0.bq")));
  for (const char* t :
       {"layers.0.attn_norm", "embed", "lm_head", "norm", "layers.2.wq", "layers.2.ffn.down"})
    EXPECT_EQ(Values(aki.tensors.at(t)), Values(fpi.tensors.at(t))) << t;
  EXPECT_GT(LogitDiff(c, m, aki), 1e-3);
}

TEST(ScaleUp, AkiProIsAkiWidthWithInterpolatedDepth) {
  const ModelConfig c = TinyConfig({true, true, false});
  const TensorMap m = RandomModel(c, 11);
  ScaleUpOptions o;
  o.hidden = 32;
  o.method = ScaleUpMethod::kAki;
  const Grown aki = Grow(c, m, o);
  o.method = ScaleUpMethod::kAkiPro;
  o.layers = 6;
  const Grown pro = Grow(c, m, o);
  EXPECT_EQ(pro.plan.depth, DepthMethod::kInterpolate);
  for (int64_t l = 0; l < 6; ++l)
    for (const char* t :
         {"wq", "wk", "wv", "bq", "wo", "ffn.gate", "ffn.up", "ffn.down", "ffn_norm"})
      EXPECT_EQ(Values(pro.tensors.at(LayerTensorName(l, t))),
                Values(aki.tensors.at(LayerTensorName(l / 2, t))));
  o.depth = DepthMethod::kStack;
  EXPECT_FALSE(PlanScaleUp(c, o).ok());
}

TEST(ScaleUp, PooledKvHeadsAreExactOnlyWhenThePooledHeadsAgree) {
  ModelConfig c = TinyConfig({false, true, false});  // MHA: 4 KV heads
  TensorMap m = RandomModel(c, 12);
  ScaleUpOptions o;
  o.kv_heads = 2;
  const Grown g = Grow(c, m, o);
  ASSERT_FALSE(g.plan.exact());
  EXPECT_GT(LogitDiff(c, m, g), 1e-4);
  // Make K/V heads 1 and 3 copies of 0 and 2: the mean of equal heads is the head itself.
  for (int64_t l = 0; l < c.num_layers; ++l)
    for (const char* t : {"wk", "wv", "bk", "bv"}) {
      std::vector<double> v = Values(m.at(LayerTensorName(l, t)));
      const size_t row = v.size() / 4;  // one head's block
      for (size_t h : {size_t{1}, size_t{3}})
        std::copy(v.begin() + static_cast<long>((h - 1) * row),
                  v.begin() + static_cast<long>(h * row), v.begin() + static_cast<long>(h * row));
      m[LayerTensorName(l, t)] = testing::F64Tensor(v, m.at(LayerTensorName(l, t)).shape());
    }
  const Grown same = Grow(c, m, o);
  EXPECT_LT(LogitDiff(c, m, same), 1e-12);
}

TEST(ScaleUp, RandomMapIsSeeded) {
  const ModelConfig c = TinyConfig({true, false, false});
  ScaleUpOptions o;
  o.hidden = 32;
  o.map = MapKind::kRandom;
  o.seed = 1;
  const auto a = PlanScaleUp(c, o), b = PlanScaleUp(c, o);
  o.seed = 2;
  const auto d = PlanScaleUp(c, o);
  EXPECT_EQ(a->hidden->src, b->hidden->src);
  EXPECT_NE(a->hidden->src, d->hidden->src);
  EXPECT_EQ(a->hidden->uniform_counts(), a->exact());
}

TEST(ScaleUp, ImpossiblePlansAreRefusedWithTheReason) {
  const ModelConfig c = TinyConfig({true, false, false});  // 16 wide, 4 heads of 4, 2 KV heads
  auto refused = [&](ScaleUpOptions o, const std::string& needle) {
    auto p = PlanScaleUp(c, o);
    ASSERT_FALSE(p.ok()) << needle;
    EXPECT_NE(p.status().message().find(needle), std::string::npos) << p.status().message();
  };
  ScaleUpOptions o;
  o.hidden = 8;
  refused(o, "can only grow");
  o = {};
  o.hidden = 32;
  o.symmetry_noise = 0.1;
  o.method = ScaleUpMethod::kAkiPro;
  refused(o, "--symmetry-noise applies to --method fpi");
  o.method = ScaleUpMethod::kFpi;
  o.symmetry_noise = 1.5;
  refused(o, "--symmetry-noise must be in [0, 1)");
  o = {};
  o.hidden = 32;
  o.heads = 16;
  refused(o, "head_dim");
  o = {};
  o.hidden = 32;
  o.kv_heads = 3;
  refused(o, "not divisible");
  o = {};
  o.hidden = 48;
  o.heads = 12;
  o.kv_heads = 3;
  refused(o, "multiple or a divisor");
  o = {};
  o.layers = 2;
  refused(o, "depth can only grow");
  o = {};
  refused(o, "nothing to grow");
  o = {};
  o.kv_heads = -2;
  refused(o, "out of range");
  o = {};
  o.hidden = int64_t{1} << 40;
  refused(o, "out of range");
  o = {};
  o.hidden = 18;
  refused(o, "multiple of head_dim");
  o.hidden = 20;  // 5 heads of 4 cannot share 2 KV heads
  refused(o, "not divisible");
  ModelConfig moe = c;
  moe.arch = Architecture::kMixtral;
  moe.moe.num_experts = 2;
  moe.moe.top_k = 2;
  moe.moe.expert_intermediate = 8;
  o = {};
  o.hidden = 32;
  EXPECT_FALSE(PlanScaleUp(moe, o).ok());
}

}  // namespace
}  // namespace escale::surgery
