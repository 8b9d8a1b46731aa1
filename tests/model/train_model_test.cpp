// The fp32 TrainModel against the fp64 reference (ReferenceLossAndGradients / ReferenceForward) on
// tiny random dense and MoE models: loss terms, logits and every parameter gradient, with all
// activation buffers poisoned with NaN before each step. Also: gradient accumulation, determinism,
// no heap allocation inside a step (counted by the replaced global operator new below), errors.
#include <gtest/gtest.h>

#include <atomic>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <new>
#include <random>

#include "model/layout.h"
#include "model/reference_forward.h"
#include "model/reference_model.h"
#include "model/train_model.h"

// Every operator new of this test binary goes through here, so a test can count allocations.
namespace {
std::atomic<int64_t> g_allocations{0};
}  // namespace

// GCC 12 flags free() after an inlined replaced operator new as mismatched (it is not: both are
// replaced together).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
// Every unaligned form is replaced, so no allocation pairs one of ours with the runtime's (ASan
// checks that); the aligned forms stay the runtime's on both sides.
namespace {
void* CountedAlloc(std::size_t n) noexcept {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  return std::malloc(n == 0 ? 1 : n);
}
}  // namespace
void* operator new(std::size_t n) {
  if (void* p = CountedAlloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new[](std::size_t n) {
  if (void* p = CountedAlloc(n)) return p;
  throw std::bad_alloc();
}
void* operator new(std::size_t n, const std::nothrow_t&) noexcept { return CountedAlloc(n); }
void* operator new[](std::size_t n, const std::nothrow_t&) noexcept { return CountedAlloc(n); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }
#pragma GCC diagnostic pop

namespace escale {
namespace {

ModelConfig TinyDense(bool bias, bool tied) {
  ModelConfig c;
  c.vocab_size = 37;
  c.hidden_size = 16;
  c.intermediate_size = 24;
  c.num_layers = 2;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 8;
  c.rms_norm_eps = 1e-5;
  c.qkv_bias = bias;
  c.tie_word_embeddings = tied;
  return c;
}

ModelConfig TinyMoe(RouterType router, int64_t experts, int64_t k) {
  ModelConfig c = TinyDense(true, false);
  c.arch = Architecture::kMixtral;
  c.moe.num_experts = experts;
  c.moe.top_k = k;
  c.moe.expert_intermediate = 12;
  c.moe.router = router;
  return c;
}

// Uniform weights stored as F32, so the fp32 model and the fp64 reference see identical values.
TensorMap RandomWeights(const ModelConfig& c, uint32_t seed, double scale = 0.4) {
  std::mt19937 rng(seed);
  TensorMap m;
  for (const TensorSpec& s : CanonicalTensors(c)) {
    Tensor t = Tensor::Zeros(DType::kF32, s.shape);
    float* p = t.mutable_data<float>();
    const bool is_norm = IsNormRole(s.role);
    const double sc = s.role == TensorRole::kRouter ? 1.5 : scale;
    for (int64_t i = 0; i < t.numel(); ++i) {
      const double u = double(rng()) / 4294967295.0 * 2.0 - 1.0;
      p[i] = static_cast<float>(is_norm ? 1.0 + 0.2 * u : sc * u);
    }
    m[s.name] = std::move(t);
  }
  return m;
}

struct Batch {
  std::vector<int32_t> tokens, targets;
};

Batch RandomBatch(const ModelConfig& c, BatchShape shape, uint32_t seed, bool ignore_some = true) {
  std::mt19937 rng(seed);
  Batch b;
  const int64_t n = shape.micro_batch * shape.seq_len;
  for (int64_t i = 0; i < n; ++i) {
    b.tokens.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(c.vocab_size)));
    b.targets.push_back(static_cast<int32_t>(rng() % static_cast<uint32_t>(c.vocab_size)));
  }
  if (ignore_some) b.targets[1] = -1;
  return b;
}

double MaxAbs(const std::vector<double>& v) {
  double m = 0;
  for (double x : v) m = std::max(m, std::fabs(x));
  return m;
}

void ExpectClose(double fast, double ref, double rel, const char* what) {
  EXPECT_NEAR(fast, ref, rel * std::max(1.0, std::fabs(ref))) << what;
}

struct Case {
  const char* name;
  ModelConfig config;
  BatchShape shape;
  LossCoefficients coef;
};

// Runs one step of both and compares everything.
void CompareWithReference(const Case& cs) {
  SCOPED_TRACE(cs.name);
  const ModelConfig& c = cs.config;
  const TensorMap w = RandomWeights(c, 7);
  const Batch b = RandomBatch(c, cs.shape, 11);
  auto ref = ReferenceLossAndGradients(c, w, b.tokens, b.targets, cs.shape.seq_len, cs.coef);
  ASSERT_TRUE(ref.ok()) << ref.status().message();

  auto created = TrainModel::Create(c, w, cs.shape, cs.coef);
  ASSERT_TRUE(created.ok()) << created.status().message();
  TrainModel& m = **created;

  // Logits from Evaluate (the training step overwrites them with their gradient).
  m.PoisonActivationsForTesting();
  auto ev = m.Evaluate(b.tokens, b.targets);
  ASSERT_TRUE(ev.ok()) << ev.status().message();
  const std::vector<double> ref_logits = ref->logits;
  const std::span<const float> logits = m.logits();
  ASSERT_EQ(logits.size(), ref_logits.size());
  const double lscale = MaxAbs(ref_logits);
  double worst = 0;
  for (size_t i = 0; i < logits.size(); ++i) worst = std::max(worst, std::fabs(double(logits[i]) - ref_logits[i]));
  EXPECT_LE(worst, 1e-5 * lscale) << "logits";

  m.ZeroGrads();
  m.PoisonActivationsForTesting();
  auto lt = m.ForwardBackward(b.tokens, b.targets);
  ASSERT_TRUE(lt.ok()) << lt.status().message();
  for (const LossTerms& got : {*ev, *lt}) {
    ExpectClose(got.total, ref->loss.total, 1e-5, "total");
    ExpectClose(got.ce, ref->loss.ce, 1e-5, "ce");
    ExpectClose(got.aux, ref->loss.aux, 1e-5, "aux");
    ExpectClose(got.router_max_z, ref->loss.router_max_z, 1e-5, "router_max_z");
    ExpectClose(got.router_z, ref->loss.router_z, 1e-5, "router_z");
    ExpectClose(got.output_z, ref->loss.output_z, 1e-5, "output_z");
    ExpectClose(got.output_max_z, ref->loss.output_max_z, 1e-5, "output_max_z");
  }

  size_t compared = 0;
  for (const TrainModel::Param& p : m.params()) {
    auto it = ref->grads.find(p.name);
    ASSERT_NE(it, ref->grads.end()) << p.name;
    ASSERT_EQ(it->second.size(), p.grad.size()) << p.name;
    const double scale = MaxAbs(it->second);
    double err = 0;
    for (size_t i = 0; i < p.grad.size(); ++i) {
      ASSERT_TRUE(std::isfinite(p.grad[i])) << p.name << "[" << i << "]";
      err = std::max(err, std::fabs(double(p.grad[i]) - it->second[i]));
    }
    EXPECT_LE(err, 1e-4 * scale + 1e-9) << p.name << " max|ref| " << scale;
    ++compared;
  }
  EXPECT_EQ(compared, ref->grads.size());

  // Expert load per layer and dropped assignments match the reference's routing.
  int64_t dropped = 0;
  for (const MoeLayerStats& st : m.moe_stats()) {
    EXPECT_EQ(st.tokens_per_expert, ref->expert_load[static_cast<size_t>(st.layer)]) << "layer " << st.layer;
    dropped += st.dropped;
    EXPECT_GT(st.router_entropy, 0.0);
  }
  EXPECT_EQ(dropped, ref->dropped_assignments);
}

TEST(TrainModel, DenseGqaBiasUntiedMatchesReference) {
  LossCoefficients coef;
  coef.output_z = 0.01;
  coef.output_max_z = 0.02;
  CompareWithReference({"dense", TinyDense(true, false), {2, 6}, coef});
}

TEST(TrainModel, Qwen3QkNormMatchesReference) {
  ModelConfig c = TinyDense(false, true);
  c.arch = Architecture::kQwen3;
  c.qk_norm = QkNorm::kPerHead;
  CompareWithReference({"qwen3", c, {2, 6}, {}});
}

TEST(TrainModel, Qwen3MoeQkNormMatchesReference) {
  ModelConfig c = TinyMoe(RouterType::kMixtral, 4, 2);
  c.arch = Architecture::kQwen3Moe;
  c.qk_norm = QkNorm::kPerHead;
  c.qkv_bias = false;
  c.moe.every = 2;
  LossCoefficients coef;
  coef.aux = 0.01;
  CompareWithReference({"qwen3 moe", c, {2, 5}, coef});
}

TEST(TrainModel, DenseTiedNoBiasMatchesReference) {
  CompareWithReference({"dense tied", TinyDense(false, true), {3, 5}, {}});
}

TEST(TrainModel, MoeMixtralSharedExpertAllLossesMatchesReference) {
  ModelConfig c = TinyMoe(RouterType::kMixtral, 4, 2);
  c.moe.shared_intermediate = 10;
  LossCoefficients coef{0.1, 0.01, 0.02, 0.003, 0.004};
  CompareWithReference({"mixtral shared", c, {2, 7}, coef});
}

TEST(TrainModel, MoeStCapacityDropByProbabilityMatchesReference) {
  ModelConfig c = TinyMoe(RouterType::kSt, 4, 2);
  c.moe.capacity_factor = 0.75;
  c.moe.drop_policy = DropPolicy::kProbability;
  LossCoefficients coef{0.05, 0.01, 0.01, 0, 0};
  CompareWithReference({"st cf drop-prob", c, {2, 8}, coef});
  // The case must really drop assignments, or it tests nothing about capacity.
  const TensorMap w = RandomWeights(c, 7);
  const Batch b = RandomBatch(c, {2, 8}, 11);
  auto ref = ReferenceLossAndGradients(c, w, b.tokens, b.targets, 8, coef);
  ASSERT_TRUE(ref.ok());
  EXPECT_GT(ref->dropped_assignments, 0);
}

TEST(TrainModel, MoeMixtralCapacityDropByPositionDenseLayerMatchesReference) {
  ModelConfig c = TinyMoe(RouterType::kMixtral, 4, 2);
  c.num_layers = 3;
  c.moe.dense_layers = {1};  // layers 0 and 2 are MoE, layer 1 dense
  c.moe.capacity_factor = 0.6;
  c.moe.drop_policy = DropPolicy::kPosition;
  LossCoefficients coef{0.01, 0.0, 0.001, 0, 0};
  CompareWithReference({"mixtral cf drop-pos", c, {2, 8}, coef});
}

TEST(TrainModel, MoeEmptyExpertAndUnevenLoadsMatchReference) {
  ModelConfig c = TinyMoe(RouterType::kMixtral, 8, 2);
  c.num_layers = 1;
  const BatchShape shape{1, 3};  // 6 assignments over 8 experts: at least two are empty
  LossCoefficients coef{0.01, 0.01, 0.0, 0, 0};
  CompareWithReference({"empty expert", c, shape, coef});
  auto m = TrainModel::Create(c, RandomWeights(c, 7), shape, coef);
  ASSERT_TRUE(m.ok());
  const Batch b = RandomBatch(c, shape, 11);
  ASSERT_TRUE((*m)->ForwardBackward(b.tokens, b.targets).ok());
  const std::vector<int64_t>& load = (*m)->moe_stats().at(0).tokens_per_expert;
  EXPECT_EQ(std::count(load.begin(), load.end(), 0), 8 - std::count_if(load.begin(), load.end(), [](int64_t x) {
                                                          return x > 0;
                                                        }));
  EXPECT_GE(std::count(load.begin(), load.end(), 0), 2);
  // An empty expert gets exactly zero gradient.
  for (const TrainModel::Param& p : (*m)->params()) {
    for (int64_t e = 0; e < 8; ++e) {
      if (load[static_cast<size_t>(e)] != 0 || p.name != ExpertTensorName(0, e, "down")) continue;
      for (float g : p.grad) EXPECT_EQ(g, 0.0f) << p.name;
    }
  }
}

TEST(TrainModel, GradientsAccumulateWithGradScale) {
  ModelConfig c = TinyMoe(RouterType::kMixtral, 4, 2);
  LossCoefficients coef{0.01, 0.01, 0.01, 0.01, 0.01};
  const TensorMap w = RandomWeights(c, 3);
  const BatchShape shape{2, 5};
  const Batch b = RandomBatch(c, shape, 5);
  auto one = TrainModel::Create(c, w, shape, coef);
  auto two = TrainModel::Create(c, w, shape, coef);
  ASSERT_TRUE(one.ok() && two.ok());
  ASSERT_TRUE((*one)->ForwardBackward(b.tokens, b.targets, 1.0f).ok());
  ASSERT_TRUE((*two)->ForwardBackward(b.tokens, b.targets, 0.5f).ok());
  ASSERT_TRUE((*two)->ForwardBackward(b.tokens, b.targets, 0.5f).ok());
  const auto p1 = (*one)->params();
  const auto p2 = (*two)->params();
  // Equal up to the order of fp32 additions (two half-sized sums instead of one).
  size_t nonzero = 0;
  for (size_t i = 0; i < p1.size(); ++i) {
    float scale = 0;
    for (float g : p1[i].grad) scale = std::max(scale, std::fabs(g));
    nonzero += scale > 0 ? 1 : 0;
    for (size_t j = 0; j < p1[i].grad.size(); ++j)
      ASSERT_NEAR(p1[i].grad[j], p2[i].grad[j], 1e-6f * scale) << p1[i].name << "[" << j << "]";
  }
  EXPECT_GT(nonzero, p1.size() / 2);
  (*two)->ZeroGrads();
  for (const TrainModel::Param& p : (*two)->params())
    for (float g : p.grad) ASSERT_EQ(g, 0.0f);
}

TEST(TrainModel, DeterministicBits) {
  ModelConfig c = TinyMoe(RouterType::kSt, 4, 2);
  c.moe.capacity_factor = 1.0;
  c.moe.shared_intermediate = 8;
  const TensorMap w = RandomWeights(c, 9);
  const BatchShape shape{3, 16};
  const Batch b = RandomBatch(c, shape, 1);
  std::vector<std::vector<float>> runs;
  for (int r = 0; r < 2; ++r) {
    auto m = TrainModel::Create(c, w, shape, {0.01, 0.01, 0.01, 0.0, 0.0});
    ASSERT_TRUE(m.ok());
    ASSERT_TRUE((*m)->ForwardBackward(b.tokens, b.targets).ok());
    std::vector<float> all;
    for (const TrainModel::Param& p : (*m)->params()) all.insert(all.end(), p.grad.begin(), p.grad.end());
    runs.push_back(std::move(all));
  }
  ASSERT_EQ(runs[0].size(), runs[1].size());
  EXPECT_EQ(std::memcmp(runs[0].data(), runs[1].data(), runs[0].size() * sizeof(float)), 0);
}

TEST(TrainModel, StepAllocatesNothing) {
  ModelConfig c = TinyMoe(RouterType::kMixtral, 4, 2);
  c.moe.capacity_factor = 0.8;
  c.moe.shared_intermediate = 8;
  const BatchShape shape{2, 8};
  auto m = TrainModel::Create(c, RandomWeights(c, 2), shape, {0.01, 0.01, 0.01, 0.01, 0.01});
  ASSERT_TRUE(m.ok());
  const Batch b = RandomBatch(c, shape, 3);
  ASSERT_TRUE((*m)->ForwardBackward(b.tokens, b.targets).ok());  // warm up thread pools
  const int64_t before = g_allocations.load();
  const bool ok1 = (*m)->ForwardBackward(b.tokens, b.targets, 0.5f).ok();
  const bool ok2 = (*m)->Evaluate(b.tokens, b.targets).ok();
  const int64_t after = g_allocations.load();
  EXPECT_TRUE(ok1 && ok2);
  EXPECT_EQ(after - before, 0);
  // The counter works: Create allocates.
  auto again = TrainModel::Create(c, RandomWeights(c, 2), shape, {});
  EXPECT_GT(g_allocations.load(), after);
}

TEST(TrainModel, ExportRoundTripsAndNamesParams) {
  const ModelConfig c = TinyDense(true, false);
  const TensorMap w = RandomWeights(c, 4);
  auto m = TrainModel::Create(c, w, {1, 4}, {});
  ASSERT_TRUE(m.ok());
  const TensorMap out = (*m)->ExportTensors();
  ASSERT_EQ(out.size(), w.size());
  for (const auto& [name, t] : w) {
    ASSERT_TRUE(out.count(name)) << name;
    EXPECT_EQ(out.at(name).shape(), t.shape());
    EXPECT_EQ(std::memcmp(out.at(name).bytes(), t.bytes(), t.nbytes()), 0) << name;
  }
  for (const TrainModel::Param& p : (*m)->params()) {
    const bool no_decay = p.name == "embed" || p.name == "norm" || p.name.find("norm") != std::string::npos ||
                          p.name.find(".b") != std::string::npos;
    EXPECT_EQ(p.decay, !no_decay) << p.name;
  }
}

TEST(TrainModel, RefusesBadInput) {
  const ModelConfig c = TinyDense(true, false);
  TensorMap w = RandomWeights(c, 4);
  auto m = TrainModel::Create(c, w, {1, 4}, {});
  ASSERT_TRUE(m.ok());
  std::vector<int32_t> tok = {1, 2, 3, 4}, tgt = {1, 2, 3, 4};
  EXPECT_FALSE((*m)->ForwardBackward(std::span<const int32_t>(tok).first(3), tgt).ok());
  tok[2] = 37;
  EXPECT_FALSE((*m)->ForwardBackward(tok, tgt).ok());
  tok[2] = 3;
  tgt[0] = 99;
  EXPECT_FALSE((*m)->Evaluate(tok, tgt).ok());
  EXPECT_FALSE(TrainModel::Create(c, w, {0, 4}, {}).ok());
  ModelConfig k1 = TinyMoe(RouterType::kMixtral, 4, 1);
  EXPECT_FALSE(TrainModel::Create(k1, RandomWeights(k1, 1), {1, 4}, {}).ok());
  w.erase("layers.1.wo");
  auto missing = TrainModel::Create(c, w, {1, 4}, {});
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find("layers.1.wo"), std::string::npos);
  w["layers.1.wo"] = Tensor::Zeros(DType::kF32, {3, 3});
  EXPECT_FALSE(TrainModel::Create(c, w, {1, 4}, {}).ok());
}

}  // namespace
// Inference mode (escale eval): the same losses and logits bit for bit, with no gradient buffers,
// and a training step refused.
TEST(TrainModel, InferenceModeEvaluatesIdenticallyWithoutGradients) {
  for (const int variant : {0, 1, 2}) {  // dense; MoE; dense and MoE layers with a shared expert
    const bool moe = variant > 0;
    ModelConfig c = moe ? TinyMoe(RouterType::kMixtral, 4, 2) : TinyDense(true, false);
    if (variant == 2) {
      c.arch = Architecture::kQwen2Moe;
      c.num_layers = 3;
      c.moe.every = 2;
      c.moe.shared_intermediate = 20;
    }
    const TensorMap w = RandomWeights(c, 9);
    const Batch b = RandomBatch(c, {2, 6}, 4);
    // Router terms too: an inference-mode model keeps one layer's activations, so they must be
    // taken while each layer runs.
    LossCoefficients coef;
    coef.aux = 0.01;
    coef.router_z = 0.001;
    auto train = TrainModel::Create(c, w, {2, 6}, coef);
    auto infer = TrainModel::Create(c, w, {2, 6, /*training=*/false}, coef);
    ASSERT_TRUE(train.ok() && infer.ok()) << "variant " << variant;
    auto lt = (*train)->Evaluate(b.tokens, b.targets);
    auto li = (*infer)->Evaluate(b.tokens, b.targets);
    ASSERT_TRUE(lt.ok() && li.ok());
    EXPECT_EQ(lt->total, li->total);
    EXPECT_EQ(lt->ce, li->ce);
    EXPECT_EQ(lt->aux, li->aux);
    EXPECT_EQ(lt->router_z, li->router_z);
    EXPECT_EQ(lt->router_max_z, li->router_max_z);
    if (moe) {
      EXPECT_GT(li->aux, 0.0);
    }
    ASSERT_EQ((*train)->moe_stats().size(), (*infer)->moe_stats().size());
    for (size_t i = 0; i < (*infer)->moe_stats().size(); ++i) {
      EXPECT_EQ((*train)->moe_stats()[i].router_entropy, (*infer)->moe_stats()[i].router_entropy);
      EXPECT_EQ((*train)->moe_stats()[i].tokens_per_expert,
                (*infer)->moe_stats()[i].tokens_per_expert);
    }
    const auto a = (*train)->logits(), z = (*infer)->logits();
    ASSERT_EQ(a.size(), z.size());
    EXPECT_TRUE(std::equal(a.begin(), a.end(), z.begin()));
    for (const TrainModel::Param& p : (*infer)->params()) {
      EXPECT_TRUE(p.grad.empty()) << p.name;
      EXPECT_FALSE(p.value.empty()) << p.name;
    }
    EXPECT_FALSE((*infer)->ForwardBackward(b.tokens, b.targets).ok());
  }
}

}  // namespace escale
