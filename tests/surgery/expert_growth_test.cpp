// Growing an MoE (E0 experts, top-k0) to m * E0 experts by copying every expert and its router row
// m times, in fp64 on random tiny MoEs whose experts all differ: with k = m * k0 the grown model is
// the source model for mixtral and st routing, with shared experts, capacity drops, GQA, tied
// heads; every other request differs from the source by a measured amount.
#include <gtest/gtest.h>

#include <cmath>

#include "surgery/scale_out.h"
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

struct MoeShape {
  RouterType router = RouterType::kMixtral;
  bool shared = false;
  int64_t experts = 4, top_k = 2, every = 1;
};

// A random MoE built directly (not upcycled), so that every expert and router row is distinct.
ModelConfig MoeModelConfig(const Variant& v, const MoeShape& s, int64_t layers = 3) {
  ModelConfig c = TinyConfig(v, layers);
  const bool qwen = v.bias || s.shared || s.router == RouterType::kSt || s.every > 1;
  c.arch = qwen ? Architecture::kQwen2Moe : Architecture::kMixtral;
  c.qkv_bias = qwen;  // Qwen2-MoE attention always has q/k/v biases
  c.moe.num_experts = s.experts;
  c.moe.top_k = s.top_k;
  c.moe.expert_intermediate = 8;
  c.moe.shared_intermediate = s.shared ? 12 : 0;
  c.moe.every = s.every;
  c.moe.router = s.router;
  if (!qwen) c.intermediate_size = 8;  // Mixtral's intermediate_size is the expert size
  return c;
}

struct Grown {
  ScaleOutPlan plan;
  TensorMap tensors;
};

Grown Grow(const ModelConfig& c, const TensorMap& m, int64_t experts, int64_t top_k,
           ScaleOutOptions o = {}) {
  o.experts = experts;
  o.top_k = top_k;
  o.seed = 5;
  auto plan = PlanScaleOut(c, o);
  EXPECT_TRUE(plan.ok()) << plan.status().message();
  if (!plan.ok()) return {};
  auto t = ScaleOutInMemory(*plan, SourceFromMap(m), DType::kF64);
  EXPECT_TRUE(t.ok()) << t.status().message();
  return {std::move(plan).value(), std::move(t).value()};
}

struct Case {
  Variant v;
  MoeShape s;
};

class ExpertGrowth : public ::testing::TestWithParam<Case> {};

TEST_P(ExpertGrowth, CopyingEveryExpertMTimesWithTopKTimesMIsTheSourceModel) {
  const ModelConfig c = MoeModelConfig(GetParam().v, GetParam().s);
  const TensorMap src = RandomModel(c, 41);
  const auto want = Forward(c, src).logits;
  ASSERT_GT(MaxAbs(want), 0.5);
  for (int64_t m : {2, 3}) {  // 3: w/3 is not a binary fraction
    const int64_t E = m * c.moe.num_experts, k = m * c.moe.top_k;
    const Grown g = Grow(c, src, E, k);
    ASSERT_TRUE(g.plan.exact()) << m;
    EXPECT_EQ(g.plan.target.moe.num_experts, E);
    EXPECT_EQ(g.plan.target.moe.top_k, k);
    EXPECT_EQ(g.plan.target.arch, c.arch);
    EXPECT_EQ(g.plan.target.moe.router, c.moe.router);
    EXPECT_EQ(g.plan.target.moe.shared_intermediate, c.moe.shared_intermediate);
    EXPECT_LT(MaxAbsDiff(want, Forward(g.plan.target, g.tensors).logits), 1e-12) << "m = " << m;
  }
  // --top-k omitted: m x k0.
  const Grown d = Grow(c, src, 2 * c.moe.num_experts, 0);
  EXPECT_EQ(d.plan.target.moe.top_k, 2 * c.moe.top_k);
  EXPECT_TRUE(d.plan.exact());
}

