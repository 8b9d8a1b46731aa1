// Windows, shuffling by seed, epochs and cursor restore of the training data loader.
#include "data/loader.h"

#include <gtest/gtest.h>

#include <set>
#include <vector>

namespace escale {
namespace {

TokenArray Array(std::shared_ptr<std::vector<uint16_t>> v) {
  return {v->data(), static_cast<int64_t>(v->size()), 2, v};
}

std::shared_ptr<std::vector<uint16_t>> Ramp(int n, int offset) {
  auto v = std::make_shared<std::vector<uint16_t>>(n);
  for (int i = 0; i < n; ++i) (*v)[i] = static_cast<uint16_t>(offset + i);
  return v;
}

TEST(DataLoader, WindowsAreShiftedPairsWithinOneShard) {
  // Shard of 10 tokens, seq 3: windows start at 0, 3, 6 (6+4 = 10 fits); shard of 4: one window.
  auto d = DataLoader::Create({Array(Ramp(10, 0)), Array(Ramp(4, 100))}, 3, 1, 1000, 5, false);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->windows(), 4);
  std::vector<int32_t> x(3), y(3);
  std::vector<std::vector<int32_t>> seen;
  for (int i = 0; i < 4; ++i) {
    ASSERT_TRUE(d->Next(x, y).ok());
    for (int t = 0; t < 3; ++t) EXPECT_EQ(y[t], x[t] + 1);
    seen.push_back(x);
  }
  EXPECT_EQ(seen[0], (std::vector<int32_t>{0, 1, 2}));
  EXPECT_EQ(seen[2], (std::vector<int32_t>{6, 7, 8}));
  EXPECT_EQ(seen[3], (std::vector<int32_t>{100, 101, 102}));
  EXPECT_EQ(d->cursor().epoch, 0);
  ASSERT_TRUE(d->Next(x, y).ok());  // wraps into epoch 1
  EXPECT_EQ(d->cursor().epoch, 1);
}

TEST(DataLoader, ShuffleDependsOnSeedAndRestoresExactly) {
  auto make = [](uint64_t seed) {
    return DataLoader::Create({Array(Ramp(2000, 0))}, 8, 2, 5000, seed, true).value();
  };
  DataLoader a = make(1), b = make(1), c = make(2);
  std::vector<int32_t> xa(16), ya(16), xb(16), yb(16), xc(16), yc(16);
  std::set<int32_t> firsts;
  bool differs = false;
  for (int i = 0; i < 200; ++i) {  // past one epoch (249 windows / 2 per batch)
    ASSERT_TRUE(a.Next(xa, ya).ok());
    ASSERT_TRUE(b.Next(xb, yb).ok());
    ASSERT_TRUE(c.Next(xc, yc).ok());
    EXPECT_EQ(xa, xb);
    differs |= xa != xc;
    firsts.insert(xa[0]);
  }
  EXPECT_TRUE(differs);
  EXPECT_GT(firsts.size(), 150u);
  // A loader restored from a's cursor continues exactly as a does.
  DataLoader r = make(1);
  ASSERT_TRUE(r.Restore(a.cursor()).ok());
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(a.Next(xa, ya).ok());
    ASSERT_TRUE(r.Next(xb, yb).ok());
    ASSERT_EQ(xa, xb);
  }
}

TEST(DataLoader, RefusesTooLittleDataOutOfVocabAndBadCursors) {
  EXPECT_FALSE(DataLoader::Create({Array(Ramp(4, 0))}, 8, 1, 100, 1, true).ok());
  auto d = DataLoader::Create({Array(Ramp(20, 90))}, 4, 1, 100, 1, false);
  ASSERT_TRUE(d.ok());
  std::vector<int32_t> x(4), y(4);
  ASSERT_TRUE(d->Next(x, y).ok());
  ASSERT_TRUE(d->Next(x, y).ok());
  const Status st = d->Next(x, y);  // tokens 98..102: 100 is outside a vocabulary of 100
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("outside the model's vocabulary"), std::string::npos);
  EXPECT_FALSE(d->Restore({0, 999}).ok());
}

}  // namespace
}  // namespace escale
