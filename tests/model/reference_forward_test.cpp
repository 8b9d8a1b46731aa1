// The fp64 reference forward against properties that can be checked by hand: RoPE identities,
// causal masking, the GQA head map, MoE == dense for identical experts, st routing scaling, capacity
// dropping, the shared expert gate, tied heads and the errors a bad model must produce.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <random>

#include "model/layout.h"
#include "model/reference_forward.h"
#include "model/rope.h"
#include "ops/cpu/reference_ops.h"

namespace escale {
namespace {

ModelConfig TinyDense() {
  ModelConfig c;
  c.vocab_size = 11;
  c.hidden_size = 8;
  c.intermediate_size = 12;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 4;
  c.rms_norm_eps = 1e-6;
  c.qkv_bias = true;
  return c;
}

ModelConfig TinyMoe(RouterType router) {
  ModelConfig c = TinyDense();
  c.arch = Architecture::kMixtral;
  c.moe.num_experts = 4;
  c.moe.top_k = 2;
  c.moe.expert_intermediate = 12;
  c.moe.router = router;
  return c;
}

Tensor FromVector(const std::vector<double>& v, const Shape& shape) {
  Tensor t = Tensor::Zeros(DType::kF64, shape);
  std::memcpy(t.mutable_bytes(), v.data(), v.size() * sizeof(double));
  return t;
}

std::vector<double> Values(const Tensor& t) { return ToF64Vector(t).value(); }

// Uniform in [-scale, scale] from mt19937 (whose output sequence is fixed by the standard).
TensorMap RandomWeights(const ModelConfig& c, uint32_t seed, double scale = 0.5) {
  std::mt19937 rng(seed);
  TensorMap m;
  for (const TensorSpec& s : CanonicalTensors(c)) {
    std::vector<double> v(static_cast<size_t>(ShapeNumel(s.shape)));
    const bool is_norm = s.role == TensorRole::kAttnNorm || s.role == TensorRole::kFfnNorm ||
                         s.role == TensorRole::kFinalNorm;
    for (double& x : v) {
      const double u = double(rng()) / 4294967295.0 * 2.0 - 1.0;
      x = is_norm ? 1.0 + 0.2 * u : scale * u;
    }
    m[s.name] = FromVector(v, s.shape);
  }
  return m;
}

void SetZero(TensorMap& m, const std::string& name) {
  Tensor& t = m.at(name);
  t = Tensor::Zeros(t.dtype(), t.shape());
}

ReferenceForwardResult Forward(const ModelConfig& c, const TensorMap& m, const std::vector<int32_t>& tokens,
                           bool residuals = false) {
  ReferenceForwardOptions opt;
  opt.collect_residuals = residuals;
  auto r = ReferenceForward(c, m, tokens, opt);
  EXPECT_TRUE(r.ok()) << r.status().message();
  return std::move(r).value();
}

double MaxAbsDiff(const std::vector<double>& a, const std::vector<double>& b) {
  EXPECT_EQ(a.size(), b.size());
  double d = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) d = std::max(d, std::abs(a[i] - b[i]));
  return d;
}

std::vector<double> RmsNormRow(const std::vector<double>& x, const std::vector<double>& w, double eps) {
  double ss = 0;
  for (double v : x) ss += v * v;
  const double inv = 1.0 / std::sqrt(ss / double(x.size()) + eps);
  std::vector<double> y(x.size());
  for (size_t i = 0; i < x.size(); ++i) y[i] = x[i] * inv * w[i];
  return y;
}

// With o_proj and down zero, every block is the identity: logits = head · RMSNorm(embed[tok]) * norm.
TEST(ReferenceForward, ZeroBlocksGiveNormedEmbeddingTimesHead) {
  ModelConfig c = TinyDense();
  TensorMap m = RandomWeights(c, 1);
  for (int64_t l = 0; l < c.num_layers; ++l) {
    SetZero(m, LayerTensorName(l, "wo"));
    SetZero(m, LayerTensorName(l, "ffn.down"));
  }
  const std::vector<int32_t> tokens = {3, 7, 0};
  const auto r = Forward(c, m, tokens);
  const auto embed = Values(m.at("embed")), norm = Values(m.at("norm")), head = Values(m.at("lm_head"));
  const int64_t H = c.hidden_size, V = c.vocab_size;
  for (size_t t = 0; t < tokens.size(); ++t) {
    std::vector<double> row(embed.begin() + tokens[t] * H, embed.begin() + (tokens[t] + 1) * H);
    const auto xn = RmsNormRow(row, norm, c.rms_norm_eps);
    for (int64_t v = 0; v < V; ++v) {
      double want = 0;
      for (int64_t h = 0; h < H; ++h) want += head[static_cast<size_t>(v * H + h)] * xn[static_cast<size_t>(h)];
      EXPECT_NEAR(r.logits[t * V + static_cast<size_t>(v)], want, 1e-13);
    }
  }
}

// One token: attention weight is 1 on itself and RoPE at position 0 is the identity, so the
// attention output is wo · (wv xn + bv) whatever wq, wk, bq, bk are. Checked by hand on layer 0.
TEST(ReferenceForward, SingleTokenAttentionIsValueProjection) {
  ModelConfig c = TinyDense();
  c.num_layers = 1;
  TensorMap m = RandomWeights(c, 2);
  SetZero(m, LayerTensorName(0, "ffn.down"));
  const auto r = Forward(c, m, {5}, /*residuals=*/true);
  const int64_t H = c.hidden_size, kvd = c.kv_dim(), qd = c.q_dim(), hd = c.head_dim;
  const auto embed = Values(m.at("embed"));
  std::vector<double> x(embed.begin() + 5 * H, embed.begin() + 6 * H);
  const auto xn = RmsNormRow(x, Values(m.at("layers.0.attn_norm")), c.rms_norm_eps);
  const auto wv = Values(m.at("layers.0.wv")), bv = Values(m.at("layers.0.bv")), wo = Values(m.at("layers.0.wo"));
  std::vector<double> v(static_cast<size_t>(kvd));
  for (int64_t i = 0; i < kvd; ++i) {
    v[static_cast<size_t>(i)] = bv[static_cast<size_t>(i)];
    for (int64_t h = 0; h < H; ++h) v[static_cast<size_t>(i)] += wv[static_cast<size_t>(i * H + h)] * xn[static_cast<size_t>(h)];
  }
  // Query head h reads KV head h / (nh/nkv).
  std::vector<double> att(static_cast<size_t>(qd));
  const int64_t group = c.num_heads / c.num_kv_heads;
  for (int64_t h = 0; h < c.num_heads; ++h)
    for (int64_t i = 0; i < hd; ++i) att[static_cast<size_t>(h * hd + i)] = v[static_cast<size_t>((h / group) * hd + i)];
  ASSERT_EQ(r.residuals.size(), 1u);
  for (int64_t o = 0; o < H; ++o) {
    double want = x[static_cast<size_t>(o)];
    for (int64_t i = 0; i < qd; ++i) want += wo[static_cast<size_t>(o * qd + i)] * att[static_cast<size_t>(i)];
    EXPECT_NEAR(r.residuals[0][static_cast<size_t>(o)], want, 1e-13);
  }
}

TEST(ReferenceOps, RopeIsIdentityAtPositionZeroAndRelative) {
  ModelConfig c = TinyDense();
  c.head_dim = 8;
  const auto f = ComputeRopeFrequencies(c);
  ASSERT_TRUE(f.ok());
  EXPECT_DOUBLE_EQ(f->inv_freq[0], 1.0);
  EXPECT_NEAR(f->inv_freq[1], std::pow(10000.0, -2.0 / 8.0), 1e-15);
  const auto rt = ops::ref::MakeRopeTables(f->inv_freq, 16);
  std::vector<double> q = {0.3, -1.2, 0.7, 2.0, -0.4, 0.9, 1.1, -0.6};
  std::vector<double> k = {1.3, 0.2, -0.8, 0.5, 0.6, -1.9, 0.4, 0.1};
  // Position 0: identity.
  std::vector<double> q0 = q;
  ops::ref::ApplyRope(q0.data(), 1, 1, 8, rt);
  EXPECT_EQ(q0, q);
  // q at position p and k at position s: the dot product depends only on p - s.
  auto rotated_at = [&](std::vector<double> v, int64_t pos) {
    std::vector<double> buf(static_cast<size_t>((pos + 1) * 8), 0.0);
    std::copy(v.begin(), v.end(), buf.begin() + pos * 8);
    ops::ref::ApplyRope(buf.data(), pos + 1, 1, 8, rt);
    return std::vector<double>(buf.begin() + pos * 8, buf.end());
  };
  auto dot = [](const std::vector<double>& a, const std::vector<double>& b) {
    double s = 0;
    for (size_t i = 0; i < a.size(); ++i) s += a[i] * b[i];
    return s;
  };
  const double d1 = dot(rotated_at(q, 7), rotated_at(k, 4));
  const double d2 = dot(rotated_at(q, 13), rotated_at(k, 10));
  EXPECT_NEAR(d1, d2, 1e-12);
  EXPECT_GT(std::abs(d1 - dot(q, k)), 1e-3);  // the rotation does change the score
  // Rotate-half pairs element j with j + hd/2: at position 1 the pair (q0, q4) turns by angle 1.
  const auto q1 = rotated_at(q, 1);
  EXPECT_NEAR(q1[0], q[0] * std::cos(1.0) - q[4] * std::sin(1.0), 1e-15);
  EXPECT_NEAR(q1[4], q[4] * std::cos(1.0) + q[0] * std::sin(1.0), 1e-15);
}

TEST(ReferenceOps, RopeScalingTypes) {
  ModelConfig c = TinyDense();
  c.head_dim = 64;
  c.rope_theta = 500000.0;
  const auto plain = ComputeRopeFrequencies(c).value();
  c.rope_scaling = {{"rope_type", "linear"}, {"factor", 4.0}};
  const auto lin = ComputeRopeFrequencies(c).value();
  for (size_t j = 0; j < plain.inv_freq.size(); ++j) EXPECT_DOUBLE_EQ(lin.inv_freq[j], plain.inv_freq[j] / 4.0);
  c.rope_scaling = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                    {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  const auto l3 = ComputeRopeFrequencies(c).value();
  const double pi = std::acos(-1.0);
  int high = 0, low = 0, mid = 0;
  for (size_t j = 0; j < plain.inv_freq.size(); ++j) {
    const double wl = 2 * pi / plain.inv_freq[j];
    if (wl < 8192.0 / 4.0) {
      EXPECT_DOUBLE_EQ(l3.inv_freq[j], plain.inv_freq[j]);
      ++high;
    } else if (wl > 8192.0) {
      EXPECT_DOUBLE_EQ(l3.inv_freq[j], plain.inv_freq[j] / 8.0);
      ++low;
    } else {
      EXPECT_LT(l3.inv_freq[j], plain.inv_freq[j]);
      EXPECT_GT(l3.inv_freq[j], plain.inv_freq[j] / 8.0);
      ++mid;
    }
  }
  EXPECT_GT(high, 0);
  EXPECT_GT(low, 0);
  EXPECT_GT(mid, 0);
  for (const char* refused : {"yarn", "dynamic", "longrope"}) {
    c.rope_scaling = {{"type", refused}, {"factor", 4.0}};
    const auto f = ComputeRopeFrequencies(c);
    ASSERT_FALSE(f.ok()) << refused;
    EXPECT_EQ(f.status().code(), ErrorCode::kUnsupported) << refused;
  }
  c.rope_scaling = {{"rope_type", "linear"}};
  EXPECT_EQ(ComputeRopeFrequencies(c).status().code(), ErrorCode::kInvalidArgument);
}

TEST(ReferenceForward, CausalMaskHidesLaterTokens) {
  const ModelConfig c = TinyDense();
  const TensorMap m = RandomWeights(c, 3);
  const auto a = Forward(c, m, {1, 4, 9, 2, 6});
  const auto b = Forward(c, m, {1, 4, 9, 7, 0});
  const size_t V = static_cast<size_t>(c.vocab_size);
  for (size_t i = 0; i < 3 * V; ++i) EXPECT_EQ(a.logits[i], b.logits[i]) << i;
  EXPECT_GT(MaxAbsDiff(std::vector<double>(a.logits.begin() + 3 * V, a.logits.end()),
                       std::vector<double>(b.logits.begin() + 3 * V, b.logits.end())), 1e-3);
  // An earlier token does change later logits.
  const auto d = Forward(c, m, {2, 4, 9, 2, 6});
  EXPECT_GT(std::abs(d.logits[4 * V] - a.logits[4 * V]), 1e-6);
}

// GQA with 2 KV heads equals MHA with each KV head repeated (repeat_interleave: kv head j serves
// query heads j*g .. j*g+g-1).
TEST(ReferenceForward, GqaEqualsMhaWithRepeatedKvHeads) {
  const ModelConfig gqa = TinyDense();
  ModelConfig mha = gqa;
  mha.num_kv_heads = gqa.num_heads;
  const TensorMap mg = RandomWeights(gqa, 4);
  TensorMap mm = mg;
  const int64_t H = gqa.hidden_size, hd = gqa.head_dim, g = gqa.num_heads / gqa.num_kv_heads;
  for (int64_t l = 0; l < gqa.num_layers; ++l)
    for (const char* name : {"wk", "wv", "bk", "bv"}) {
      const bool is_bias = name[0] == 'b';
      const int64_t cols = is_bias ? 1 : H;
      const auto src = Values(mg.at(LayerTensorName(l, name)));
      std::vector<double> dst;
      for (int64_t h = 0; h < mha.num_heads; ++h) {
        const int64_t j = h / g;
        dst.insert(dst.end(), src.begin() + j * hd * cols, src.begin() + (j + 1) * hd * cols);
      }
      Shape shape = is_bias ? Shape{mha.kv_dim()} : Shape{mha.kv_dim(), H};
      mm[LayerTensorName(l, name)] = FromVector(dst, shape);
    }
  const std::vector<int32_t> tokens = {3, 1, 4, 1, 5, 9};
  EXPECT_LT(MaxAbsDiff(Forward(gqa, mg, tokens).logits, Forward(mha, mm, tokens).logits), 1e-12);
}

// Copies the dense FFN of every layer into all experts of an MoE config.
TensorMap UpcycleIdentical(const ModelConfig& dense, const TensorMap& dm, const ModelConfig& moe, uint32_t seed) {
  TensorMap mm = RandomWeights(moe, seed);  // router and (unused) expert values
  for (auto& [name, t] : dm)
    if (name.find(".ffn.") == std::string::npos) mm[name] = t;
  for (int64_t l = 0; l < dense.num_layers; ++l)
    for (int64_t e = 0; e < moe.moe.num_experts; ++e)
      for (const char* w : {"gate", "up", "down"}) mm[ExpertTensorName(l, e, w)] = dm.at(LayerTensorName(l, std::string("ffn.") + w));
  return mm;
}

TEST(ReferenceForward, MixtralWithIdenticalExpertsEqualsDense) {
  const ModelConfig dense = TinyDense();
  const ModelConfig moe = TinyMoe(RouterType::kMixtral);
  const TensorMap dm = RandomWeights(dense, 5);
  const TensorMap mm = UpcycleIdentical(dense, dm, moe, 6);
  const std::vector<int32_t> tokens = {0, 10, 3, 3, 7, 2, 8};
  const auto a = Forward(dense, dm, tokens), b = Forward(moe, mm, tokens);
  EXPECT_LT(MaxAbsDiff(a.logits, b.logits), 1e-12);
  // With a capacity limit some assignments drop and the function changes.
  ModelConfig capped = moe;
  capped.moe.capacity_factor = 0.5;
  EXPECT_GT(MaxAbsDiff(a.logits, Forward(capped, mm, tokens).logits), 1e-4);
}

// Attention off (wo = 0), so the FFN input of layer 0 is RMSNorm(embed[tok]) * ffn_norm and the
// router logits can be recomputed here. st routing with identical experts scales the dense FFN
// output by the top-k probability mass.
TEST(ReferenceForward, StRoutingScalesByTopKMass) {
  ModelConfig dense = TinyDense();
  dense.num_layers = 1;
  ModelConfig moe = TinyMoe(RouterType::kSt);
  moe.num_layers = 1;
  TensorMap dm = RandomWeights(dense, 7);
  SetZero(dm, "layers.0.wo");
  const TensorMap mm = UpcycleIdentical(dense, dm, moe, 8);
  const std::vector<int32_t> tokens = {1, 2, 6, 9};
  const auto a = Forward(dense, dm, tokens, true), b = Forward(moe, mm, tokens, true);
  const int64_t H = dense.hidden_size, E = moe.moe.num_experts;
  const auto embed = Values(dm.at("embed")), fnorm = Values(dm.at("layers.0.ffn_norm"));
  const auto router = Values(mm.at("layers.0.moe.router"));
  for (size_t t = 0; t < tokens.size(); ++t) {
    std::vector<double> x(embed.begin() + tokens[t] * H, embed.begin() + (tokens[t] + 1) * H);
    const auto xn = RmsNormRow(x, fnorm, dense.rms_norm_eps);
    std::vector<double> p(static_cast<size_t>(E));
    double z = 0;
    for (int64_t e = 0; e < E; ++e) {
      double s = 0;
      for (int64_t h = 0; h < H; ++h) s += router[static_cast<size_t>(e * H + h)] * xn[static_cast<size_t>(h)];
      p[static_cast<size_t>(e)] = std::exp(s);
      z += p[static_cast<size_t>(e)];
    }
    for (double& v : p) v /= z;
    std::sort(p.begin(), p.end(), std::greater<>());
    const double mass = p[0] + p[1];
    EXPECT_LT(mass, 1.0 - 1e-3);
    for (int64_t h = 0; h < H; ++h) {
      const size_t i = t * static_cast<size_t>(H) + static_cast<size_t>(h);
      EXPECT_NEAR(b.residuals[0][i] - x[static_cast<size_t>(h)], mass * (a.residuals[0][i] - x[static_cast<size_t>(h)]), 1e-13);
    }
  }
}

// Capacity: every token prefers expert 0 (router row 0 large and aligned with all inputs), k = 1,
// T = 4, E = 2, CF = 0.5 -> capacity ceil(0.5*4*1/2) = 1: only one token keeps its FFN output.
TEST(ReferenceForward, CapacityDropsByPositionOrProbability) {
  ModelConfig c = TinyMoe(RouterType::kSt);
  c.num_layers = 1;
  c.moe.num_experts = 2;
  c.moe.top_k = 1;
  c.moe.capacity_factor = 0.5;
  c.moe.drop_policy = DropPolicy::kPosition;
  TensorMap m = RandomWeights(c, 9);
  SetZero(m, "layers.0.wo");
  const int64_t H = c.hidden_size;
  // Embedding rows all positive; router row 0 = 4 * ffn-norm-independent positive direction.
  std::vector<double> embed = Values(m.at("embed"));
  for (double& v : embed) v = std::abs(v) + 0.1;
  // Token 8 is made the most confident (largest norm-free alignment with router row 0).
  for (int64_t h = 0; h < H; ++h) embed[static_cast<size_t>(8 * H + h)] = h == 0 ? 5.0 : 0.1;
  m["embed"] = FromVector(embed, {c.vocab_size, H});
  std::vector<double> router(static_cast<size_t>(2 * H), 0.0);
  for (int64_t h = 0; h < H; ++h) router[static_cast<size_t>(h)] = h == 0 ? 6.0 : 1.0;
  m["layers.0.moe.router"] = FromVector(router, {2, H});
  std::vector<double> ones(static_cast<size_t>(H), 1.0);
  m["layers.0.ffn_norm"] = FromVector(ones, {H});

  const std::vector<int32_t> tokens = {2, 5, 8, 4};
  auto contributes = [&](const ModelConfig& cfg) {
    const auto r = Forward(cfg, m, tokens, true);
    std::vector<bool> out;
    for (size_t t = 0; t < tokens.size(); ++t) {
      double d = 0;
      for (int64_t h = 0; h < H; ++h)
        d = std::max(d, std::abs(r.residuals[0][t * static_cast<size_t>(H) + static_cast<size_t>(h)] -
                                 embed[static_cast<size_t>(tokens[t] * H + h)]));
      out.push_back(d > 1e-9);
    }
    return out;
  };
  EXPECT_EQ(contributes(c), (std::vector<bool>{true, false, false, false}));
  c.moe.drop_policy = DropPolicy::kProbability;
  EXPECT_EQ(contributes(c), (std::vector<bool>{false, false, true, false}));
  c.moe.capacity_factor = 0.0;
  EXPECT_EQ(contributes(c), (std::vector<bool>{true, true, true, true}));
}

// Shared expert with a zero gate row: sigmoid(0) = 1/2. Routed experts output zero (down = 0), the
// shared expert is the dense FFN, so the layer adds exactly half of the dense FFN output.
TEST(ReferenceForward, SharedExpertIsSigmoidGated) {
  ModelConfig dense = TinyDense();
  dense.num_layers = 1;
  ModelConfig moe = TinyMoe(RouterType::kSt);
  moe.arch = Architecture::kQwen2Moe;
  moe.num_layers = 1;
  moe.moe.shared_intermediate = dense.intermediate_size;
  TensorMap dm = RandomWeights(dense, 10);
  SetZero(dm, "layers.0.wo");
  TensorMap mm = UpcycleIdentical(dense, dm, moe, 11);
  for (int64_t e = 0; e < moe.moe.num_experts; ++e) SetZero(mm, ExpertTensorName(0, e, "down"));
  for (const char* w : {"gate", "up", "down"})
    mm[std::string("layers.0.moe.shared.") + w] = dm.at(std::string("layers.0.ffn.") + w);
  SetZero(mm, "layers.0.moe.shared_router");
  const std::vector<int32_t> tokens = {4, 0, 8};
  const auto a = Forward(dense, dm, tokens, true), b = Forward(moe, mm, tokens, true);
  const auto embed = Values(dm.at("embed"));
  const int64_t H = dense.hidden_size;
  for (size_t t = 0; t < tokens.size(); ++t)
    for (int64_t h = 0; h < H; ++h) {
      const size_t i = t * static_cast<size_t>(H) + static_cast<size_t>(h);
      const double x = embed[static_cast<size_t>(tokens[t] * H + h)];
      EXPECT_NEAR(b.residuals[0][i] - x, 0.5 * (a.residuals[0][i] - x), 1e-13);
    }
}

TEST(ReferenceForward, TiedHeadUsesEmbedding) {
  ModelConfig c = TinyDense();
  TensorMap m = RandomWeights(c, 12);
  ModelConfig tied = c;
  tied.tie_word_embeddings = true;
  TensorMap mt = m;
  mt.erase("lm_head");
  m["lm_head"] = m.at("embed");
  const std::vector<int32_t> tokens = {1, 2, 3};
  EXPECT_EQ(Forward(c, m, tokens).logits, Forward(tied, mt, tokens).logits);
}

TEST(ReferenceForward, LowerPrecisionInputsAreAccepted) {
  const ModelConfig c = TinyDense();
  const TensorMap m64 = RandomWeights(c, 13);
  TensorMap m32, m16;
  for (const auto& [name, t] : m64) {
    m32[name] = ToDType(t, DType::kF32).value();
    m16[name] = ToDType(t, DType::kBF16).value();
  }
  const std::vector<int32_t> tokens = {5, 6, 7};
  const auto a = Forward(c, m64, tokens), b = Forward(c, m32, tokens), d = Forward(c, m16, tokens);
  EXPECT_LT(MaxAbsDiff(a.logits, b.logits), 1e-5);
  EXPECT_GT(MaxAbsDiff(a.logits, b.logits), 0.0);  // f32 rounding of the weights is visible
  EXPECT_LT(MaxAbsDiff(a.logits, d.logits), 0.1);
}

TEST(ReferenceForward, BadInputsAreErrors) {
  const ModelConfig c = TinyDense();
  TensorMap m = RandomWeights(c, 14);
  auto r = ReferenceForward(c, m, std::vector<int32_t>{1, 11});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kInvalidArgument);
  TensorMap missing = m;
  missing.erase("layers.1.bk");
  r = ReferenceForward(c, missing, std::vector<int32_t>{1});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kNotFound);
  EXPECT_NE(r.status().message().find("layers.1.bk"), std::string::npos);
  TensorMap bad_shape = m;
  bad_shape["norm"] = Tensor::Zeros(DType::kF32, {c.hidden_size + 1});
  r = ReferenceForward(c, bad_shape, std::vector<int32_t>{1});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kFormat);
  TensorMap bad_dtype = m;
  bad_dtype["norm"] = Tensor::Zeros(DType::kI32, {c.hidden_size});
  EXPECT_FALSE(ReferenceForward(c, bad_dtype, std::vector<int32_t>{1}).ok());
  ModelConfig yarn = c;
  yarn.rope_scaling = {{"rope_type", "yarn"}, {"factor", 2.0}};
  r = ReferenceForward(yarn, m, std::vector<int32_t>{1});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), ErrorCode::kUnsupported);
  ModelConfig invalid = c;
  invalid.num_kv_heads = 3;
  EXPECT_FALSE(ReferenceForward(invalid, m, std::vector<int32_t>{1}).ok());
}

}  // namespace
}  // namespace escale
