#include "train/data_parallel.h"

#include <gtest/gtest.h>

#include <vector>

namespace escale {
namespace {

TEST(ShareOfStep, RanksCoverTheStepOnceInOrder) {
  for (int world : {1, 2, 3, 4, 8}) {
    for (int64_t micro_batches : {8, 24}) {
      if (micro_batches % world != 0) continue;
      std::vector<int> owner(static_cast<size_t>(micro_batches), -1);
      int64_t next = 0;
      for (int r = 0; r < world; ++r) {
        Result<RankShare> s = ShareOfStep(micro_batches, 16, 2, world, r);
        ASSERT_TRUE(s.ok()) << s.status().message();
        EXPECT_EQ(s->first, next) << "rank " << r << " of " << world;
        next = s->first + s->count;
        for (int64_t a = 0; a < micro_batches; ++a)
          if (s->contains(a)) {
            EXPECT_EQ(owner[static_cast<size_t>(a)], -1) << "micro-batch " << a << " given twice";
            owner[static_cast<size_t>(a)] = r;
          }
      }
      EXPECT_EQ(next, micro_batches);
      for (int64_t a = 0; a < micro_batches; ++a) EXPECT_GE(owner[static_cast<size_t>(a)], 0);
      // Equal shares: every rank's gradient carries the same weight (1/micro_batches each).
      EXPECT_EQ(ShareOfStep(micro_batches, 16, 2, world, 0)->count * world, micro_batches);
    }
  }
}

TEST(ShareOfStep, UnevenSplitsAreOneLineWithTheFix) {
  Result<RankShare> s = ShareOfStep(4, 32, 4, 3, 0);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), ErrorCode::kInvalidArgument);
  const std::string& m = s.status().message();
  EXPECT_EQ(m.find('\n'), std::string::npos);
  EXPECT_NE(m.find("--global-batch-tokens"), std::string::npos) << m;
  EXPECT_NE(m.find("384"), std::string::npos) << m;  // 3 ranks x 32 x 4
  Result<RankShare> one = ShareOfStep(1, 32, 4, 2, 1);
  ASSERT_FALSE(one.ok());
  EXPECT_NE(one.status().message().find("fewer ranks"), std::string::npos)
      << one.status().message();
}

TEST(EvaluatesBatch, EachBatchHasExactlyOneRank) {
  for (int world : {1, 2, 3}) {
    for (int64_t b = 0; b < 10; ++b) {
      int owners = 0;
      for (int r = 0; r < world; ++r) owners += EvaluatesBatch(b, world, r) ? 1 : 0;
      EXPECT_EQ(owners, 1);
    }
  }
}

}  // namespace
}  // namespace escale
