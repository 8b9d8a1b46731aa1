// Test-only faults (--inject-nan-steps, --inject-spike-steps, --inject-drift-steps): they let the
// tests drive the fault policy and the replica check through a real run. The trainer holds one only
// when a flag asks for it and calls it at three points of a step; nothing else of it is in the
// loop.
#pragma once

#include <cstdint>
#include <set>
#include <span>
#include <string>

#include "core/status.h"
#include "model/train_model.h"
#include "train/train_options.h"

namespace escale {

class FaultInjection {
 public:
  // Empty when no --inject-* flag is set.
  static Result<FaultInjection> FromOptions(const TrainOptions& o);
  bool empty() const { return nan_.empty() && spike_.empty() && drift_.empty(); }

  // After the backward passes, before the gradients are reduced: rank 0 alone poisons one gradient,
  // so the sum carries the NaN to every rank, which must all skip the step.
  void AfterBackward(int64_t step, int rank, std::span<TrainModel::Param> params) const;
  // The loss the fault policy judges (a spike is the real loss times ten).
  double JudgedLoss(int64_t step, double loss) const;
  // After the update: the last rank's weights drift, which the replica check must catch.
  void AfterUpdate(int64_t step, int rank, int world, std::span<TrainModel::Param> params) const;

 private:
  std::set<int64_t> nan_, spike_, drift_;
};

}  // namespace escale
