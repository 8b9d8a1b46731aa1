// fp32 routing (decisions, weights, capacity dropping per sequence), router losses and their
// backward, and the fused output loss, against the fp64 reference.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include "ops/cpu/fast_loss.h"
#include "ops/cpu/fast_routing.h"
#include "ops/cpu/reference_backward.h"
#include "ops/cpu/reference_losses.h"
#include "ops/cpu/reference_routing.h"

namespace escale::ops {
namespace {

size_t Z(int64_t i) { return static_cast<size_t>(i); }

struct Routed {
  std::vector<int32_t> expert, scratch;
  std::vector<float> prob, softmax;
  std::vector<uint8_t> kept;
  std::vector<int64_t> load;
  int64_t dropped = 0;
  fast::RoutingBuffers rb() { return {expert.data(), prob.data(), kept.data(), softmax.data(), load.data()}; }
};

Routed Route(const std::vector<float>& logits, int64_t B, int64_t T, const fast::RouterSpec& r) {
  Routed o;
  const int64_t N = B * T, k = r.top_k, E = r.experts;
  o.expert.assign(Z(N * k), -5);
  o.prob.assign(Z(N * k), std::numeric_limits<float>::quiet_NaN());
  o.kept.assign(Z(N * k), 9);
  o.softmax.assign(Z(N * E), std::numeric_limits<float>::quiet_NaN());
  o.load.assign(Z(E), -5);
  o.scratch.assign(Z(T * k + E + 1), -5);
  o.dropped = fast::RouteTokens(logits.data(), N, T, r, o.rb(), o.scratch.data());
  return o;
}

void CheckAgainstReference(fast::RouterSpec r, uint32_t seed) {
  SCOPED_TRACE(testing::Message() << "mixtral=" << r.mixtral << " cf=" << r.capacity_factor
                                  << " by_position=" << r.drop_by_position);
  const int64_t B = 3, T = 11, E = r.experts, k = r.top_k, N = B * T;
  std::mt19937 g(seed);
  std::uniform_real_distribution<float> u(-2, 2);
  std::vector<float> logits(Z(N * E));
  for (float& x : logits) x = u(g);
  logits[3] = logits[4];  // an exact tie: the lower expert index must win
  Routed o = Route(logits, B, T, r);
  ref::RoutingParams p{E, k, r.mixtral, r.capacity_factor, r.drop_by_position};
  std::vector<double> dweight(Z(N * k));
  for (double& x : dweight) x = u(g);
  std::vector<float> dwf(dweight.begin(), dweight.end());
  std::vector<double> dl_ref(Z(N * E), 0.0);
  std::vector<int64_t> load(Z(E), 0);
  int64_t dropped = 0;
  for (int64_t b = 0; b < B; ++b) {
    std::vector<double> lb(logits.begin() + b * T * E, logits.begin() + (b + 1) * T * E);
    const ref::Routing rr = ref::RouteTokens(lb.data(), T, p);
    for (int64_t a = 0; a < T * k; ++a) {
      const size_t fa = Z(b * T * k + a);
      EXPECT_EQ(o.expert[fa], rr.expert[Z(a)]) << "assignment " << fa;
      EXPECT_EQ(o.kept[fa], rr.kept[Z(a)]) << "assignment " << fa;
      EXPECT_NEAR(o.kept[fa] ? o.prob[fa] : 0.0f, rr.weight[Z(a)], 1e-6);
      ++load[Z(rr.expert[Z(a)])];
      dropped += rr.kept[Z(a)] ? 0 : 1;
    }
    ref::RoutingWeightsBackward(lb.data(), rr, p, dweight.data() + b * T * k, dl_ref.data() + b * T * E);
  }
  EXPECT_EQ(o.load, load);
  EXPECT_EQ(o.dropped, dropped);
  if (r.capacity_factor > 0) {
    EXPECT_GT(dropped, 0) << "the case should drop something";
  }

  // Router losses and their backward on top of the routing-weight gradient.
  const std::vector<double> ld(logits.begin(), logits.end());
  const fast::RouterLossValues v = fast::ComputeRouterLosses(logits.data(), N, r, o.rb());
  EXPECT_NEAR(v.aux, ref::AuxLoss(ld.data(), N, E, k, load), 1e-6);
  EXPECT_NEAR(v.router_max_z, ref::RouterMaxZLoss(ld.data(), N, E), 1e-6);
  EXPECT_NEAR(v.router_z, ref::RouterZLoss(ld.data(), N, E), 1e-5);
  const fast::RouterGradScales gs{0.3, 0.2, 0.1};
  ref::AuxLossBackward(ld.data(), N, E, k, load, gs.aux, dl_ref.data());
  ref::RouterMaxZLossBackward(ld.data(), N, E, gs.router_max_z, dl_ref.data());
  ref::RouterZLossBackward(ld.data(), N, E, gs.router_z, dl_ref.data());
  std::vector<float> dl(Z(N * E), std::numeric_limits<float>::quiet_NaN());
  fast::RouterBackward(logits.data(), N, r, o.rb(), dwf.data(), gs, dl.data());
  for (size_t i = 0; i < dl.size(); ++i) EXPECT_NEAR(dl[i], dl_ref[i], 2e-6) << i;
}

TEST(FastRouting, MixtralDroplessMatchesReference) { CheckAgainstReference({6, 2, true, 0.0, false}, 1); }
TEST(FastRouting, StDroplessMatchesReference) { CheckAgainstReference({6, 3, false, 0.0, false}, 2); }
TEST(FastRouting, MixtralCapacityByProbabilityMatchesReference) { CheckAgainstReference({4, 2, true, 0.5, false}, 3); }
TEST(FastRouting, StCapacityByPositionMatchesReference) { CheckAgainstReference({4, 2, false, 0.7, true}, 4); }

TEST(FastRouting, CapacityIsPerSequence) {
  const fast::RouterSpec r{4, 2, true, 1.0, false};
  EXPECT_EQ(fast::ExpertCapacityPerSequence(r, 10), 5);  // ceil(1.0 * 10 * 2 / 4)
  EXPECT_EQ(fast::ExpertCapacityPerSequence({4, 2, true, 0.0, false}, 10), -1);
  // The same number as the reference, also where k and E are both multiplied by 5 (see OpGrad).
  EXPECT_EQ(fast::ExpertCapacityPerSequence({20, 5, true, 0.1 * 28, false}, 10), 8);
  EXPECT_EQ(fast::ExpertCapacityPerSequence({4, 1, true, 0.1 * 28, false}, 10), 8);
  // Every token prefers expert 0: with capacity 5 per sequence of 10, each of 2 sequences keeps 5.
  std::vector<float> logits;
  for (int t = 0; t < 20; ++t) logits.insert(logits.end(), {3.0f, 0.1f * float(t % 7), -1.0f, -2.0f});
  Routed o = Route(logits, 2, 10, r);
  int64_t kept0 = 0;
  for (int t = 0; t < 20; ++t) kept0 += (o.expert[Z(t * 2)] == 0 && o.kept[Z(t * 2)]) ? 1 : 0;
  EXPECT_EQ(kept0, 10);
  EXPECT_EQ(o.load[0], 20);
}

TEST(FastLoss, FusedOutputLossMatchesReference) {
  const int64_t T = 9, V = 53;
  std::mt19937 g(5);
  std::uniform_real_distribution<float> u(-4, 4);
  std::vector<float> logits(Z(T * V));
  for (float& x : logits) x = u(g);
  std::vector<int32_t> targets(Z(T));
  for (int32_t& t : targets) t = static_cast<int32_t>(g() % V);
  targets[2] = -1;
  targets[7] = -100;
  const std::vector<double> ld(logits.begin(), logits.end());
  std::vector<double> rows(Z(3 * T), std::numeric_limits<double>::quiet_NaN());
  fast::OutputLossGrad og{true, 0.5, 0.01, 0.02};
  std::vector<float> work = logits;
  const fast::OutputLossValues v = fast::OutputLossForwardBackward(work.data(), T, V, targets.data(), og, rows.data());
  EXPECT_EQ(v.counted, 7);
  EXPECT_NEAR(v.ce, ref::CrossEntropyMean(ld.data(), T, V, targets.data()), 1e-6);
  EXPECT_NEAR(v.output_z, ref::OutputZLoss(ld.data(), T, V, targets.data()), 1e-5);
  EXPECT_NEAR(v.output_max_z, ref::OutputMaxZLoss(ld.data(), T, V, targets.data()), 1e-5);
  std::vector<double> want(Z(T * V), 0.0);
  ref::CrossEntropyMeanBackward(ld.data(), T, V, targets.data(), 0.5, want.data());
  ref::OutputZLossBackward(ld.data(), T, V, targets.data(), 0.5 * 0.01, want.data());
  ref::OutputMaxZLossBackward(ld.data(), T, V, targets.data(), 0.5 * 0.02, want.data());
  for (size_t i = 0; i < want.size(); ++i) EXPECT_NEAR(work[i], want[i], 1e-7) << i;
  // Evaluation leaves the logits alone.
  std::vector<float> keep = logits;
  fast::OutputLossForwardBackward(keep.data(), T, V, targets.data(), {}, rows.data());
  EXPECT_EQ(keep, logits);
}

}  // namespace
}  // namespace escale::ops
