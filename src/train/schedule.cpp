#include "train/schedule.h"

#include <algorithm>
#include <cmath>
#include <numbers>

namespace escale {

Result<ScheduleKind> ParseScheduleKind(const std::string& name) {
  if (name == "cosine") return ScheduleKind::kCosine;
  if (name == "wsd") return ScheduleKind::kWsd;
  if (name == "constant") return ScheduleKind::kConstant;
  return InvalidArgument("unknown schedule '" + name + "'; choose cosine, wsd or constant");
}

Status ScheduleConfig::Validate() const {
  if (!(lr > 0) || !std::isfinite(lr)) return InvalidArgument("learning rate must be positive");
  if (!(min_lr >= 0) || min_lr > lr) return InvalidArgument("min LR must be between 0 and the learning rate");
  if (total_steps < 1) return InvalidArgument("the number of steps must be at least 1");
  if (warmup_steps < 0 || warmup_steps > total_steps)
    return InvalidArgument("warmup steps must be between 0 and the number of steps");
  if (!(decay_fraction >= 0 && decay_fraction <= 1)) return InvalidArgument("WSD decay fraction must be in [0, 1]");
  return Status::Ok();
}

double LearningRate(const ScheduleConfig& s, int64_t step) {
  if (step < s.warmup_steps) return s.lr * static_cast<double>(step + 1) / static_cast<double>(s.warmup_steps);
  const int64_t span = std::max<int64_t>(1, s.total_steps - s.warmup_steps);
  const double progress = std::clamp(static_cast<double>(step - s.warmup_steps) / static_cast<double>(span), 0.0, 1.0);
  switch (s.kind) {
    case ScheduleKind::kConstant:
      return s.lr;
    case ScheduleKind::kCosine:
      return s.min_lr + 0.5 * (s.lr - s.min_lr) * (1.0 + std::cos(std::numbers::pi * progress));
    case ScheduleKind::kWsd: {
      const double decay_start = 1.0 - s.decay_fraction;
      if (progress <= decay_start || s.decay_fraction == 0) return s.lr;
      const double t = (progress - decay_start) / s.decay_fraction;
      return s.lr + (s.min_lr - s.lr) * t;
    }
  }
  return s.lr;
}

}  // namespace escale
