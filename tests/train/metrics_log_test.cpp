#include <gtest/gtest.h>

#include "support/test_support.h"
#include "train/metrics_log.h"

namespace escale {
namespace {

TEST(MetricsLog, ResumeCutsRecordsAfterTheStepAndTornLines) {
  testing::TempDir d;
  const std::string path = d / "metrics.jsonl";
  {
    auto log = MetricsLog::Open(path, -1);
    ASSERT_TRUE(log.ok());
    for (int s = 1; s <= 5; ++s) ASSERT_TRUE(log->Append({{"step", s}, {"loss", 1.0 / s}}).ok());
    ASSERT_TRUE(log->Append({{"event", "eval"}, {"val_loss", 2.0}}).ok());
  }
  testing::WriteFile(path, testing::ReadFile(path) + "{\"step\": 6, \"lo");  // killed mid-line
  {
    auto log = MetricsLog::Open(path, 3);
    ASSERT_TRUE(log.ok());
    ASSERT_TRUE(log->Append({{"step", 4}, {"loss", 9.0}}).ok());
  }
  EXPECT_EQ(testing::ReadFile(path),
            "{\"loss\":1.0,\"step\":1}\n{\"loss\":0.5,\"step\":2}\n"
            "{\"loss\":0.3333333333333333,\"step\":3}\n{\"event\":\"eval\",\"val_loss\":2.0}\n"
            "{\"loss\":9.0,\"step\":4}\n");
}

}  // namespace
}  // namespace escale
