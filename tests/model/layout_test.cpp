// Parameter and FLOP counts against numbers worked out by hand for tiny shapes and against the
// published sizes of real models.
#include <gtest/gtest.h>

#include "model/layout.h"

namespace escale {
namespace {

ModelConfig Tiny() {
  ModelConfig c;
  c.vocab_size = 10;
  c.hidden_size = 4;
  c.intermediate_size = 6;
  c.num_layers = 2;
  c.num_heads = 2;
  c.num_kv_heads = 1;
  c.head_dim = 2;
  return c;
}

TEST(Layout, TinyDenseCountsByHand) {
  ModelConfig c = Tiny();
  ASSERT_TRUE(c.Validate().ok());
  // embed 40; per layer: norms 8, wq 16, wk 8, wv 8, wo 16, ffn 3*24=72 -> 128; final norm 4; head 40
  const ParameterCounts p = CountParameters(c);
  EXPECT_EQ(p.total, 40 + 2 * 128 + 4 + 40);
  EXPECT_EQ(p.active, p.total);
  EXPECT_EQ(p.active_matmul, 2 * (16 + 8 + 8 + 16 + 72) + 40);
  const FlopsPerToken f = TrainingFlopsPerToken(c, 8);
  EXPECT_DOUBLE_EQ(f.matmul, 6.0 * p.active_matmul);
  EXPECT_DOUBLE_EQ(f.attention, 12.0 * 2 * 8 * 4);
  EXPECT_DOUBLE_EQ(f.attention_causal, f.attention / 2);
}

TEST(Layout, TinyMoeCountsByHand) {
  ModelConfig c = Tiny();
  c.arch = Architecture::kQwen2Moe;
  c.qkv_bias = true;
  c.moe.num_experts = 4;
  c.moe.top_k = 2;
  c.moe.expert_intermediate = 3;
  c.moe.shared_intermediate = 5;
  ASSERT_TRUE(c.Validate().ok());
  // per layer: norms 8, attn 48 + bias 2*2+2+2 = 8, router 16, experts 4*(3*12) = 144,
  // shared 3*20 = 60 + shared router 4
  const ParameterCounts p = CountParameters(c);
  EXPECT_EQ(p.routed_experts, 2 * 144);
  EXPECT_EQ(p.total, 40 + 2 * (8 + 48 + 8 + 16 + 144 + 64) + 4 + 40);
  EXPECT_EQ(p.active, p.total - 2 * 144 + 2 * 72);
  EXPECT_EQ(p.active_matmul, 2 * (48 + 16 + 72 + 64) + 40);
}

TEST(Layout, Llama3_8BParameterCount) {
  ModelConfig c;
  c.vocab_size = 128256;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  EXPECT_EQ(CountParameters(c).total, 8030261248);  // the published 8.03B
}

TEST(Layout, Mixtral8x7BActiveParameters) {
  ModelConfig c;
  c.arch = Architecture::kMixtral;
  c.vocab_size = 32000;
  c.hidden_size = 4096;
  c.intermediate_size = 14336;
  c.num_layers = 32;
  c.num_heads = 32;
  c.num_kv_heads = 8;
  c.head_dim = 128;
  c.moe.num_experts = 8;
  c.moe.top_k = 2;
  c.moe.expert_intermediate = 14336;
  const ParameterCounts p = CountParameters(c);
  EXPECT_EQ(p.total, 46702792704);   // 46.7B as published
  EXPECT_EQ(p.active, 12879925248);  // 12.9B active
}

TEST(Layout, ValidateNamesTheBadField) {
  ModelConfig c = Tiny();
  c.num_kv_heads = 3;
  const Status st = c.Validate();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.message().find("num_key_value_heads"), std::string::npos);
  c = Tiny();
  c.arch = Architecture::kMixtral;
  c.moe.num_experts = 2;
  c.moe.top_k = 3;
  c.moe.expert_intermediate = 4;
  EXPECT_NE(c.Validate().message().find("num_experts_per_tok"), std::string::npos);
}

}  // namespace
}  // namespace escale
