#include "train/fault_policy.h"

#include <cmath>

namespace escale {

std::string_view StepVerdictName(StepVerdict v) {
  switch (v) {
    case StepVerdict::kAccept: return "accept";
    case StepVerdict::kNonFiniteLoss: return "non-finite loss";
    case StepVerdict::kNonFiniteGrad: return "non-finite gradient";
    case StepVerdict::kSpike: return "loss spike";
  }
  return "?";
}

StepVerdict FaultDetector::Judge(double loss, double grad_norm) const {
  last_z_ = 0;
  if (std::isnan(loss) || std::isinf(loss)) return StepVerdict::kNonFiniteLoss;
  if (std::isnan(grad_norm) || std::isinf(grad_norm)) return StepVerdict::kNonFiniteGrad;
  if (c_.spike_zscore <= 0 || static_cast<int64_t>(history_.size()) < c_.min_history) return StepVerdict::kAccept;
  double mean = 0;
  for (double x : history_) mean += x;
  mean /= static_cast<double>(history_.size());
  double var = 0;
  for (double x : history_) var += (x - mean) * (x - mean);
  var /= static_cast<double>(history_.size() - 1);
  const double sd = std::sqrt(var);
  // A flat history (sd == 0) gives no scale to judge by; only a strictly larger loss is then odd,
  // and we accept it rather than stall on a degenerate window.
  if (!(sd > 0)) return StepVerdict::kAccept;
  last_z_ = (loss - mean) / sd;
  return last_z_ > c_.spike_zscore ? StepVerdict::kSpike : StepVerdict::kAccept;
}

void FaultDetector::Record(StepVerdict v, double loss) {
  if (v == StepVerdict::kAccept) {
    consecutive_ = 0;
    history_.push_back(loss);
    while (static_cast<int64_t>(history_.size()) > c_.window) history_.pop_front();
    return;
  }
  ++consecutive_;
  ++total_skips_;
}

}  // namespace escale
