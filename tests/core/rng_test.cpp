// The portable RNG: published SplitMix64 values, stream independence, and distribution moments.
#include <gtest/gtest.h>

#include <cmath>

#include "core/rng.h"

namespace escale {
namespace {

TEST(Rng, SplitMix64PublishedFirstValue) {
  Rng r(0);
  EXPECT_EQ(r.NextU64(), 0xe220a8397b1dcdafULL);  // reference value of SplitMix64 from state 0
}

TEST(Rng, NamedStreamsDifferAndRepeat) {
  Rng a = Rng::Stream(7, "router/3"), b = Rng::Stream(7, "router/4"), a2 = Rng::Stream(7, "router/3");
  const uint64_t x = a.NextU64();
  EXPECT_NE(x, b.NextU64());
  EXPECT_EQ(x, a2.NextU64());
}

TEST(Rng, NormalMomentsAndPortableLog) {
  Rng r = Rng::Stream(1, "moments");
  const int n = 200000;
  double s = 0, s2 = 0;
  for (int i = 0; i < n; ++i) {
    const double x = r.NextNormal();
    s += x;
    s2 += x * x;
  }
  const double mean = s / n, var = s2 / n - mean * mean;
  EXPECT_NEAR(mean, 0.0, 4.0 / std::sqrt(n));         // 4 standard errors
  EXPECT_NEAR(var, 1.0, 4.0 * std::sqrt(2.0 / n));
  for (double x : {1e-300, 0.1, 0.5, 1.0, 2.0, 10.0, 1e300})
    EXPECT_NEAR(PortableLog(x), std::log(x), 4e-16 * std::max(1.0, std::abs(std::log(x))));
  uint64_t counts[3] = {0, 0, 0};
  for (int i = 0; i < 30000; ++i) ++counts[r.NextBelow(3)];
  for (uint64_t c : counts) EXPECT_NEAR(static_cast<double>(c), 10000.0, 400.0);
}

}  // namespace
}  // namespace escale
