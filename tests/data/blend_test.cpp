// Weighted blends of data sources: spec parsing, exact proportions, determinism and resume.
#include "data/blend.h"

#include <gtest/gtest.h>

#include <cmath>
#include <vector>

namespace escale {
namespace {

// Source k holds tokens k*1000 + i, so every window names the source it came from.
TokenArray Source(int k, int n) {
  auto v = std::make_shared<std::vector<uint16_t>>(n);
  for (int i = 0; i < n; ++i) (*v)[i] = static_cast<uint16_t>(k * 1000 + i % 997);
  return {v->data(), static_cast<int64_t>(v->size()), 2, v};
}

constexpr int64_t kSeq = 4, kBatch = 3;

DataBlend Blend(const std::vector<double>& weights, uint64_t seed) {
  std::vector<BlendSource> s;
  for (size_t k = 0; k < weights.size(); ++k) {
    // Different sizes: sources wrap into new epochs at different moments.
    auto d = DataLoader::Create({Source(static_cast<int>(k), 41 + 30 * static_cast<int>(k))}, kSeq,
                                kBatch, 8000, seed, true, "data/s" + std::to_string(k));
    s.push_back({"s" + std::to_string(k), weights[k], std::move(d).value()});
  }
  return DataBlend::Create(std::move(s)).value();
}

// The source of each window served by `batches` calls of Next, read from the tokens themselves.
std::vector<int> Served(DataBlend& b, int batches, std::vector<int32_t>* all_tokens = nullptr) {
  std::vector<int32_t> x(kSeq * kBatch), y(kSeq * kBatch);
  std::vector<int> out;
  for (int i = 0; i < batches; ++i) {
    EXPECT_TRUE(b.Next(x, y).ok());
    for (int64_t w = 0; w < kBatch; ++w) out.push_back(x[static_cast<size_t>(w * kSeq)] / 1000);
    if (all_tokens) all_tokens->insert(all_tokens->end(), x.begin(), x.end());
  }
  return out;
}

TEST(DataBlend, ParsesAndNormalisesWeights) {
  auto e = ParseDataBlend("en=7:shards/en  zh=3:/data/zh:2");
  ASSERT_TRUE(e.ok()) << e.status().message();
  ASSERT_EQ(e->size(), 2u);
  EXPECT_EQ((*e)[0].name, "en");
  EXPECT_EQ((*e)[0].dir, "shards/en");
  EXPECT_EQ((*e)[1].dir, "/data/zh:2");  // the first ':' after '=' ends the weight
  EXPECT_DOUBLE_EQ((*e)[0].weight, 0.7);
  EXPECT_DOUBLE_EQ((*e)[1].weight, 0.3);
  auto same = ParseDataBlend("en=0.7:shards/en zh=0.3:/data/zh:2");
  ASSERT_TRUE(same.ok());
  EXPECT_DOUBLE_EQ((*same)[0].weight, (*e)[0].weight);
}

TEST(DataBlend, BadSpecsGiveOneClearLine) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"", "is empty"},
      {"en:0.7=dir", "is not NAME=WEIGHT:DIR"},
      {"en=0.7", "is not NAME=WEIGHT:DIR"},
      {"=0.7:dir", "is not NAME=WEIGHT:DIR"},
      {"en=0.7:", "is not NAME=WEIGHT:DIR"},
      {"en=0:a zh=1:b", "must be a positive number"},
      {"en=-1:a", "must be a positive number"},
      {"en=nan:a", "must be a positive number"},
      {"en=x:a", "must be a positive number"},
      {"en=1:a en=1:b", "twice"},
      {"e/n=1:a", "may hold only"},
  };
  for (const auto& [spec, want] : cases) {
    auto r = ParseDataBlend(spec);
    ASSERT_FALSE(r.ok()) << spec;
    EXPECT_NE(r.status().message().find(want), std::string::npos)
        << spec << ": " << r.status().message();
    EXPECT_EQ(r.status().message().find('\n'), std::string::npos);
  }
}

TEST(DataBlend, ProportionsStayWithinOneWindowAtEveryPoint) {
  for (const std::vector<double>& w : std::vector<std::vector<double>>{
           {0.7, 0.3}, {0.5, 0.3, 0.2}, {1, 1, 1}, {0.9, 0.05, 0.05}}) {
    double sum = 0;
    for (double x : w) sum += x;
    DataBlend b = Blend(w, 3);
    const std::vector<int> src = Served(b, 400);  // 1200 windows, several epochs of each source
    std::vector<int64_t> count(w.size(), 0);
    double worst = 0;
    for (size_t n = 0; n < src.size(); ++n) {
      ++count[static_cast<size_t>(src[n])];
      for (size_t k = 0; k < w.size(); ++k)
        worst = std::max(worst, std::fabs(static_cast<double>(count[k]) -
                                          w[k] / sum * static_cast<double>(n + 1)));
    }
    EXPECT_LE(worst, 1.0) << "weights " << w.size();
    for (size_t k = 0; k < w.size(); ++k) {
      EXPECT_EQ(b.served(k), count[k]);
      EXPECT_DOUBLE_EQ(b.epochs(k),
                       static_cast<double>(count[k]) / static_cast<double>(b.loader(k).windows()));
    }
  }
}

TEST(DataBlend, DeterministicAndResumesExactlyFromCursors) {
  DataBlend a = Blend({0.6, 0.4}, 9), b = Blend({0.6, 0.4}, 9), c = Blend({0.6, 0.4}, 10);
  std::vector<int32_t> ta, tb, tc;
  Served(a, 50, &ta);
  Served(b, 50, &tb);
  Served(c, 50, &tc);
  EXPECT_EQ(ta, tb);
  EXPECT_NE(ta, tc);  // the seed changes each source's order
  // A fresh blend restored from a's cursors continues exactly as a does.
  DataBlend r = Blend({0.6, 0.4}, 9);
  ASSERT_TRUE(r.Restore(a.cursors()).ok());
  std::vector<int32_t> next_a, next_r;
  Served(a, 70, &next_a);
  Served(r, 70, &next_r);
  EXPECT_EQ(next_a, next_r);
  EXPECT_FALSE(r.Restore({{0, 0}}).ok());  // one cursor for two sources
}

TEST(DataBlend, OneSourceServesExactlyWhatItsLoaderServes) {
  auto make = [] {
    return DataLoader::Create({Source(0, 500)}, kSeq, kBatch, 8000, 4, true).value();
  };
  DataLoader plain = make();
  std::vector<BlendSource> one;
  one.push_back({"", 1.0, make()});
  DataBlend b = DataBlend::Create(std::move(one)).value();
  std::vector<int32_t> x(kSeq * kBatch), y(x.size()), bx(x.size()), by(x.size());
  for (int i = 0; i < 100; ++i) {
    ASSERT_TRUE(plain.Next(x, y).ok());
    ASSERT_TRUE(b.Next(bx, by).ok());
    ASSERT_EQ(x, bx);
    ASSERT_EQ(y, by);
  }
}

}  // namespace
}  // namespace escale
