// Savings at equal loss, measured: validation loss against cumulative training compute for each
// arm of a comparison (EfficientScale, the from-scratch baseline), read by interpolation.
//
// The method saves compute, not tokens, so every comparison here is on the FLOPs (or CPU seconds)
// axis: "how much compute did the baseline need to reach the loss EfficientScale ended at" and
// "how much did EfficientScale need to reach the baseline's final loss". Between two measured
// points the loss is interpolated linearly in log(FLOPs), the axis on which training curves are
// close to straight; nothing is extrapolated beyond the last point: a target that a curve never
// reaches is reported as "not reached within N FLOPs", a lower bound on the saving, never a number
// invented past the data.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "core/status.h"

namespace escale {

// One measurement: cumulative cost up to the point and the validation loss there.
struct CurvePoint {
  double flops = 0;    // training FLOPs so far (model FLOPs, forward + backward)
  double seconds = 0;  // training seconds so far (same machine, same threads for every arm)
  double tokens = 0;   // training tokens so far
  double loss = 0;     // validation loss at this point
};

// Points in increasing FLOPs (equal FLOPs allowed: the later point wins).
using Curve = std::vector<CurvePoint>;

// Checks that a curve is usable: at least one point, every field finite, FLOPs, seconds and
// tokens non-decreasing, FLOPs > 0 (log axis). `what` names the curve in the message.
Status ValidateCurve(const Curve& c, const std::string& what);

// The best loss reachable with at most x FLOPs by any of `curves`: the points of all curves in
// FLOPs order, each kept only if its loss is below every point before it. This is the fair
// "scratch" reference when each curve is one fully decayed run (or a decay branch) at its own
// budget: a run at budget x could have stopped at any of the cheaper runs' points. Seconds and
// tokens are made non-decreasing by taking, at each point, the least of that and every later point
// (runs measured under different machine load need not agree on the time axis).
Curve LowerEnvelope(const std::vector<Curve>& curves);

// Where a curve first reaches `target_loss` (loss <= target), interpolated between the two points
// that bracket the crossing (log FLOPs, linear seconds and tokens against log FLOPs).
struct Reach {
  bool reached = false;
  CurvePoint at;         // the interpolated crossing when reached
  double max_flops = 0;  // the curve's last FLOPs (the "within N FLOPs" bound when not reached)
  double best_loss = 0;  // the lowest loss on the curve
  std::string Describe() const;  // "reached at 1.2e12 FLOPs" / "not reached within 3.4e12 FLOPs"
};
Reach FirstReach(const Curve& c, double target_loss);

// Loss of a curve at `flops`, interpolated (log FLOPs); nullopt outside the measured range.
std::optional<double> LossAt(const Curve& c, double flops);

// One arm against a baseline curve (usually a LowerEnvelope) at equal loss. The target is the
// loss both reach: the worse of the two final losses (the baseline's final is its envelope's
// best). Savings = the baseline's cost to the target / the arm's cost to it. The arm's curve
// includes its preparation phase (the small model), whose cost is given: "with preparation"
// charges it to the arm (AquilaMoE's Table 6 does), "without" treats the small model as given.
struct SavingsFigures {
  double arm_final_loss = 0, baseline_final_loss = 0;
  double arm_flops = 0, arm_seconds = 0;  // the whole arm, preparation included
  double preparation_flops = 0, preparation_seconds = 0;
  double target_loss = 0;
  bool target_is_baseline_final = false;  // else the arm's final loss (the arm ended worse)
  Reach arm_reach, baseline_reach;        // each curve reaching the target
  // The arm was at the target already during its preparation phase: the small model alone
  // matched the baseline, "without preparation" costs nothing and has no finite figure.
  bool reached_in_preparation = false;
  std::optional<double> compute_with_preparation, compute_without_preparation;
  std::optional<double> time_with_preparation, time_without_preparation;
  // The arm's final loss minus the baseline's loss at the arm's total FLOPs (negative: the arm
  // is ahead); absent when the baseline's curve does not cover those FLOPs.
  std::optional<double> loss_gap_at_equal_flops;
};

Result<SavingsFigures> CompareAtEqualLoss(const Curve& arm, const Curve& baseline,
                                          double preparation_flops, double preparation_seconds);

}  // namespace escale
