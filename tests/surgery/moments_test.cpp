// AdamW's moments through growth: with the source's gradient standing in for m (and its square for
// v), the mapped moments must be the grown model's gradient, computed by the fp64 reference.
#include "surgery/moments.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>

#include "model/reference_model.h"
#include "surgery_fixtures.h"

namespace escale::surgery {
namespace {

using testing::ProbeTokens;
using testing::RandomModel;
using testing::TinyConfig;
using testing::Variant;

std::map<std::string, std::vector<double>> Grads(const ModelConfig& c, const TensorMap& m) {
  const std::vector<int32_t>& tokens = ProbeTokens();
  std::vector<int32_t> targets(tokens.begin() + 1, tokens.end());
  targets.push_back(-1);
  auto r = ReferenceLossAndGradients(c, m, tokens, targets, static_cast<int64_t>(tokens.size()),
                                     LossCoefficients{});
  EXPECT_TRUE(r.ok()) << r.status().message();
  return r.ok() ? r->grads : std::map<std::string, std::vector<double>>{};
}

// The gradient as m, its square as v, `steps` updates behind both.
MomentMap GradientMoments(const std::map<std::string, std::vector<double>>& g, int64_t steps) {
  MomentMap out;
  for (const auto& [name, v] : g) {
    TensorMoments t;
    t.steps = steps;
    for (double x : v) {
      t.m.push_back(static_cast<float>(x));
      t.v.push_back(static_cast<float>(x * x));
    }
    out.emplace(name, std::move(t));
  }
  return out;
}

// Largest |a - b| over the tensor, relative to its largest |b|.
double RelDiff(const std::vector<float>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0, s = 0;
  for (size_t i = 0; i < std::min(a.size(), b.size()); ++i) {
    d = std::max(d, std::abs(static_cast<double>(a[i]) - b[i]));
    s = std::max(s, std::abs(b[i]));
  }
  return s > 0 ? d / s : d;
}

class MomentsVariants : public ::testing::TestWithParam<Variant> {};

TEST_P(MomentsVariants, FpiWidthMomentsAreTheGrownModelsGradientAndNewLayersStartFresh) {
  const ModelConfig c = TinyConfig(GetParam());
  const TensorMap src = RandomModel(c, 3);
  ScaleUpOptions o;
  o.hidden = 32;        // x2 (heads 4 -> 8)
  o.intermediate = 72;  // x3
  o.layers = 5;         // 3 -> 5 with zeroed copies: still exact
  o.depth = DepthMethod::kZero;
  auto plan = PlanScaleUp(c, o);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ASSERT_TRUE(plan->exact());
  auto grown = ScaleUpInMemory(*plan, SourceFromMap(src), DType::kF64);
  ASSERT_TRUE(grown.ok());
  auto mapped = ScaleUpMoments(*plan, GradientMoments(Grads(c, src), 42));
  ASSERT_TRUE(mapped.ok()) << mapped.status().message();
  const auto target_grads = Grads(plan->target, *grown);
  ASSERT_EQ(mapped->size(), target_grads.size());
  int carried = 0, fresh = 0;
  for (const auto& [name, g] : target_grads) {
    const TensorMoments& t = mapped->at(name);
    const int64_t layer = plan->Find(name)->target.layer;
    if (layer >= 0 && plan->depth_map.zeroed[static_cast<size_t>(layer)]) {
      EXPECT_EQ(t.steps, 0) << name;
      EXPECT_TRUE(std::all_of(t.m.begin(), t.m.end(), [](float x) { return x == 0; })) << name;
      ++fresh;
      continue;
    }
    ++carried;
    EXPECT_EQ(t.steps, 42) << name;
    EXPECT_LT(RelDiff(t.m, g), 1e-6) << name;  // fp32 storage of an exact map
    std::vector<double> g2(g.size());
    std::transform(g.begin(), g.end(), g2.begin(), [](double x) { return x * x; });
    EXPECT_LT(RelDiff(t.v, g2), 1e-6) << name;
  }
  EXPECT_GT(fresh, 0);
  EXPECT_GT(carried, 20);
}

INSTANTIATE_TEST_SUITE_P(All, MomentsVariants,
                         ::testing::Values(Variant{false, false, false},
                                           Variant{true, false, false}, Variant{true, true, false}),
                         [](const auto& p) { return testing::VariantName(p.param); });

// Summed over the experts holding one slice of the dense FFN, an upcycled MoE's gradient is that
// slice's dense gradient exactly (every token's selected weights sum to one); the mapped moments
// must sum the same way, and what is copied whole must equal the MoE's gradient.
void CheckUpcycledMoments(const ScaleOutOptions& o) {
  const ModelConfig c = TinyConfig({true, false, false});
  const TensorMap src = RandomModel(c, 8);
  auto plan = PlanScaleOut(c, o);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  ASSERT_TRUE(plan->exact());
  auto moe = ScaleOutInMemory(*plan, SourceFromMap(src), DType::kF64);
  ASSERT_TRUE(moe.ok());
  auto mapped = ScaleOutMoments(*plan, GradientMoments(Grads(c, src), 9));
  ASSERT_TRUE(mapped.ok()) << mapped.status().message();
  const auto moe_grads = Grads(plan->target, *moe);
  const int64_t G = o.granularity, E = plan->target.moe.num_experts;
  std::map<std::string, std::vector<double>> grad_sum;
  std::map<std::string, std::vector<float>> mapped_sum;
  for (const auto& [name, g] : moe_grads) {
    const OutRecipe& r = *plan->Find(name);
    const TensorMoments& t = mapped->at(name);
    if (r.kind == OutKind::kRouter || r.kind == OutKind::kZero) {
      EXPECT_EQ(t.steps, 0) << name;
      continue;
    }
    EXPECT_EQ(t.steps, 9) << name;
    if (r.target.expert < 0) {
      EXPECT_LT(RelDiff(t.m, g), 1e-6) << name;
      continue;
    }
    const std::string key = r.source + "/" + std::to_string(r.target.expert % G);
    auto& gs = grad_sum[key];
    auto& ms = mapped_sum[key];
    gs.resize(g.size(), 0.0);
    ms.resize(t.m.size(), 0.0f);
    for (size_t i = 0; i < g.size(); ++i) gs[i] += g[i];
    for (size_t i = 0; i < t.m.size(); ++i) ms[i] += t.m[i];
  }
  ASSERT_EQ(static_cast<int64_t>(grad_sum.size()), 3 * G * c.num_layers) << "E = " << E;
  for (const auto& [key, gs] : grad_sum) EXPECT_LT(RelDiff(mapped_sum[key], gs), 1e-5) << key;
}

ScaleOutOptions Upcycling(int64_t top_k, int64_t granularity) {
  ScaleOutOptions o;
  o.experts = 4;
  o.top_k = top_k;
  o.granularity = granularity;
  o.seed = 17;
  o.router_std = 0.5;  // large, so that routing really varies between tokens
  return o;
}

TEST(ScaleOutMoments, ExpertsSumToTheDenseSliceGradient) {
  CheckUpcycledMoments(Upcycling(2, 1));
}

TEST(ScaleOutMoments, GranularExpertsSumToTheDenseSliceGradient) {
  CheckUpcycledMoments(Upcycling(1, 2));
}

TEST(ScaleUpMoments, MissingOrMisshapenSourceMomentsAreRefused) {
  const ModelConfig c = TinyConfig({false, false, false});
  ScaleUpOptions o;
  o.hidden = 32;
  auto plan = PlanScaleUp(c, o);
  ASSERT_TRUE(plan.ok());
  MomentMap m = GradientMoments(Grads(c, RandomModel(c, 3)), 1);
  m.erase("layers.1.ffn.up");
  auto r = ScaleUpMoments(*plan, m);
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("layers.1.ffn.up"), std::string::npos)
      << r.status().message();
  m = GradientMoments(Grads(c, RandomModel(c, 3)), 1);
  m["embed"].m.pop_back();
  m["embed"].v.pop_back();
  EXPECT_FALSE(ScaleUpMoments(*plan, m).ok());
}

}  // namespace
}  // namespace escale::surgery