TEST_P(ExpertGrowth, TopKEqualToTheSourcesPicksTheCopiesOfFewerExperts) {
  // k = k0 = 2 with m = 2: the two largest duplicated logits are both copies of the source's top-1
  // expert, each with weight w/2 (mixtral: 1/2 of 1; st: p_1/2), so the grown model computes the
  // source with top-1 routing: not the source.
  const ModelConfig c = MoeModelConfig(GetParam().v, GetParam().s);
  const TensorMap src = RandomModel(c, 42);
  const Grown g = Grow(c, src, 2 * c.moe.num_experts, c.moe.top_k);
  ASSERT_FALSE(g.plan.exact());
  EXPECT_NE(g.plan.inexact[0].find("m x k0"), std::string::npos) << g.plan.inexact[0];
  const auto grown = Forward(g.plan.target, g.tensors).logits;
  EXPECT_GT(MaxAbsDiff(Forward(c, src).logits, grown), 1e-3);
  if (c.moe.top_k != 2)
    return;  // st top-1 -> top-1 of 2x: one copy with p/2, no simpler model to compare
  ModelConfig top1 = c;
  top1.moe.top_k = 1;
  EXPECT_LT(MaxAbsDiff(Forward(top1, src).logits, grown), 1e-12);
}

INSTANTIATE_TEST_SUITE_P(
    All, ExpertGrowth,
    ::testing::Values(Case{{true, false, false}, {}}, Case{{false, false, true}, {}},
                      Case{{true, false, true}, {RouterType::kSt, false}},
                      Case{{false, true, false}, {RouterType::kMixtral, true}},
                      Case{{true, true, true}, {RouterType::kSt, true}},
                      Case{{true, true, false}, {RouterType::kSt, true, 4, 1, 2}}),
    [](const auto& p) {
      const MoeShape& s = p.param.s;
      return testing::VariantName(p.param.v) + "_" + std::string(RouterTypeName(s.router)) +
             (s.shared ? "_shared" : "") + "_k" + std::to_string(s.top_k) +
             (s.every > 1 ? "_every2" : "");
    });

TEST(ExpertGrowthLayout, CopiesOfExpertISitAtIm_ToImPlusMMinus1AndTheRestIsCarriedOver) {
  const ModelConfig c = MoeModelConfig({true, true, false}, {RouterType::kSt, true, 4, 2, 2}, 4);
  const TensorMap src = RandomModel(c, 43);
  const Grown g = Grow(c, src, 12, 6);
  const int64_t H = c.hidden_size;
  for (int64_t l : {1, 3}) {
    const auto router = Values(g.tensors.at(LayerTensorName(l, "moe.router")));
    const auto src_router = Values(src.at(LayerTensorName(l, "moe.router")));
    ASSERT_EQ(router.size(), static_cast<size_t>(12 * H));
    for (int64_t e = 0; e < 12; ++e) {
      const int64_t i = e / 3;  // the stated convention, computed here independently of the plan
      EXPECT_TRUE(std::equal(router.begin() + e * H, router.begin() + (e + 1) * H,
                             src_router.begin() + i * H))
          << e;
      for (const char* which : {"gate", "up", "down"})
        EXPECT_EQ(Values(g.tensors.at(ExpertTensorName(l, e, which))),
                  Values(src.at(ExpertTensorName(l, i, which))))
            << l << " " << e << " " << which;
    }
  }
  // Everything that is not a routed expert or a router is the source tensor, unchanged.
  size_t carried = 0;
  for (const auto& [name, t] : src) {
    if (name.find("moe.experts.") != std::string::npos ||
        name.find("moe.router") != std::string::npos)
      continue;
    ASSERT_TRUE(g.tensors.count(name)) << name;
    EXPECT_EQ(Values(g.tensors.at(name)), Values(t)) << name;
    ++carried;
  }
  EXPECT_GT(carried,
            20u);  // embeddings, attention, norms, dense FFNs of layers 0 and 2, shared experts
  EXPECT_TRUE(g.tensors.count("layers.0.ffn.gate"));
  EXPECT_TRUE(g.tensors.count("layers.1.moe.shared.gate"));
}

