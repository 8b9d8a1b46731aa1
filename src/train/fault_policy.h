// Training fault policy: a step whose loss or gradient norm is not finite, or whose loss is a
// spike (z-score over a window of recent accepted losses), is skipped; too many skips in a row
// stop the run. Kept free of fast-math: every non-finite value is an explicit branch.
#pragma once

#include <cstdint>
#include <deque>
#include <string>

namespace escale {

struct FaultPolicyConfig {
  int64_t window = 100;         // accepted losses the z-score is computed over
  int64_t min_history = 20;     // no spike verdicts before this many accepted steps
  double spike_zscore = 6.0;    // 0 disables spike detection
  int64_t max_consecutive = 5;  // this many skips in a row stop training
};

enum class StepVerdict { kAccept, kNonFiniteLoss, kNonFiniteGrad, kSpike };
std::string_view StepVerdictName(StepVerdict v);

class FaultDetector {
 public:
  explicit FaultDetector(FaultPolicyConfig c = {}) : c_(c) {}
  // Judges a step; call Record() with the verdict afterwards.
  StepVerdict Judge(double loss, double grad_norm) const;
  // Updates the history (accepted losses) and the run of consecutive skips.
  void Record(StepVerdict v, double loss);
  bool TooManySkips() const { return consecutive_ >= c_.max_consecutive; }
  int64_t consecutive_skips() const { return consecutive_; }
  int64_t total_skips() const { return total_skips_; }
  double last_zscore() const { return last_z_; }

  // State for checkpoints (resume must judge the next step exactly as an unbroken run would).
  const std::deque<double>& history() const { return history_; }
  void Restore(std::deque<double> history, int64_t consecutive, int64_t total) {
    history_ = std::move(history);
    consecutive_ = consecutive;
    total_skips_ = total;
  }

 private:
  FaultPolicyConfig c_;
  std::deque<double> history_;
  int64_t consecutive_ = 0;
  int64_t total_skips_ = 0;
  mutable double last_z_ = 0;
};

}  // namespace escale
