#include "train/fault_injection.h"

#include <limits>

namespace escale {

Result<FaultInjection> FaultInjection::FromOptions(const TrainOptions& o) {
  FaultInjection f;
  ESCALE_ASSIGN_OR_RETURN(f.nan_, ParseStepList(o.inject_nan_steps, "--inject-nan-steps"));
  ESCALE_ASSIGN_OR_RETURN(f.spike_, ParseStepList(o.inject_spike_steps, "--inject-spike-steps"));
  ESCALE_ASSIGN_OR_RETURN(f.drift_, ParseStepList(o.inject_drift_steps, "--inject-drift-steps"));
  return f;
}

void FaultInjection::AfterBackward(int64_t step, int rank,
                                   std::span<TrainModel::Param> params) const {
  if (nan_.count(step) && rank == 0) params[0].grad[0] = std::numeric_limits<float>::quiet_NaN();
}

double FaultInjection::JudgedLoss(int64_t step, double loss) const {
  return spike_.count(step) ? loss * 10.0 : loss;
}

void FaultInjection::AfterUpdate(int64_t step, int rank, int world,
                                 std::span<TrainModel::Param> params) const {
  if (drift_.count(step) && world > 1 && rank == world - 1) params[0].value[0] += 1e-3f;
}

}  // namespace escale