TEST(ExpertGrowthLayout, ATieAtTheTopKBoundaryIsBrokenAsInTheSource) {
  // Experts 1 and 2 share one router row, so their logits tie exactly; with k0 = 2 of 3 they are
  // both selected (equal weights) or compete for the last place, which the lower index wins. Block
  // ordering gives expert 1's copies the lower indices, so the grown model picks the same expert.
  for (const RouterType router : {RouterType::kMixtral, RouterType::kSt}) {
    const ModelConfig c = MoeModelConfig({true, false, false}, {router, false, 3, 2});
    TensorMap src = RandomModel(c, 47);
    const int64_t H = c.hidden_size;
    for (int64_t l = 0; l < c.num_layers; ++l) {
      auto r = Values(src.at(LayerTensorName(l, "moe.router")));
      std::copy(r.begin() + H, r.begin() + 2 * H, r.begin() + 2 * H);
      src[LayerTensorName(l, "moe.router")] = testing::F64Tensor(r, {3, H});
    }
    const auto want = Forward(c, src).logits;
    // The tie decides something: exchanging experts 1 and 2 changes the model.
    TensorMap swapped = src;
    for (int64_t l = 0; l < c.num_layers; ++l)
      for (const char* w : {"gate", "up", "down"})
        std::swap(swapped[ExpertTensorName(l, 1, w)], swapped[ExpertTensorName(l, 2, w)]);
    ASSERT_GT(MaxAbsDiff(want, Forward(c, swapped).logits), 1e-3);
    for (int64_t m : {2, 3}) {
      const Grown g = Grow(c, src, 3 * m, 2 * m);
      EXPECT_LT(MaxAbsDiff(want, Forward(g.plan.target, g.tensors).logits), 1e-12) << m;
    }
  }
}

TEST(ExpertGrowthCapacity, CapacityDropsAreTheSourcesBecauseEveryCopyGetsItsExpertsTokens) {
  // capacity ceil(CF*T*k/E) is the same for k/E = m*k0/(m*E0), and each copy of expert i receives
  // exactly the tokens i received, so the same assignments are dropped.
  for (const bool by_position : {false, true})
    for (const RouterType router : {RouterType::kMixtral, RouterType::kSt}) {
      ModelConfig c = MoeModelConfig({true, false, false}, {router, false});
      const TensorMap src = RandomModel(c, 44);
      const auto dropless = Forward(c, src).logits;
      c.moe.capacity_factor = 0.5;
      c.moe.drop_policy = by_position ? DropPolicy::kPosition : DropPolicy::kProbability;
      const auto want = Forward(c, src).logits;
      ASSERT_GT(MaxAbsDiff(dropless, want), 1e-3);  // the source really drops assignments
      for (int64_t m : {2, 3, 4}) {
        const Grown g = Grow(c, src, m * 4, m * 2);
        EXPECT_TRUE(g.plan.exact());
        EXPECT_EQ(g.plan.target.moe.capacity_factor, 0.5);
        EXPECT_EQ(g.plan.target.moe.drop_policy, c.moe.drop_policy);
        EXPECT_LT(MaxAbsDiff(want, Forward(g.plan.target, g.tensors).logits), 1e-12)
            << "m " << m << " by_position " << by_position << " " << RouterTypeName(router);
      }
    }
}

TEST(ExpertGrowthNoise, RouterAndExpertNoiseBreakTheTieAndAreMeasuredAsInexact) {
  const ModelConfig c = MoeModelConfig({true, false, false}, {});
  const TensorMap src = RandomModel(c, 45);
  const auto want = Forward(c, src).logits;
  ScaleOutOptions o;
  o.router_noise = 0.05;
  const Grown r = Grow(c, src, 8, 4, o);
  ASSERT_FALSE(r.plan.exact());
  const int64_t H = c.hidden_size;
  const auto router = Values(r.tensors.at("layers.1.moe.router"));
  const auto src_router = Values(src.at("layers.1.moe.router"));
  double s1 = 0, s2 = 0;
  for (int64_t e = 0; e < 8; ++e)
    for (int64_t j = 0; j < H; ++j) {
      const double d =
          router[static_cast<size_t>(e * H + j)] - src_router[static_cast<size_t>((e / 2) * H + j)];
      if (e % 2 == 0) {
        EXPECT_EQ(d, 0.0);  // copy 0 keeps the source row
      } else {
        s1 += d;
        s2 += d * d;
      }
    }
  const double n = 4.0 * static_cast<double>(H), sd = std::sqrt(s2 / n - (s1 / n) * (s1 / n));
  EXPECT_NEAR(sd, 0.05, 5 * 0.05 / std::sqrt(2 * n));
  const double router_diff = MaxAbsDiff(want, Forward(r.plan.target, r.tensors).logits);
  EXPECT_GT(router_diff, 1e-6);
  o = {};
  o.expert_noise = 0.01;
  const Grown x = Grow(c, src, 8, 4, o);
  ASSERT_FALSE(x.plan.exact());
  EXPECT_NE(Values(x.tensors.at(ExpertTensorName(0, 0, "up"))),
            Values(x.tensors.at(ExpertTensorName(0, 1, "up"))));
  EXPECT_GT(MaxAbsDiff(want, Forward(x.plan.target, x.tensors).logits), 1e-6);
}

