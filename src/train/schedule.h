// Learning-rate schedules: linear warmup, then cosine, WSD (warmup-stable-decay) or constant.
#pragma once

#include <cstdint>
#include <string>

#include "core/status.h"

namespace escale {

enum class ScheduleKind { kCosine, kWsd, kConstant };
Result<ScheduleKind> ParseScheduleKind(const std::string& name);

struct ScheduleConfig {
  ScheduleKind kind = ScheduleKind::kCosine;
  double lr = 3e-4;
  double min_lr = 3e-5;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  // WSD only: the last `decay_fraction` of the steps decay linearly from lr to min_lr.
  double decay_fraction = 0.1;
  Status Validate() const;
};

// Learning rate for 0-based `step`. Warmup ramps linearly to lr at step warmup_steps-1
// (step 0 gets lr/warmup_steps, never 0, so the first step already trains).
double LearningRate(const ScheduleConfig& s, int64_t step);

}  // namespace escale
