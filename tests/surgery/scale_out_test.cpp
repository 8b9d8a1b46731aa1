// Scale-out on random tiny dense models in fp64: identical experts under mixtral routing are the
// dense model; every other option differs exactly as its stated status says.
#include "surgery/scale_out.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numeric>

#include "model/reference_model.h"
#include "surgery/scale_up.h"
#include "surgery_fixtures.h"

namespace escale::surgery {
namespace {

using testing::Forward;
using testing::MaxAbs;
using testing::MaxAbsDiff;
using testing::RandomModel;
using testing::TinyConfig;
using testing::Values;
using testing::Variant;

struct Moe {
  ScaleOutPlan plan;
  TensorMap tensors;
};

Moe Upcycle(const ModelConfig& c, const TensorMap& m, const ScaleOutOptions& o) {
  auto plan = PlanScaleOut(c, o);
  EXPECT_TRUE(plan.ok()) << plan.status().message();
  auto t = ScaleOutInMemory(*plan, SourceFromMap(m), DType::kF64);
  EXPECT_TRUE(t.ok()) << t.status().message();
  return {std::move(plan).value(), std::move(t).value()};
}

ScaleOutOptions Opts(int64_t e, int64_t k) {
  ScaleOutOptions o;
  o.experts = e;
  o.top_k = k;
  o.seed = 17;
  o.router_std = 0.5;  // large, so that routing really varies between tokens
  return o;
}

class ScaleOutVariants : public ::testing::TestWithParam<Variant> {};

TEST_P(ScaleOutVariants, MixtralRoutingWithIdenticalExpertsIsTheDenseModel) {
  const ModelConfig c = TinyConfig(GetParam());
  const TensorMap m = RandomModel(c, 21);
  const Moe moe = Upcycle(c, m, Opts(4, 2));
  EXPECT_TRUE(moe.plan.exact());
  EXPECT_EQ(moe.plan.target.arch, GetParam().qk_norm ? Architecture::kQwen3Moe
                                  : GetParam().bias  ? Architecture::kQwen2Moe
                                                     : Architecture::kMixtral);
  const auto dense = Forward(c, m).logits;
  ASSERT_GT(MaxAbs(dense), 0.5);
  EXPECT_LT(MaxAbsDiff(dense, Forward(moe.plan.target, moe.tensors).logits), 1e-12);
}

TEST_P(ScaleOutVariants, GranularAndSharedVariantsAreExactWithMixtralRouting) {
  const ModelConfig c = TinyConfig(GetParam());
  const TensorMap m = RandomModel(c, 22);
  const auto dense = Forward(c, m).logits;
  ScaleOutOptions o = Opts(4, 2);
  o.granularity = 3;  // 12 experts of 8, top 6, down x3
  const Moe g = Upcycle(c, m, o);
  EXPECT_EQ(g.plan.target.moe.num_experts, 12);
  EXPECT_EQ(g.plan.target.moe.top_k, 6);
  EXPECT_TRUE(g.plan.exact());
  EXPECT_LT(MaxAbsDiff(dense, Forward(g.plan.target, g.tensors).logits), 1e-12);
  o = Opts(4, 2);
  o.shared_expert = true;
  if (GetParam().qk_norm) {  // Qwen3-MoE has no shared expert, Qwen2-MoE no q/k norm
    const auto refused = PlanScaleOut(c, o);
    ASSERT_FALSE(refused.ok());
    EXPECT_NE(refused.status().message().find("no shared expert"), std::string::npos)
        << refused.status().message();
    return;
  }
  const Moe s = Upcycle(c, m, o);
  EXPECT_EQ(s.plan.target.arch, Architecture::kQwen2Moe);
  EXPECT_TRUE(s.plan.exact());
  EXPECT_LT(MaxAbsDiff(dense, Forward(s.plan.target, s.tensors).logits), 1e-12);
}

// Granular top-1 (E copies x G slices, top G): the same active FFN size as the dense model, so a
// token costs what a dense token costs; still exact, and its router learns from the LM loss at once
// because the selected slices differ, where plain copies give the router exactly no gradient.
TEST_P(ScaleOutVariants, GranularTopOneIsExactAndItsRouterHasAGradient) {
  const ModelConfig c = TinyConfig(GetParam());
  const TensorMap m = RandomModel(c, 24);
  const auto dense = Forward(c, m).logits;
  ScaleOutOptions o = Opts(4, 1);
  o.granularity = 2;
  const Moe g = Upcycle(c, m, o);
  EXPECT_EQ(g.plan.target.moe.num_experts, 8);
  EXPECT_EQ(g.plan.target.moe.top_k, 2);
  EXPECT_EQ(g.plan.target.moe.expert_intermediate, c.intermediate_size / 2);
  EXPECT_TRUE(g.plan.exact());
  EXPECT_LT(MaxAbsDiff(dense, Forward(g.plan.target, g.tensors).logits), 1e-12);
  const Moe copies = Upcycle(c, m, Opts(4, 2));
  const std::vector<int32_t> tokens = testing::ProbeTokens();
  std::vector<int32_t> targets(tokens.begin() + 1, tokens.end());
  targets.push_back(-1);
  const int64_t T = static_cast<int64_t>(tokens.size());
  auto router_grad = [&](const Moe& moe) {
    auto r = ReferenceLossAndGradients(moe.plan.target, moe.tensors, tokens, targets, T,
                                       LossCoefficients{});
    EXPECT_TRUE(r.ok()) << r.status().message();
    return r.ok() ? MaxAbs(r->grads.at("layers.0.moe.router")) : -1.0;
  };
  EXPECT_LT(router_grad(copies), 1e-12);
  EXPECT_GT(router_grad(g), 1e-4);
}

INSTANTIATE_TEST_SUITE_P(All, ScaleOutVariants,
                         ::testing::Values(Variant{true, false, false}, Variant{true, true, false},
                                           Variant{false, false, true}, Variant{true, true, true},
                                           Variant{true, false, true, true}),
                         [](const auto& p) { return testing::VariantName(p.param); });

std::vector<double> RmsNorm(const double* x, const std::vector<double>& w, int64_t n, double eps) {
  double ms = 0;
  for (int64_t i = 0; i < n; ++i) ms += x[i] * x[i];
  const double inv = 1.0 / std::sqrt(ms / static_cast<double>(n) + eps);
  std::vector<double> y(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) y[static_cast<size_t>(i)] = x[i] * inv * w[static_cast<size_t>(i)];
  return y;
}

TEST(ScaleOut, StRoutingScalesTheFfnOutputByTheTopKProbabilityMass) {
  // With identical experts the st MoE output is m_t * FFN(x_t), m_t = the top-k softmax mass. Layer
  // 0: residual = h + m_t * (r_dense - h), h = the residual after attention (dense model with layer
  // 0's down_proj zeroed), r_dense = the dense residual after layer 0.
  const ModelConfig c = TinyConfig({true, true, false});
  TensorMap m = RandomModel(c, 23);
  ScaleOutOptions o = Opts(4, 2);
  o.router = RouterType::kSt;
  const Moe st = Upcycle(c, m, o);
  ASSERT_FALSE(st.plan.exact());
  const auto rd = Forward(c, m, true).residuals[0];
  const auto rs = Forward(st.plan.target, st.tensors, true).residuals[0];
  TensorMap no_ffn = m;
  no_ffn["layers.0.ffn.down"] = testing::F64Tensor(std::vector<double>(16 * 24, 0.0), {16, 24});
  const auto h = Forward(c, no_ffn, true).residuals[0];
  const auto router = Values(st.tensors.at("layers.0.moe.router"));
  const auto norm_w = Values(m.at("layers.0.ffn_norm"));
  const int64_t H = 16, E = 4, T = static_cast<int64_t>(testing::ProbeTokens().size());
  double min_mass = 1, max_mass = 0;
  for (int64_t t = 0; t < T; ++t) {
    const auto x = RmsNorm(h.data() + t * H, norm_w, H, c.rms_norm_eps);
    std::vector<double> p(static_cast<size_t>(E));
    for (int64_t e = 0; e < E; ++e)
      p[static_cast<size_t>(e)] = std::inner_product(x.begin(), x.end(), router.begin() + e * H, 0.0);
    const double mx = *std::max_element(p.begin(), p.end());
    double z = 0;
    for (double& v : p) z += (v = std::exp(v - mx));
    for (double& v : p) v /= z;
    std::sort(p.rbegin(), p.rend());
    const double mass = p[0] + p[1];
    min_mass = std::min(min_mass, mass);
    max_mass = std::max(max_mass, mass);
    for (int64_t i = 0; i < H; ++i) {
      const auto k = static_cast<size_t>(t * H + i);
      EXPECT_NEAR(rs[k], h[k] + mass * (rd[k] - h[k]), 1e-12);
    }
  }
  EXPECT_LT(max_mass, 1.0 - 1e-3);  // really not renormalised
  EXPECT_GT(max_mass - min_mass, 1e-3);  // and token dependent
}

TEST(ScaleOut, CapacityThatDropsNothingIsExactAndDroppingTheLastTokenChangesOnlyIt) {
  const ModelConfig c = TinyConfig({true, false, false});
  const TensorMap m = RandomModel(c, 24);
  const auto dense = Forward(c, m).logits;
  const int64_t V = c.vocab_size, T = static_cast<int64_t>(testing::ProbeTokens().size());
  ScaleOutOptions o = Opts(4, 2);
  o.capacity_factor = 2.0;  // ceil(2*T*2/4) = T: no expert can overflow
  const Moe full = Upcycle(c, m, o);
  EXPECT_TRUE(full.plan.exact());
  EXPECT_FALSE(full.plan.conditions.empty());
  EXPECT_LT(MaxAbsDiff(dense, Forward(full.plan.target, full.tensors).logits), 1e-12);
  // E = k = 2: both experts take every token; capacity ceil(0.9*T) = T-1 drops, by position, the
  // last token from both, so its FFN output is 0 in every layer and only its own logits change.
  o = Opts(2, 2);
  o.capacity_factor = 0.9;
  o.drop_policy = DropPolicy::kPosition;
  const Moe drop = Upcycle(c, m, o);
  const auto moe = Forward(drop.plan.target, drop.tensors).logits;
  const std::vector<double> head(dense.begin(), dense.begin() + (T - 1) * V);
  EXPECT_LT(MaxAbsDiff(head, std::vector<double>(moe.begin(), moe.begin() + (T - 1) * V)), 1e-12);
  const std::vector<double> last_d(dense.end() - V, dense.end()), last_m(moe.end() - V, moe.end());
  EXPECT_GT(MaxAbsDiff(last_d, last_m), 1e-3);
}

TEST(ScaleOut, StGranularAndNoiseAndReinitAreNotExact) {
  const ModelConfig c = TinyConfig({true, true, false});
  const TensorMap m = RandomModel(c, 25);
  const auto dense = Forward(c, m).logits;
  ScaleOutOptions o = Opts(4, 2);
  o.router = RouterType::kSt;
  o.granularity = 2;
  const Moe st = Upcycle(c, m, o);
  EXPECT_FALSE(st.plan.exact());
  EXPECT_GT(MaxAbsDiff(dense, Forward(st.plan.target, st.tensors).logits), 1e-4);
  o = Opts(4, 2);
  o.expert_noise = 0.01;
  const Moe noisy = Upcycle(c, m, o);
  EXPECT_FALSE(noisy.plan.exact());
  // Noise statistics: expert minus its dense slice ~ N(0, 0.01^2).
  double s1 = 0, s2 = 0;
  int64_t n = 0;
  for (int64_t l = 0; l < c.num_layers; ++l)
    for (int64_t e = 0; e < 4; ++e)
      for (const auto& [which, dense_name] : {std::pair{"gate", "ffn.gate"}, {"up", "ffn.up"}, {"down", "ffn.down"}}) {
        const auto x = Values(noisy.tensors.at(ExpertTensorName(l, e, which)));
        const auto d = Values(m.at(LayerTensorName(l, dense_name)));
        for (size_t i = 0; i < x.size(); ++i) {
          s1 += x[i] - d[i];
          s2 += (x[i] - d[i]) * (x[i] - d[i]);
          ++n;
        }
      }
  const double mean = s1 / static_cast<double>(n), sd = std::sqrt(s2 / static_cast<double>(n) - mean * mean);
  EXPECT_NEAR(mean, 0.0, 5 * 0.01 / std::sqrt(static_cast<double>(n)));
  EXPECT_NEAR(sd, 0.01, 5 * 0.01 / std::sqrt(2.0 * static_cast<double>(n)));
  EXPECT_GT(MaxAbsDiff(dense, Forward(noisy.plan.target, noisy.tensors).logits), 1e-5);

  o = Opts(4, 2);
  o.reinit_ratio = 0.25;  // 6 of 24 neurons per expert, the same set in gate, up and down
  const Moe re = Upcycle(c, m, o);
  EXPECT_FALSE(re.plan.exact());
  const auto dg = Values(m.at("layers.1.ffn.gate")), du = Values(m.at("layers.1.ffn.up")),
             dd = Values(m.at("layers.1.ffn.down"));
  std::vector<int64_t> first_set;
  for (int64_t e = 0; e < 4; ++e) {
    const auto g = Values(re.tensors.at(ExpertTensorName(1, e, "gate")));
    const auto u = Values(re.tensors.at(ExpertTensorName(1, e, "up")));
    const auto d = Values(re.tensors.at(ExpertTensorName(1, e, "down")));
    std::vector<int64_t> set;
    for (int64_t a = 0; a < 24; ++a) {
      const bool gate_changed = !std::equal(g.begin() + a * 16, g.begin() + (a + 1) * 16, dg.begin() + a * 16);
      const bool up_changed = !std::equal(u.begin() + a * 16, u.begin() + (a + 1) * 16, du.begin() + a * 16);
      bool down_changed = false;
      for (int64_t j = 0; j < 16; ++j) down_changed |= d[static_cast<size_t>(j * 24 + a)] != dd[static_cast<size_t>(j * 24 + a)];
      EXPECT_EQ(gate_changed, up_changed);
      EXPECT_EQ(gate_changed, down_changed);
      if (gate_changed) set.push_back(a);
    }
    EXPECT_EQ(set.size(), 6u);
    if (e == 0) first_set = set;
    else EXPECT_NE(set, first_set);  // each expert drops its own neurons (4 equal draws: ~1e-8)
  }
}

TEST(ScaleOut, RouterWeightsHaveTheRequestedStdAndAreReproducible) {
  const std::vector<double> w = RouterBaseWeights(99, 0, 64, 256, 0.02);
  double s1 = 0, s2 = 0;
  for (double x : w) s1 += x;
  const double n = static_cast<double>(w.size()), mean = s1 / n;
  for (double x : w) s2 += (x - mean) * (x - mean);
  const double sd = std::sqrt(s2 / n);
  EXPECT_NEAR(mean, 0.0, 5 * 0.02 / std::sqrt(n));
  EXPECT_NEAR(sd, 0.02, 5 * 0.02 / std::sqrt(2 * n));
  EXPECT_EQ(w, RouterBaseWeights(99, 0, 64, 256, 0.02));
  EXPECT_NE(w, RouterBaseWeights(100, 0, 64, 256, 0.02));
  EXPECT_NE(w, RouterBaseWeights(99, 1, 64, 256, 0.02));
  // Through a plan: same seed, same bytes; granularity groups share one row.
  const ModelConfig c = TinyConfig({true, false, false});
  const TensorMap m = RandomModel(c, 26);
  ScaleOutOptions o = Opts(4, 2);
  o.granularity = 2;
  const Moe a = Upcycle(c, m, o), b = Upcycle(c, m, o);
  const auto ra = Values(a.tensors.at("layers.2.moe.router"));
  EXPECT_EQ(ra, Values(b.tensors.at("layers.2.moe.router")));
  for (int64_t e = 0; e < 8; e += 2)
    EXPECT_TRUE(std::equal(ra.begin() + e * 16, ra.begin() + (e + 1) * 16, ra.begin() + (e + 1) * 16));
  const auto base = RouterBaseWeights(17, 2, 4, 16, 0.5);
  EXPECT_EQ(std::vector<double>(ra.begin() + 2 * 16, ra.begin() + 3 * 16),
            std::vector<double>(base.begin() + 16, base.begin() + 32));
}

TEST(ScaleOut, GrownModelGoesStraightIntoScaleOut) {
  const ModelConfig c = TinyConfig({true, true, false});
  const TensorMap m = RandomModel(c, 27);
  ScaleUpOptions up;
  up.hidden = 32;
  up.layers = 5;
  up.depth = DepthMethod::kZero;
  auto plan = PlanScaleUp(c, up);
  ASSERT_TRUE(plan.ok());
  const TensorMap grown = ScaleUpInMemory(*plan, SourceFromMap(m), DType::kF64).value();
  const Moe moe = Upcycle(plan->target, grown, Opts(8, 2));
  EXPECT_LT(MaxAbsDiff(Forward(c, m).logits, Forward(moe.plan.target, moe.tensors).logits), 1e-11);
}

TEST(ScaleOut, ImpossiblePlansAreRefusedWithTheReason) {
  const ModelConfig c = TinyConfig({true, false, false});
  const ModelConfig qwen = TinyConfig({true, true, false});
  auto refused = [](const ModelConfig& cfg, ScaleOutOptions o, const std::string& needle) {
    auto p = PlanScaleOut(cfg, o);
    ASSERT_FALSE(p.ok()) << needle;
    EXPECT_NE(p.status().message().find(needle), std::string::npos) << p.status().message();
  };
  refused(c, Opts(1, 1), "at least 2");
  refused(c, Opts(4, 5), "--top-k");
  refused(c, Opts(4, 1), "no gradient");
  ScaleOutOptions o = Opts(4, 1);
  o.granularity = 2;
  EXPECT_TRUE(PlanScaleOut(c, o).ok());  // k x G = 2 routed slices
  o = Opts(4, 1);
  o.router = RouterType::kSt;
  EXPECT_TRUE(PlanScaleOut(c, o).ok());
  o = Opts(4, 2);
  o.granularity = 5;
  refused(c, o, "does not divide");
  o = Opts(4, 2);
  o.format = Architecture::kMixtral;
  refused(qwen, o, "q/k/v biases");
  o.shared_expert = true;
  refused(c, o, "--shared-experts");
  o.shared_expert = false;
  o.router = RouterType::kSt;
  refused(c, o, "renormalises");
  o = Opts(4, 2);
  o.every = 9;
  refused(c, o, "--moe-every");
  o = Opts(4, 2);
  o.reinit_ratio = 1.5;
  refused(c, o, "--reinit-ratio");
  ModelConfig moe = c;
  moe.arch = Architecture::kMixtral;
  moe.moe.num_experts = 2;
  moe.moe.top_k = 2;
  moe.moe.expert_intermediate = 8;
  refused(moe, Opts(2, 2), "already");  // an MoE source must grow its expert count
}

TEST(ScaleOut, MoeEveryKeepsDenseLayersBetween) {
  const ModelConfig c = TinyConfig({true, false, false}, 4);
  const TensorMap m = RandomModel(c, 28);
  ScaleOutOptions o = Opts(4, 2);
  o.every = 2;
  const Moe moe = Upcycle(c, m, o);
  EXPECT_EQ(moe.plan.target.arch, Architecture::kQwen2Moe);
  EXPECT_TRUE(moe.tensors.count("layers.0.ffn.gate"));
  EXPECT_TRUE(moe.tensors.count("layers.1.moe.router"));
  EXPECT_EQ(Values(moe.tensors.at("layers.0.bq")), std::vector<double>(16, 0.0));  // Qwen2-MoE needs biases
  EXPECT_LT(MaxAbsDiff(Forward(c, m).logits, Forward(moe.plan.target, moe.tensors).logits), 1e-12);
}

}  // namespace
}  // namespace escale::surgery
