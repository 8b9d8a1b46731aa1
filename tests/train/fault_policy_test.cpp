#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "train/fault_policy.h"

namespace escale {
namespace {

TEST(FaultPolicy, NonFiniteValuesAreSkipped) {
  FaultDetector d;
  EXPECT_EQ(d.Judge(std::numeric_limits<double>::quiet_NaN(), 1.0), StepVerdict::kNonFiniteLoss);
  EXPECT_EQ(d.Judge(std::numeric_limits<double>::infinity(), 1.0), StepVerdict::kNonFiniteLoss);
  EXPECT_EQ(d.Judge(1.0, std::numeric_limits<double>::quiet_NaN()), StepVerdict::kNonFiniteGrad);
  EXPECT_EQ(d.Judge(1.0, 1.0), StepVerdict::kAccept);
}

TEST(FaultPolicy, SpikeAfterHistoryAndStopAfterTooMany) {
  FaultDetector d({.window = 50, .min_history = 10, .spike_zscore = 6.0, .max_consecutive = 3});
  for (int i = 0; i < 30; ++i) {
    const double loss = 3.0 + 0.01 * std::sin(i);
    ASSERT_EQ(d.Judge(loss, 1.0), StepVerdict::kAccept);
    d.Record(StepVerdict::kAccept, loss);
  }
  EXPECT_EQ(d.Judge(3.005, 1.0), StepVerdict::kAccept);
  EXPECT_EQ(d.Judge(5.0, 1.0), StepVerdict::kSpike);
  EXPECT_GT(d.last_zscore(), 6.0);
  for (int i = 0; i < 3; ++i) {
    EXPECT_FALSE(d.TooManySkips());
    d.Record(StepVerdict::kSpike, 5.0);
  }
  EXPECT_TRUE(d.TooManySkips());
  d.Record(StepVerdict::kAccept, 3.0);
  EXPECT_FALSE(d.TooManySkips());
  EXPECT_EQ(d.total_skips(), 3);
}

TEST(FaultPolicy, NoSpikeVerdictBeforeMinHistory) {
  FaultDetector d({.window = 50, .min_history = 10, .spike_zscore = 6.0, .max_consecutive = 3});
  for (int i = 0; i < 5; ++i) d.Record(StepVerdict::kAccept, 3.0 + 0.01 * i);
  EXPECT_EQ(d.Judge(100.0, 1.0), StepVerdict::kAccept);
}

}  // namespace
}  // namespace escale
