// Savings at equal loss: interpolation of loss-vs-FLOPs curves, the lower envelope of decayed
// runs, and the with/without-preparation arithmetic, checked against closed forms.
#include "eval/savings.h"

#include <gtest/gtest.h>

#include <cmath>

namespace escale {
namespace {

// A curve that is exactly linear in log FLOPs: loss = a - b ln F; seconds = F / rate.
Curve LogLinear(double a, double b, double rate, std::initializer_list<double> flops) {
  Curve c;
  for (double f : flops) c.push_back({f, f / rate, f / 1e6, a - b * std::log(f)});
  return c;
}

TEST(Savings, InterpolationIsExactOnLogLinearCurves) {
  const double a = 20, b = 0.5;
  const Curve c = LogLinear(a, b, 1e9, {1e10, 1e11, 1e12, 1e13});
  for (double target : {7.9, 7.0, 6.2, 5.1}) {
    const Reach r = FirstReach(c, target);
    ASSERT_TRUE(r.reached) << target;
    const double expect = std::exp((a - target) / b);
    EXPECT_NEAR(r.at.flops / expect, 1.0, 1e-12) << target;
    EXPECT_NEAR(r.at.seconds / (expect / 1e9), 1.0, 1e-12) << target;
    EXPECT_DOUBLE_EQ(r.at.loss, target);
    const auto l = LossAt(c, expect);
    ASSERT_TRUE(l.has_value());
    EXPECT_NEAR(*l, target, 1e-12);
  }
  // Above the first point's loss: reached at once, at the first point (never extrapolated back).
  const Reach first = FirstReach(c, 100);
  ASSERT_TRUE(first.reached);
  EXPECT_DOUBLE_EQ(first.at.flops, 1e10);
  EXPECT_FALSE(LossAt(c, 5e9).has_value());
  EXPECT_FALSE(LossAt(c, 2e13).has_value());
}

TEST(Savings, NotReachedSaysWithinHowMuch) {
  const Curve c = LogLinear(20, 0.5, 1e9, {1e10, 4e12});
  const Reach r = FirstReach(c, 1.0);
  EXPECT_FALSE(r.reached);
  EXPECT_DOUBLE_EQ(r.max_flops, 4e12);
  EXPECT_NEAR(r.best_loss, 20 - 0.5 * std::log(4e12), 1e-12);
  EXPECT_EQ(r.Describe().rfind("not reached within 4e+12 FLOPs", 0), 0u) << r.Describe();
}

TEST(Savings, FirstCrossingWinsOnANonMonotoneCurve) {
  // A loss bump (a re-warmed stage) after the first crossing does not move the crossing.
  Curve c = {{1e10, 1, 1, 6.0}, {2e10, 2, 2, 5.0}, {3e10, 3, 3, 5.5}, {4e10, 4, 4, 4.0}};
  const Reach r = FirstReach(c, 5.2);
  ASSERT_TRUE(r.reached);
  EXPECT_GT(r.at.flops, 1e10);
  EXPECT_LT(r.at.flops, 2e10);
  // 0.8 of the way from 6.0 to 5.0, in log FLOPs.
  EXPECT_NEAR(std::log(r.at.flops), std::log(1e10) + 0.8 * std::log(2.0), 1e-12);
}

TEST(Savings, LowerEnvelopeKeepsTheBestLossAtEachBudget) {
  // Three decayed runs (one point each, as decay branches give) and one longer curve.
  const Curve small = {{1e10, 1, 1, 6.0}}, mid = {{2e10, 2, 2, 5.2}}, bad = {{3e10, 3, 3, 5.4}};
  const Curve full = {{4e10, 4, 4, 5.3}, {8e10, 8, 8, 4.9}};
  const Curve env = LowerEnvelope({full, bad, small, mid});
  ASSERT_EQ(env.size(), 3u);
  EXPECT_DOUBLE_EQ(env[0].loss, 6.0);
  EXPECT_DOUBLE_EQ(env[1].loss, 5.2);
  EXPECT_DOUBLE_EQ(env[2].loss, 4.9);  // 5.4 and 5.3 are worse than what 2e10 FLOPs already gave
  for (size_t i = 1; i < env.size(); ++i) {
    EXPECT_GT(env[i].flops, env[i - 1].flops);
    EXPECT_LT(env[i].loss, env[i - 1].loss);
  }
  // Equal FLOPs: the lower loss is kept.
  const Curve tie = LowerEnvelope({{{1e10, 1, 1, 5.0}}, {{1e10, 1, 1, 4.5}}});
  ASSERT_EQ(tie.size(), 1u);
  EXPECT_DOUBLE_EQ(tie[0].loss, 4.5);
}

// Runs measured under different machine load: a decay branch (3e10 FLOPs in 2.5 s) was faster
// than the stable run was at 2e10 FLOPs (3 s). The envelope's time axis takes the least later
// time, stays non-decreasing, and so remains a valid curve for the savings arithmetic.
TEST(Savings, EnvelopeOfRunsTimedUnderDifferentLoadIsMonotoneInTime) {
  const Curve stable = {{1e10, 1, 1, 6.0}, {2e10, 3, 2, 5.5}, {4e10, 6, 4, 5.2}};
  const Curve branch = {{3e10, 2.5, 3, 5.0}};
  const Curve env = LowerEnvelope({stable, branch});
  ASSERT_EQ(env.size(), 3u);
  EXPECT_DOUBLE_EQ(env[1].seconds, 2.5);  // 3 s, lowered to the branch's later, faster point
  EXPECT_DOUBLE_EQ(env[2].seconds, 2.5);
  EXPECT_DOUBLE_EQ(env[0].seconds, 1.0);
  EXPECT_TRUE(ValidateCurve(env, "envelope").ok());
  const Curve arm = {{5e9, 0.5, 1, 6.5}, {1e10, 1, 2, 5.0}};
  auto s = CompareAtEqualLoss(arm, env, 0, 0);
  ASSERT_TRUE(s.ok()) << s.status().message();
  ASSERT_TRUE(s->time_with_preparation.has_value());
  EXPECT_DOUBLE_EQ(*s->time_with_preparation, 2.5);  // never more than the baseline's fastest
}

TEST(Savings, WithAndWithoutPreparationByHand) {
  // Baseline: loss = 20 - 0.5 ln F from 1e10 to 1e12 FLOPs at 1e9 FLOP/s; final loss at 1e12.
  const Curve base = LogLinear(20, 0.5, 1e9, {1e10, 1e11, 1e12});
  const double target = 20 - 0.5 * std::log(1e12);
  // Arm: preparation up to 1e11 FLOPs (100 s), then it reaches the target at 3e11, ends at 4e11
  // below it: the target is the baseline's final loss, the worse of the two.
  Curve arm = {{5e10, 50, 1, target + 2},
               {1e11, 100, 2, target + 1},
               {3e11, 300, 3, target},
               {4e11, 400, 4, target - 0.1}};
  auto s = CompareAtEqualLoss(arm, base, 1e11, 100);
  ASSERT_TRUE(s.ok()) << s.status().message();
  EXPECT_TRUE(s->target_is_baseline_final);
  EXPECT_DOUBLE_EQ(s->target_loss, target);
  ASSERT_TRUE(s->arm_reach.reached && s->baseline_reach.reached);
  EXPECT_NEAR(s->baseline_reach.at.flops, 1e12, 1e-3);
  EXPECT_NEAR(s->arm_reach.at.flops, 3e11, 1e-3);
  ASSERT_TRUE(s->compute_with_preparation && s->compute_without_preparation);
  EXPECT_NEAR(*s->compute_with_preparation, 1e12 / 3e11, 1e-12);
  EXPECT_NEAR(*s->compute_without_preparation, 1e12 / 2e11, 1e-12);
  EXPECT_NEAR(*s->time_with_preparation, 1000.0 / 300, 1e-12);
  EXPECT_NEAR(*s->time_without_preparation, 1000.0 / 200, 1e-12);
  EXPECT_FALSE(s->reached_in_preparation);
  // At the arm's 4e11 FLOPs the baseline is at 20 - 0.5 ln 4e11.
  ASSERT_TRUE(s->loss_gap_at_equal_flops.has_value());
  EXPECT_NEAR(*s->loss_gap_at_equal_flops, (target - 0.1) - (20 - 0.5 * std::log(4e11)), 1e-12);
}

TEST(Savings, AnArmThatEndsWorseIsComparedAtItsOwnFinalLoss) {
  const Curve base = LogLinear(20, 0.5, 1e9, {1e10, 1e12});       // ends at 6.18
  const Curve arm = {{1e11, 100, 1, 9.0}, {4e12, 4000, 2, 8.0}};  // ends worse, at 8.0
  auto s = CompareAtEqualLoss(arm, base, 1e10, 10);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->target_is_baseline_final);
  EXPECT_DOUBLE_EQ(s->target_loss, 8.0);
  // The arm never reaches the baseline's 6.18: said with the bound, never a number.
  const Reach never = FirstReach(arm, s->baseline_final_loss);
  EXPECT_FALSE(never.reached);
  EXPECT_EQ(never.Describe().rfind("not reached within 4e+12 FLOPs", 0), 0u);
  // The baseline reaches 8.0 at exp(24) FLOPs: the saving is below 1 (the arm costs more).
  ASSERT_TRUE(s->baseline_reach.reached);
  EXPECT_NEAR(s->baseline_reach.at.flops / std::exp(24.0), 1.0, 1e-12);
  ASSERT_TRUE(s->compute_with_preparation.has_value());
  EXPECT_NEAR(*s->compute_with_preparation, std::exp(24.0) / 4e12, 1e-9);
  EXPECT_LT(*s->compute_with_preparation, 1.0);
  EXPECT_NEAR(*s->compute_without_preparation, std::exp(24.0) / (4e12 - 1e10), 1e-9);
  EXPECT_FALSE(s->loss_gap_at_equal_flops.has_value());  // 4e12 is past the baseline's 1e12
}

TEST(Savings, ReachedDuringPreparationHasNoWithoutPreparationFigure) {
  const Curve base = LogLinear(20, 0.5, 1e9, {1e10, 1e12});  // final loss 6.18
  // The small model is below 6.18 at 2e11 FLOPs, inside its 5e11-FLOP preparation stage.
  const Curve arm = {{1e11, 100, 1, 7.0}, {5e11, 500, 2, 5.0}, {8e11, 800, 3, 4.5}};
  auto s = CompareAtEqualLoss(arm, base, 5e11, 500);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->arm_reach.reached);
  EXPECT_TRUE(s->reached_in_preparation);
  EXPECT_LT(s->arm_reach.at.flops, 5e11);
  ASSERT_TRUE(s->compute_with_preparation.has_value());
  EXPECT_GT(*s->compute_with_preparation, 2.0);
  EXPECT_FALSE(s->compute_without_preparation.has_value());
  EXPECT_FALSE(s->time_without_preparation.has_value());
  // Reached after the preparation: not flagged.
  auto later = CompareAtEqualLoss(arm, base, 1e11, 100);
  ASSERT_TRUE(later.ok());
  EXPECT_FALSE(later->reached_in_preparation);
  EXPECT_TRUE(later->compute_without_preparation.has_value());
}

TEST(Savings, RefusesCurvesThatCannotBeCompared) {
  const Curve good = LogLinear(20, 0.5, 1e9, {1e10, 1e12});
  Curve nan_loss = good;
  nan_loss[1].loss = std::nan("");
  Curve backwards = good;
  std::swap(backwards[0].flops, backwards[1].flops);
  Curve zero = good;
  zero[0].flops = 0;
  for (const Curve* bad : {&nan_loss, &backwards, &zero}) {
    EXPECT_FALSE(CompareAtEqualLoss(*bad, good, 0, 0).ok());
    EXPECT_FALSE(CompareAtEqualLoss(good, *bad, 0, 0).ok());
  }
  EXPECT_FALSE(CompareAtEqualLoss({}, good, 0, 0).ok());
  // Preparation costing the whole arm (or more) leaves nothing to compare.
  EXPECT_FALSE(CompareAtEqualLoss(good, good, 1e12, 0).ok());
  EXPECT_FALSE(CompareAtEqualLoss(good, good, -1, 0).ok());
  const auto msg = CompareAtEqualLoss(nan_loss, good, 0, 0).status().message();
  EXPECT_NE(msg.find("not finite"), std::string::npos) << msg;
}

}  // namespace
}  // namespace escale
