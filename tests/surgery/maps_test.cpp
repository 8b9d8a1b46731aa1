// Width, head and depth maps and the per-tensor producer on shapes small enough to write out by hand.
#include <gtest/gtest.h>

#include "surgery/depth_map.h"
#include "surgery/scale_up.h"
#include "surgery/width_map.h"
#include "surgery_fixtures.h"

namespace escale::surgery {
namespace {

using V = std::vector<int64_t>;
using B = std::vector<uint8_t>;

TEST(WidthMap, CircularCopiesAndCounts) {
  const DimMap m = MakeWidthMap(4, 6, MapKind::kCircular, 0, "x");
  EXPECT_EQ(m.src, (V{0, 1, 2, 3, 0, 1}));
  EXPECT_EQ(m.count, (V{2, 2, 1, 1}));
  EXPECT_EQ(m.fresh, (B{0, 0, 0, 0, 1, 1}));
  EXPECT_FALSE(m.uniform_counts());
  const DimMap d = MakeWidthMap(3, 6, MapKind::kCircular, 0, "x");
  EXPECT_EQ(d.src, (V{0, 1, 2, 0, 1, 2}));
  EXPECT_TRUE(d.uniform_counts());
  EXPECT_TRUE(IdentityMap(5).identity());
}

TEST(WidthMap, RandomMapIsSeededAndKeepsTheOriginals) {
  const DimMap a = MakeWidthMap(8, 40, MapKind::kRandom, 9, "hidden");
  const DimMap b = MakeWidthMap(8, 40, MapKind::kRandom, 9, "hidden");
  const DimMap c = MakeWidthMap(8, 40, MapKind::kRandom, 10, "hidden");
  EXPECT_EQ(a.src, b.src);
  EXPECT_NE(a.src, c.src);
  int64_t total = 0;
  for (int64_t i = 0; i < 8; ++i) EXPECT_EQ(a.src[static_cast<size_t>(i)], i);
  for (int64_t x : a.src) EXPECT_TRUE(x >= 0 && x < 8);
  for (int64_t x : a.count) total += x;
  EXPECT_EQ(total, 40);
}

TEST(WidthMap, ExpandUnitsGivesRowsOfHeads) {
  const DimMap u = MakeWidthMap(2, 3, MapKind::kCircular, 0, "h");
  const DimMap e = ExpandUnits(u, 2);
  EXPECT_EQ(e.src, (V{0, 1, 2, 3, 0, 1}));
  EXPECT_EQ(e.count, (V{2, 2, 1, 1}));
  EXPECT_EQ(e.fresh, (B{0, 0, 0, 0, 1, 1}));
}

TEST(HeadMaps, QueryHeadsGrowInsideEachGroup) {
  // 4 heads in 2 groups (q1 = 2) -> 8 heads in 2 groups (q2 = 4).
  auto m = MakeHeadMaps(4, 2, 8, 2, MapKind::kCircular, 0);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->q.src, (V{0, 1, 0, 1, 2, 3, 2, 3}));
  EXPECT_EQ(m->q.fresh, (B{0, 0, 1, 1, 0, 0, 1, 1}));
  EXPECT_EQ(m->q.count, (V{2, 2, 2, 2}));
  EXPECT_TRUE(m->kv.identity());
}

TEST(HeadMaps, MoreKvGroupsDuplicateKvHeads) {
  // 2 groups -> 4: target groups 0,1 come from source group 0, 2,3 from group 1.
  auto m = MakeHeadMaps(4, 2, 8, 4, MapKind::kCircular, 0);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(m->kv.src, (V{0, 0, 1, 1}));
  EXPECT_EQ(m->kv.fresh, (B{0, 1, 0, 1}));
  EXPECT_EQ(m->q.src, (V{0, 1, 0, 1, 2, 3, 2, 3}));
  EXPECT_EQ(m->q.fresh, (B{0, 0, 1, 1, 0, 0, 1, 1}));
}

TEST(HeadMaps, FewerKvGroupsMeanPool) {
  auto m = MakeHeadMaps(4, 4, 8, 2, MapKind::kCircular, 0);  // MHA 4 -> GQA 2 groups of 4
  ASSERT_TRUE(m.ok());
  ASSERT_TRUE(m->kv.pooled());
  EXPECT_EQ(m->kv.pool, (std::vector<V>{{0, 1}, {2, 3}}));
  EXPECT_EQ(m->q.src, (V{0, 1, 0, 1, 2, 3, 2, 3}));
}

TEST(HeadMaps, RefusesImpossibleShapes) {
  EXPECT_FALSE(MakeHeadMaps(4, 2, 6, 4, MapKind::kCircular, 0).ok());  // 6 heads / 4 groups
  EXPECT_FALSE(MakeHeadMaps(4, 2, 6, 3, MapKind::kCircular, 0).ok());  // 3 groups vs 2
  EXPECT_FALSE(MakeHeadMaps(8, 2, 4, 2, MapKind::kCircular, 0).ok());  // shrinking
}

TEST(DepthMap, InterpolateStackZero) {
  EXPECT_EQ(MakeDepthMap(3, 6, DepthMethod::kInterpolate)->src, (V{0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(MakeDepthMap(3, 6, DepthMethod::kStack)->src, (V{0, 1, 2, 0, 1, 2}));
  auto z = MakeDepthMap(3, 6, DepthMethod::kZero);
  EXPECT_EQ(z->src, (V{0, 0, 1, 1, 2, 2}));
  EXPECT_EQ(z->zeroed, (B{0, 1, 0, 1, 0, 1}));
  // 24 -> 32 (1.3B -> 7B): floor(l*24/32) = floor(3l/4), so one source layer in three is repeated.
  const V m = MakeDepthMap(24, 32, DepthMethod::kInterpolate)->src;
  EXPECT_EQ(V(m.begin(), m.begin() + 8), (V{0, 0, 1, 2, 3, 3, 4, 5}));
  EXPECT_EQ(m.back(), 23);
  EXPECT_FALSE(MakeDepthMap(4, 3, DepthMethod::kStack).ok());
}

// A hand-written case of the two expansion rules on a 2x2 matrix grown to 3x3.
TEST(Producer, OutputAndInputExpansionByHand) {
  ScaleUpPlan plan;
  UpRecipe r;
  r.target.name = "t";
  r.target.shape = {3, 3};
  r.source = "w";
  r.source_shape = {2, 2};
  r.rows = std::make_shared<DimMap>(MakeWidthMap(2, 3, MapKind::kCircular, 0, "r"));
  r.cols = r.rows;
  r.divide_cols = true;
  std::map<std::string, Tensor> src;
  src.emplace("w", testing::F64Tensor({1, 2, 3, 4}, {2, 2}));
  auto out = ProduceScaleUp<double>(plan, r, SourceFromMap(src));
  ASSERT_TRUE(out.ok());
  // rows 0,1,0; columns 0,1,0 with column 0 divided by its 2 copies.
  EXPECT_EQ(*out, (std::vector<double>{0.5, 2, 0.5, 1.5, 4, 1.5, 0.5, 2, 0.5}));
  r.divide_cols = false;  // the embedding rule: copied, not divided
  EXPECT_EQ(*ProduceScaleUp<double>(plan, r, SourceFromMap(src)), (std::vector<double>{1, 2, 1, 3, 4, 3, 1, 2, 1}));
  // AKI: entries in a new row or a new column come from the next layer's matrix.
  src.emplace("n", testing::F64Tensor({10, 20, 30, 40}, {2, 2}));
  r.divide_cols = true;
  r.next = "n";
  EXPECT_EQ(*ProduceScaleUp<double>(plan, r, SourceFromMap(src)),
            (std::vector<double>{0.5, 2, 5, 1.5, 4, 15, 5, 20, 5}));
}

TEST(Producer, WrongSourceShapeIsAnError) {
  ScaleUpPlan plan;
  UpRecipe r;
  r.target.shape = {2};
  r.source = "w";
  r.source_shape = {2};
  r.rows = std::make_shared<DimMap>(IdentityMap(2));
  std::map<std::string, Tensor> src;
  src.emplace("w", testing::F64Tensor({1, 2, 3}, {3}));
  auto out = ProduceScaleUp<double>(plan, r, SourceFromMap(src));
  ASSERT_FALSE(out.ok());
  EXPECT_NE(out.status().message().find("shape"), std::string::npos);
}

}  // namespace
}  // namespace escale::surgery
