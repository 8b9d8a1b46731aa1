// AdamW against a scalar fp64 transcription of the paper's algorithm, and clipping maths.
#include <gtest/gtest.h>

#include <cmath>
#include <random>
#include <thread>
#include <vector>

#include "train/adamw.h"

namespace escale {
namespace {

TEST(AdamW, MatchesFp64ReferenceOverSeveralSteps) {
  const AdamWConfig c{0.9, 0.95, 1e-8, 0.1};
  std::mt19937 rng(7);
  std::normal_distribution<double> nd;
  const size_t n = 50000;  // large enough for the OpenMP path
  std::vector<float> p(n), m(n, 0), v(n, 0), g(n);
  std::vector<double> pr(n), mr(n, 0), vr(n, 0);
  for (size_t i = 0; i < n; ++i) pr[i] = p[i] = static_cast<float>(nd(rng));
  for (int t = 1; t <= 5; ++t) {
    for (size_t i = 0; i < n; ++i) g[i] = static_cast<float>(nd(rng));
    const double lr = 1e-2 / t;
    AdamWUpdate(c, t, lr, true, p, g, m, v);
    for (size_t i = 0; i < n; ++i) {
      mr[i] = 0.9 * mr[i] + 0.1 * g[i];
      vr[i] = 0.95 * vr[i] + 0.05 * double(g[i]) * g[i];
      const double mh = mr[i] / (1 - std::pow(0.9, t)), vh = vr[i] / (1 - std::pow(0.95, t));
      pr[i] -= lr * (mh / (std::sqrt(vh) + 1e-8) + 0.1 * pr[i]);
    }
  }
  double worst = 0;
  for (size_t i = 0; i < n; ++i) worst = std::max(worst, std::abs(p[i] - pr[i]));
  EXPECT_LT(worst, 1e-5);
  EXPECT_GT(worst, 0.0);  // fp32 vs fp64: identical would mean the test compares a thing with itself
}

TEST(AdamW, NoDecayLeavesZeroGradientParametersAlone) {
  std::vector<float> p{1.f, -2.f}, g{0.f, 0.f}, m{0.f, 0.f}, v{0.f, 0.f};
  AdamWUpdate({}, 1, 0.5, false, p, g, m, v);
  EXPECT_EQ(p[0], 1.f);
  EXPECT_EQ(p[1], -2.f);
  AdamWUpdate({}, 2, 0.5, true, p, g, m, v);  // decoupled decay: p -= lr * wd * p
  EXPECT_FLOAT_EQ(p[0], 1.f - 0.5f * 0.1f * 1.f);
}

TEST(AdamW, SumOfSquaresAndClip) {
  std::vector<float> x(10000);
  for (size_t i = 0; i < x.size(); ++i) x[i] = static_cast<float>(i % 7) - 3.f;
  double ref = 0;
  for (float f : x) ref += double(f) * f;
  EXPECT_DOUBLE_EQ(SumOfSquares(x), ref);
  // Large enough for the parallel path (many blocks), from a fresh thread with no buffer yet.
  std::vector<float> big(1 << 20, 0.5f);
  double got = 0;
  std::thread([&] { got = SumOfSquares(big); }).join();
  EXPECT_DOUBLE_EQ(got, 0.25 * (1 << 20));
  EXPECT_DOUBLE_EQ(ClipFactor(10.0, 1.0), 0.1);
  EXPECT_DOUBLE_EQ(ClipFactor(0.5, 1.0), 1.0);
  EXPECT_DOUBLE_EQ(ClipFactor(10.0, 0.0), 1.0);
}

}  // namespace
}  // namespace escale
