#include "eval/savings.h"

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace escale {

namespace {

std::string Sci(double v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

// The point at fraction u in log-FLOPs from a to b; seconds and tokens follow FLOPs linearly
// (they are proportional to FLOPs within one stage).
CurvePoint Between(const CurvePoint& a, const CurvePoint& b, double u) {
  CurvePoint p;
  // From a point at zero FLOPs (a starting model) the log axis has no left end: linear there.
  p.flops = a.flops > 0 ? std::exp(std::log(a.flops) + u * (std::log(b.flops) - std::log(a.flops)))
                        : a.flops + u * (b.flops - a.flops);
  const double v = b.flops > a.flops ? (p.flops - a.flops) / (b.flops - a.flops) : 1.0;
  p.seconds = a.seconds + v * (b.seconds - a.seconds);
  p.tokens = a.tokens + v * (b.tokens - a.tokens);
  p.loss = a.loss + u * (b.loss - a.loss);
  return p;
}

std::optional<double> Ratio(double num, double den) {
  if (!(den > 0) || !std::isfinite(num) || !std::isfinite(den)) return std::nullopt;
  return num / den;
}

}  // namespace

Status ValidateCurve(const Curve& c, const std::string& what) {
  if (c.empty()) return InvalidArgument(what + " has no validation point");
  for (size_t i = 0; i < c.size(); ++i) {
    const CurvePoint& p = c[i];
    const std::string at = what + ", point " + std::to_string(i);
    if (!std::isfinite(p.flops) || !std::isfinite(p.seconds) || !std::isfinite(p.tokens) ||
        !std::isfinite(p.loss))
      return InvalidArgument(at + ": a value is not finite (a diverged run cannot be compared)");
    if (!(p.flops > 0)) return InvalidArgument(at + ": FLOPs must be positive");
    if (i > 0 &&
        (p.flops < c[i - 1].flops || p.seconds < c[i - 1].seconds || p.tokens < c[i - 1].tokens))
      return InvalidArgument(at + ": FLOPs, seconds and tokens must not decrease along a curve");
  }
  return Status::Ok();
}

Curve LowerEnvelope(const std::vector<Curve>& curves) {
  Curve all;
  for (const Curve& c : curves) all.insert(all.end(), c.begin(), c.end());
  std::stable_sort(all.begin(), all.end(), [](const CurvePoint& a, const CurvePoint& b) {
    return a.flops < b.flops || (a.flops == b.flops && a.loss < b.loss);
  });
  Curve env;
  for (const CurvePoint& p : all)
    if (env.empty() || p.loss < env.back().loss) env.push_back(p);
  // Seconds (and tokens) are each run's own measurements: a branch that ran on a quieter machine
  // can reach more FLOPs in fewer seconds than the run before it on the envelope. The time to a
  // point is then the least time any later point of the envelope took (a run that got at least
  // this far did it that fast): monotone, and never in EfficientScale's favour.
  for (size_t i = env.size(); i-- > 1;) {
    env[i - 1].seconds = std::min(env[i - 1].seconds, env[i].seconds);
    env[i - 1].tokens = std::min(env[i - 1].tokens, env[i].tokens);
  }
  return env;
}

std::string Reach::Describe() const {
  return reached
             ? "reached at " + Sci(at.flops) + " FLOPs"
             : "not reached within " + Sci(max_flops) + " FLOPs (best loss " + Sci(best_loss) + ")";
}

Reach FirstReach(const Curve& c, double target_loss) {
  Reach r;
  if (c.empty()) return r;
  r.max_flops = c.back().flops;
  r.best_loss = c.front().loss;
  for (const CurvePoint& p : c) r.best_loss = std::min(r.best_loss, p.loss);
  for (size_t i = 0; i < c.size(); ++i) {
    if (!(c[i].loss <= target_loss)) continue;
    r.reached = true;
    if (i == 0 || c[i - 1].loss == c[i].loss) {
      r.at = c[i];
    } else {
      const double u = (c[i - 1].loss - target_loss) / (c[i - 1].loss - c[i].loss);
      r.at = Between(c[i - 1], c[i], u);
      r.at.loss = target_loss;
    }
    return r;
  }
  return r;
}

std::optional<double> LossAt(const Curve& c, double flops) {
  if (c.empty() || !(flops >= c.front().flops) || !(flops <= c.back().flops)) return std::nullopt;
  for (size_t i = 1; i < c.size(); ++i) {
    if (flops > c[i].flops) continue;
    const double span = std::log(c[i].flops) - std::log(c[i - 1].flops);
    const double u = span > 0 ? (std::log(flops) - std::log(c[i - 1].flops)) / span : 1.0;
    return c[i - 1].loss + u * (c[i].loss - c[i - 1].loss);
  }
  return c.back().loss;
}

Result<SavingsFigures> CompareAtEqualLoss(const Curve& arm, const Curve& baseline,
                                          double preparation_flops, double preparation_seconds) {
  ESCALE_RETURN_IF_ERROR(ValidateCurve(arm, "the EfficientScale curve"));
  ESCALE_RETURN_IF_ERROR(ValidateCurve(baseline, "the baseline curve"));
  if (!(preparation_flops >= 0) || !(preparation_seconds >= 0) ||
      preparation_flops >= arm.back().flops)
    return InvalidArgument("the preparation phase's cost must be >= 0 and below the arm's total");
  SavingsFigures s;
  s.preparation_flops = preparation_flops;
  s.preparation_seconds = preparation_seconds;
  s.arm_final_loss = arm.back().loss;
  s.arm_flops = arm.back().flops;
  s.arm_seconds = arm.back().seconds;
  s.baseline_final_loss = baseline.back().loss;
  s.target_is_baseline_final = s.baseline_final_loss >= s.arm_final_loss;
  s.target_loss = std::max(s.baseline_final_loss, s.arm_final_loss);
  s.arm_reach = FirstReach(arm, s.target_loss);
  s.baseline_reach = FirstReach(baseline, s.target_loss);
  if (s.arm_reach.reached && s.baseline_reach.reached) {
    const CurvePoint &a = s.arm_reach.at, &b = s.baseline_reach.at;
    s.reached_in_preparation = preparation_flops > 0 && a.flops <= preparation_flops;
    s.compute_with_preparation = Ratio(b.flops, a.flops);
    s.time_with_preparation = Ratio(b.seconds, a.seconds);
    s.compute_without_preparation = Ratio(b.flops, a.flops - preparation_flops);
    s.time_without_preparation = Ratio(b.seconds, a.seconds - preparation_seconds);
  }
  if (const auto at = LossAt(baseline, s.arm_flops))
    s.loss_gap_at_equal_flops = s.arm_final_loss - *at;
  return s;
}

}  // namespace escale
