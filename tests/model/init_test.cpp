#include <gtest/gtest.h>

#include <cmath>

#include "model/init.h"
#include "model/layout.h"

namespace escale {
namespace {

TEST(RandomInit, ShapesValuesAndDeterminism) {
  ModelConfig c;
  c.vocab_size = 300;
  c.hidden_size = 64;
  c.intermediate_size = 96;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.qkv_bias = true;
  TensorMap a = RandomInit(c, {.seed = 3}), b = RandomInit(c, {.seed = 3}), d = RandomInit(c, {.seed = 4});
  for (const auto& spec : CanonicalTensors(c)) {
    ASSERT_TRUE(a.count(spec.name)) << spec.name;
    EXPECT_EQ(a.at(spec.name).shape(), spec.shape);
  }
  EXPECT_EQ(a.at("layers.0.attn_norm").data<float>()[5], 1.0f);
  EXPECT_EQ(a.at("layers.1.bq").data<float>()[3], 0.0f);
  const Tensor& e = a.at("embed");
  EXPECT_EQ(std::memcmp(e.bytes(), b.at("embed").bytes(), e.nbytes()), 0);
  EXPECT_NE(std::memcmp(e.bytes(), d.at("embed").bytes(), e.nbytes()), 0);
  auto stdev = [](const Tensor& t) {
    double s = 0;
    for (int64_t i = 0; i < t.numel(); ++i) s += double(t.data<float>()[i]) * t.data<float>()[i];
    return std::sqrt(s / t.numel());
  };
  EXPECT_NEAR(stdev(e), 0.02, 0.001);                          // 19200 samples
  EXPECT_NEAR(stdev(a.at("layers.0.ffn.down")), 0.01, 0.0006);  // 0.02 / sqrt(2 * 2 layers)
}

}  // namespace
}  // namespace escale
