// Decoding with the fast engine's key/value cache against the fp64 reference: the logits after
// every chunk of tokens equal the reference forward of the whole prefix at its last position
// (dense, GQA, biases, tied embeddings, MoE with both routings and a shared expert, Qwen3's q/k
// norm), also after Truncate, and when one call is longer than a decoding pass.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <random>

#include "model/layout.h"
#include "model/reference_forward.h"
#include "model/train_model.h"

namespace escale {
namespace {

struct Variant {
  const char* name;
  bool moe, tied, bias, shared;
  RouterType router;
  bool qk_norm = false;
};

ModelConfig Config(const Variant& v) {
  ModelConfig c;
  c.vocab_size = 29;
  c.hidden_size = 16;
  c.intermediate_size = 20;
  c.num_layers = 3;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 6;
  c.rms_norm_eps = 1e-5;
  c.qkv_bias = v.bias;
  c.tie_word_embeddings = v.tied;
  if (v.qk_norm) {
    c.arch = v.moe ? Architecture::kQwen3Moe : Architecture::kQwen3;
    c.qk_norm = QkNorm::kPerHead;
  }
  if (v.moe) {
    if (!v.qk_norm) c.arch = v.shared ? Architecture::kQwen2Moe : Architecture::kMixtral;
    c.moe.num_experts = 4;
    c.moe.top_k = 2;
    c.moe.expert_intermediate = 10;
    c.moe.router = v.router;
    c.moe.every = 2;  // dense and MoE layers both present
    if (v.shared) c.moe.shared_intermediate = 14;
    c.moe.capacity_factor = 0.5;  // the decoder must ignore it
  }
  return c;
}

TensorMap Weights(const ModelConfig& c, uint32_t seed) {
  std::mt19937 rng(seed);
  TensorMap m;
  for (const TensorSpec& s : CanonicalTensors(c)) {
    Tensor t = Tensor::Zeros(DType::kF32, s.shape);
    float* p = t.mutable_data<float>();
    const bool norm = IsNormRole(s.role);
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double u = double(rng()) / 4294967295.0 * 2.0 - 1.0;
      p[i] = static_cast<float>(norm ? 1.0 + 0.2 * u
                                     : (s.role == TensorRole::kRouter ? 1.5 : 0.5) * u);
    }
    m[s.name] = std::move(t);
  }
  return m;
}

// Max |difference| between the decoder's logits and the reference's last row, relative to the
// reference's largest logit.
double Compare(const ModelConfig& c, const TensorMap& w, const std::vector<int32_t>& prefix,
               std::span<const float> got) {
  ModelConfig dropless = c;
  dropless.moe.capacity_factor = 0;
  auto ref = ReferenceForward(dropless, w, prefix);
  EXPECT_TRUE(ref.ok()) << ref.status().message();
  const double* row = ref->logits.data() + (prefix.size() - 1) * static_cast<size_t>(c.vocab_size);
  double diff = 0, scale = 1e-30;
  for (int64_t v = 0; v < c.vocab_size; ++v) {
    diff = std::max(diff, std::abs(got[static_cast<size_t>(v)] - row[v]));
    scale = std::max(scale, std::abs(row[v]));
  }
  return diff / scale;
}

class DecoderTest : public ::testing::TestWithParam<Variant> {};

TEST_P(DecoderTest, ChunksMatchTheReferenceAtEveryStep) {
  const ModelConfig c = Config(GetParam());
  const TensorMap w = Weights(c, 3);
  auto dec = CreateDecoder(c, w, 16);
  ASSERT_TRUE(dec.ok()) << dec.status().message();
  std::mt19937 rng(9);
  std::vector<int32_t> seq;
  for (int i = 0; i < 16; ++i) seq.push_back(static_cast<int32_t>(rng() % 29));
  std::vector<int32_t> prefix;
  size_t at = 0;
  for (size_t chunk : {5u, 1u, 1u, 3u, 2u}) {
    std::vector<int32_t> part(seq.begin() + static_cast<std::ptrdiff_t>(at),
                              seq.begin() + static_cast<std::ptrdiff_t>(at + chunk));
    auto logits = (*dec)->Decode(part);
    ASSERT_TRUE(logits.ok()) << logits.status().message();
    prefix.insert(prefix.end(), part.begin(), part.end());
    at += chunk;
    EXPECT_LT(Compare(c, w, prefix, *logits), 1e-5) << "after " << prefix.size() << " tokens";
    EXPECT_EQ((*dec)->position(), static_cast<int64_t>(prefix.size()));
  }
  // Rewind to 5 tokens and continue differently: the cache beyond is forgotten.
  (*dec)->Truncate(5);
  prefix.resize(5);
  const std::vector<int32_t> other = {7, 8, 9};
  auto logits = (*dec)->Decode(other);
  ASSERT_TRUE(logits.ok());
  prefix.insert(prefix.end(), other.begin(), other.end());
  EXPECT_LT(Compare(c, w, prefix, *logits), 1e-5);
  // Overflow and bad ids are refused and leave the position unchanged.
  const std::vector<int32_t> too_many(9, 1), bad = {29};
  EXPECT_FALSE((*dec)->Decode(too_many).ok());
  EXPECT_FALSE((*dec)->Decode(bad).ok());
  EXPECT_EQ((*dec)->position(), 8);
  (*dec)->Truncate(0);
  logits = (*dec)->Decode(std::vector<int32_t>{seq[0]});
  ASSERT_TRUE(logits.ok());
  EXPECT_LT(Compare(c, w, {seq[0]}, *logits), 1e-5);
}

// Passes of at most 3 tokens: a 7-token prompt runs as 3 + 3 + 1, each pass attending to the
// keys the earlier ones cached.
TEST_P(DecoderTest, AppendsLongerThanAPassMatchTheReference) {
  const ModelConfig c = Config(GetParam());
  const TensorMap w = Weights(c, 5);
  BatchShape shape;
  shape.seq_len = 3;
  shape.training = false;
  shape.kv_positions = 12;
  auto dec = TrainModel::Create(c, w, shape, LossCoefficients{});
  ASSERT_TRUE(dec.ok()) << dec.status().message();
  std::vector<int32_t> prefix = {3, 1, 4, 1, 5, 9, 2};
  auto logits = (*dec)->Decode(prefix);
  ASSERT_TRUE(logits.ok()) << logits.status().message();
  EXPECT_LT(Compare(c, w, prefix, *logits), 1e-5);
  prefix.push_back(6);
  logits = (*dec)->Decode(std::vector<int32_t>{6});
  ASSERT_TRUE(logits.ok());
  EXPECT_LT(Compare(c, w, prefix, *logits), 1e-5);
  EXPECT_EQ((*dec)->position(), 8);
}

INSTANTIATE_TEST_SUITE_P(
    Models, DecoderTest,
    ::testing::Values(Variant{"dense", false, false, false, false, RouterType::kMixtral},
                      Variant{"dense_bias_tied", false, true, true, false, RouterType::kMixtral},
                      Variant{"moe_mixtral", true, false, false, false, RouterType::kMixtral},
                      Variant{"moe_st_shared", true, false, true, true, RouterType::kSt},
                      Variant{"qwen3", false, true, false, false, RouterType::kMixtral, true},
                      Variant{"qwen3_moe_st", true, false, false, false, RouterType::kSt, true}),
    [](const auto& p) { return std::string(p.param.name); });

TEST(Decoder, ACacheIsForInferenceOnly) {
  const ModelConfig c = Config({"dense", false, false, false, false, RouterType::kMixtral});
  BatchShape shape;
  shape.seq_len = 4;
  shape.kv_positions = 8;  // training = true
  auto m = TrainModel::Create(c, Weights(c, 1), shape, LossCoefficients{});
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.status().message().find("inference"), std::string::npos);
}

TEST(Decoder, RefusesMissingTensors) {
  const ModelConfig c = Config({"dense", false, false, false, false, RouterType::kMixtral});
  TensorMap w = Weights(c, 1);
  w.erase("layers.1.wk");
  auto dec = CreateDecoder(c, w, 8);
  ASSERT_FALSE(dec.ok());
  EXPECT_NE(dec.status().message().find("layers.1.wk"), std::string::npos);
}

}  // namespace
}  // namespace escale
