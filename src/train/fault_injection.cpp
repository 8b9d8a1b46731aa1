#include "train/fault_injection.h"

#include <cstdlib>
#include <limits>
#include <sstream>

namespace escale {

Result<std::set<int64_t>> ParseStepList(const std::string& text, const char* flag) {
  std::set<int64_t> out;
  std::stringstream ss(text);
  for (std::string item; std::getline(ss, item, ',');) {
    if (item.empty()) continue;
    char* end = nullptr;
    const long long v = std::strtoll(item.c_str(), &end, 10);
    if (*end != '\0' || v < 0)
      return InvalidArgument(std::string(flag) + " takes step numbers, not '" + item + "'");
    out.insert(v);
  }
  return out;
}

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
