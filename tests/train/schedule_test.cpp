#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

#include "train/schedule.h"

namespace escale {
namespace {

TEST(Schedule, WarmupThenCosineHitsEndpoints) {
  ScheduleConfig s{ScheduleKind::kCosine, 1e-3, 1e-4, 10, 110, 0.1};
  ASSERT_TRUE(s.Validate().ok());
  EXPECT_DOUBLE_EQ(LearningRate(s, 0), 1e-4);  // lr * 1/10
  EXPECT_DOUBLE_EQ(LearningRate(s, 9), 1e-3);
  EXPECT_DOUBLE_EQ(LearningRate(s, 10), 1e-3);  // cosine at progress 0
  EXPECT_NEAR(LearningRate(s, 60), 1e-4 + 0.5 * 9e-4, 1e-15);  // halfway
  EXPECT_NEAR(LearningRate(s, 110), 1e-4, 1e-15);
  EXPECT_NEAR(LearningRate(s, 35), 1e-4 + 0.5 * 9e-4 * (1 + std::cos(std::numbers::pi * 0.25)), 1e-15);
}

TEST(Schedule, WsdIsFlatThenDecaysLinearly) {
  ScheduleConfig s{ScheduleKind::kWsd, 1.0, 0.0, 0, 100, 0.2};
  EXPECT_DOUBLE_EQ(LearningRate(s, 0), 1.0);
  EXPECT_DOUBLE_EQ(LearningRate(s, 80), 1.0);
  EXPECT_NEAR(LearningRate(s, 90), 0.5, 1e-12);
  EXPECT_NEAR(LearningRate(s, 100), 0.0, 1e-12);
}

TEST(Schedule, RejectsBadConfigs) {
  EXPECT_FALSE((ScheduleConfig{ScheduleKind::kCosine, 0, 0, 0, 10, 0.1}).Validate().ok());
  EXPECT_FALSE((ScheduleConfig{ScheduleKind::kCosine, 1, 2, 0, 10, 0.1}).Validate().ok());
  EXPECT_FALSE((ScheduleConfig{ScheduleKind::kCosine, 1, 0, 11, 10, 0.1}).Validate().ok());
  EXPECT_FALSE(ParseScheduleKind("linear").ok());
  EXPECT_EQ(ParseScheduleKind("wsd").value(), ScheduleKind::kWsd);
}

}  // namespace
}  // namespace escale