TEST(ExpertGrowthChain, DenseScaleUpScaleOutThenMoreExpertsIsTheDenseModel) {
  // The AquilaMoE path (small dense -> wider and deeper -> MoE) followed by one more expert growth.
  const ModelConfig c = TinyConfig({true, true, true});
  const TensorMap dense = RandomModel(c, 46);
  ScaleUpOptions up;
  up.hidden = 32;
  up.layers = 5;
  up.depth = DepthMethod::kZero;
  auto plan = PlanScaleUp(c, up);
  ASSERT_TRUE(plan.ok()) << plan.status().message();
  const TensorMap grown = ScaleUpInMemory(*plan, SourceFromMap(dense), DType::kF64).value();
  ScaleOutOptions o;
  o.router_std = 0.5;
  const Grown moe = Grow(plan->target, grown, 4, 2, o);
  ASSERT_TRUE(moe.plan.exact());
  const Grown more = Grow(moe.plan.target, moe.tensors, 12, 6);
  ASSERT_TRUE(more.plan.exact());
  EXPECT_LT(MaxAbsDiff(Forward(c, dense).logits, Forward(more.plan.target, more.tensors).logits),
            1e-11);
}

TEST(ExpertGrowthRefusals, EveryImpossibleOrRoutingChangingRequestIsRefusedWithTheReason) {
  const ModelConfig mix = MoeModelConfig({true, false, false}, {});
  const ModelConfig st = MoeModelConfig({true, true, false}, {RouterType::kSt, false});
  auto refused = [](const ModelConfig& cfg, int64_t e, int64_t k, ScaleOutOptions o,
                    const std::string& needle) {
    o.experts = e;
    o.top_k = k;
    auto p = PlanScaleOut(cfg, o);
    ASSERT_FALSE(p.ok()) << needle;
    EXPECT_NE(p.status().message().find(needle), std::string::npos) << p.status().message();
    EXPECT_EQ(p.status().message().find('\n'), std::string::npos);
  };
  refused(mix, 1, 1, {}, "at least 2");
  refused(mix, 4, 2, {}, "already an MoE with 4 experts");  // no growth
  refused(mix, 2, 2, {}, "already an MoE with 4 experts");
  refused(mix, 6, 3, {}, "not a multiple");
  refused(mix, 8, 9, {}, "--top-k");
  refused(mix, 8, 1, {}, "no gradient");
  ScaleOutOptions o;
  o.router = RouterType::kSt;
  refused(mix, 8, 4, o, "--router st");
  o = {};
  o.granularity = 2;
  refused(mix, 8, 4, o, "--granularity");
  o = {};
  o.shared_expert = true;
  refused(mix, 8, 4, o, "--shared-experts");
  o = {};
  o.format = Architecture::kQwen2Moe;
  refused(mix, 8, 4, o, "--format");
  o = {};
  o.capacity_factor = 1.5;
  refused(mix, 8, 4, o, "--capacity-factor");
  o = {};
  o.every = 2;
  refused(mix, 8, 4, o, "--moe-every");
  o = {};
  o.router_std = 0.1;
  refused(mix, 8, 4, o, "--router-init-std");
  o = {};
  o.router_noise = -1;
  refused(mix, 8, 4, o, "--router-noise");
  // st routing with top-1 has a router gradient, so k = 1 is allowed there (and not exact).
  ScaleOutOptions ok;
  ok.experts = 8;
  ok.top_k = 1;
  auto p = PlanScaleOut(st, ok);
  ASSERT_TRUE(p.ok()) << p.status().message();
  EXPECT_FALSE(p->exact());
  // A dense source needs --top-k and takes no --router-noise.
  const ModelConfig dense = TinyConfig({true, false, false});
  refused(dense, 4, 0, {}, "--top-k is required");
  o = {};
  o.router_noise = 0.1;
  refused(dense, 4, 2, o, "--router-noise");
}

}  // namespace
}  // namespace escale::surgery
