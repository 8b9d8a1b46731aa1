// The streaming conversions (ScaleUpModel / ScaleOutModel: producer thread, verbatim copies from
// the mapping, expert tensors computed once and written E times, released source pages) write
// exactly the bytes of the straightforward path: each recipe computed on its own in fp32 (fp64 for
// f64 output) into a fresh vector and rounded once. The producers themselves are checked against
// the formulas of scale_up.h / scale_out.h written out element by element here.
#include <gtest/gtest.h>
#include <omp.h>

#include <cstring>
#include <map>
#include <string>
#include <vector>

#include "io/hf_model.h"
#include "support/test_support.h"
#include "surgery/convert.h"
#include "surgery_fixtures.h"

namespace escale::surgery {
namespace {

using escale::testing::TempDir;
using Bytes = std::vector<std::byte>;

// Big enough that tensors cross the writer's 1 MB splice threshold and the producers' parallel
// threshold (2^18 elements): gate/up are 768 x 384.
ModelConfig MediumConfig(bool bias) {
  ModelConfig c = testing::TinyConfig({true, bias, false}, 2);
  c.vocab_size = 700;
  c.hidden_size = 384;
  c.num_heads = 6;
  c.num_kv_heads = 2;
  c.head_dim = 64;
  c.intermediate_size = 768;
  return c;
}

void WriteSource(const std::string& dir, ModelConfig c, DType dtype, uint64_t seed) {
  c.dtype = dtype;
  WriteOptions o;
  o.dtype = dtype;
  o.progress = false;
  const Status st = WriteHfModel(dir, c, testing::RandomModel(c, seed, dtype), o);
  ASSERT_TRUE(st.ok()) << st.message();
}

template <class Produce>
Bytes Rounded(DType out, int64_t numel, Produce&& produce) {
  const auto n = static_cast<size_t>(numel);
  Bytes b(n * static_cast<size_t>(DTypeSize(out)));
  if (out == DType::kF64) {
    const std::vector<double> v = produce(double{});
    std::memcpy(b.data(), v.data(), b.size());
  } else {
    const std::vector<float> v = produce(float{});
    EXPECT_TRUE(ConvertFromF32(v.data(), n, out, b.data()).ok());
  }
  return b;
}

std::map<std::string, Bytes> ExpectedScaleUp(const HfModel& src, const ScaleUpOptions& opt,
                                             DType out) {
  const ScaleUpPlan plan = PlanScaleUp(src.config, opt).value();
  const SourceFn source = SourceFromMap(src.tensors);
  std::map<std::string, Bytes> m;
  for (const UpRecipe& r : plan.recipes)
    m[r.target.name] = Rounded(out, ShapeNumel(r.target.shape), [&](auto zero) {
      return ProduceScaleUp<decltype(zero)>(plan, r, source).value();
    });
  return m;
}

std::map<std::string, Bytes> ExpectedScaleOut(const HfModel& src, const ScaleOutOptions& opt,
                                              DType out) {
  const ScaleOutPlan plan = PlanScaleOut(src.config, opt).value();
  const SourceFn source = SourceFromMap(src.tensors);
  std::map<std::string, Bytes> m;
  for (const OutRecipe& r : plan.recipes)
    m[r.target.name] = Rounded(out, ShapeNumel(r.target.shape), [&](auto zero) {
      return ProduceScaleOut<decltype(zero)>(plan, r, source).value();
    });
  return m;
}

void ExpectSameBytes(const std::string& dir, const std::map<std::string, Bytes>& want, DType out) {
  auto got = ReadHfModel(dir);
  ASSERT_TRUE(got.ok()) << got.status().message();
  EXPECT_EQ(got->tensors.size(), want.size());
  size_t differing = 0;
  for (const auto& [name, bytes] : want) {
    const Tensor& t = got->at(name);
    ASSERT_EQ(t.dtype(), out) << name;
    ASSERT_EQ(t.nbytes(), bytes.size()) << name;
    if (std::memcmp(t.bytes(), bytes.data(), bytes.size()) != 0) {
      ++differing;
      ADD_FAILURE() << name << " differs from the straightforward path";
    }
  }
  EXPECT_EQ(differing, 0u);
}

struct DTypes {
  DType source, out;
};

std::string Name(const ::testing::TestParamInfo<DTypes>& i) {
  return std::string(DTypeName(i.param.source)) + "_to_" + std::string(DTypeName(i.param.out));
}

class Streaming : public ::testing::TestWithParam<DTypes> {};

TEST_P(Streaming, ScaleUpWritesTheBytesOfTheStraightforwardPath) {
  const DTypes d = GetParam();
  TempDir tmp;
  WriteSource(tmp / "src", MediumConfig(false), d.source, 11);
  const HfModel src = ReadHfModel(tmp / "src").value();
  ScaleUpOptions uneven;  // hidden x5/3: copy counts 1 and 2; zeroed depth copies
  uneven.hidden = 640;
  uneven.heads = 10;
  uneven.intermediate = 1152;
  uneven.layers = 3;
  uneven.depth = DepthMethod::kZero;
  ScaleUpOptions aki;  // next-layer donors, mean-pooled KV heads, random maps, stacked depth
  aki.method = ScaleUpMethod::kAki;
  aki.hidden = 512;
  aki.heads = 8;
  aki.kv_heads = 1;
  aki.layers = 4;
  aki.map = MapKind::kRandom;
  aki.seed = 5;
  ScaleUpOptions deeper;  // depth only: every tensor is a verbatim copy
  deeper.layers = 5;
  int k = 0;
  for (const ScaleUpOptions& o : {uneven, aki, deeper}) {
    SCOPED_TRACE("scale-up options #" + std::to_string(k));
    ConvertOptions conv;
    conv.dtype = d.out;
    conv.progress = false;
    const std::string out = tmp / ("up" + std::to_string(k++));
    auto r = ScaleUpModel(tmp / "src", out, o, conv);
    ASSERT_TRUE(r.ok()) << r.status().message();
    ExpectSameBytes(out, ExpectedScaleUp(src, o, d.out), d.out);
  }
}

TEST_P(Streaming, ScaleOutWritesTheBytesOfTheStraightforwardPath) {
  const DTypes d = GetParam();
  TempDir tmp;
  WriteSource(tmp / "src", MediumConfig(false), d.source, 12);
  const HfModel src = ReadHfModel(tmp / "src").value();
  ScaleOutOptions plain;  // experts are verbatim slices (same dtype) or shared buffers
  plain.experts = 4;
  plain.top_k = 2;
  ScaleOutOptions granular = plain;  // column slices of down_proj times G/2, shared expert
  granular.experts = 2;
  granular.granularity = 2;
  granular.shared_expert = true;
  ScaleOutOptions perturbed = plain;  // every expert differs: nothing may be shared
  perturbed.experts = 3;
  perturbed.expert_noise = 0.01;
  perturbed.reinit_ratio = 0.25;
  perturbed.seed = 3;
  ScaleOutOptions sparse_layers = plain;  // dense layers stay between MoE layers (Qwen2-MoE)
  sparse_layers.every = 2;
  int k = 0;
  for (const ScaleOutOptions& o : {plain, granular, perturbed, sparse_layers}) {
    SCOPED_TRACE("scale-out options #" + std::to_string(k));
    ConvertOptions conv;
    conv.dtype = d.out;
    conv.progress = false;
    const std::string out = tmp / ("out" + std::to_string(k++));
    auto r = ScaleOutModel(tmp / "src", out, o, conv);
    ASSERT_TRUE(r.ok()) << r.status().message();
    ExpectSameBytes(out, ExpectedScaleOut(src, o, d.out), d.out);
  }
}

INSTANTIATE_TEST_SUITE_P(DTypes, Streaming,
                         ::testing::Values(DTypes{DType::kF32, DType::kF32},
                                           DTypes{DType::kF32, DType::kBF16},
                                           DTypes{DType::kBF16, DType::kBF16},
                                           DTypes{DType::kBF16, DType::kF32},
                                           DTypes{DType::kF32, DType::kF64}),
                         Name);

// Threads only split rows: more of them must not change a bit.
TEST(Streaming, ThreadCountDoesNotChangeTheOutput) {
  TempDir tmp;
  WriteSource(tmp / "src", MediumConfig(true), DType::kF32, 13);
  ScaleUpOptions o;
  o.hidden = 640;
  o.heads = 10;
  o.intermediate = 1000;
  ConvertOptions conv;
  conv.progress = false;
  const int before = omp_get_max_threads();
  omp_set_num_threads(1);
  auto one = ScaleUpModel(tmp / "src", tmp / "one", o, conv);
  ASSERT_TRUE(one.ok()) << one.status().message();
  omp_set_num_threads(4);
  ASSERT_TRUE(ScaleUpModel(tmp / "src", tmp / "three", o, conv).ok());
  omp_set_num_threads(before);
  const HfModel a = ReadHfModel(tmp / "one").value(), b = ReadHfModel(tmp / "three").value();
  ASSERT_EQ(a.tensors.size(), b.tensors.size());
  for (const auto& [name, t] : a.tensors) {
    ASSERT_EQ(t.nbytes(), b.at(name).nbytes());
    EXPECT_EQ(std::memcmp(t.bytes(), b.at(name).bytes(), t.nbytes()), 0) << name;
  }
}

// The producers against their formulas, element by element:
// W'[i,j] = mean_{r in rows(i)} M[r, cols.src[j]] / C(cols.src[j]), M the source or, for a new row
// or column with a donor, the next layer's tensor; zeroed copies are 0.
std::vector<float> ScaleUpByFormula(const UpRecipe& r, const HfModel& m) {
  const std::vector<float> s = ToF32Vector(m.at(r.source)).value();
  const std::vector<float> nx = r.next.empty() ? s : ToF32Vector(m.at(r.next)).value();
  const DimMap& rows = *r.rows;
  const int64_t sc = r.cols ? r.cols->n_src : 1, dc = r.cols ? r.cols->n_dst : 1;
  std::vector<float> out(static_cast<size_t>(rows.n_dst * dc), 0.0f);
  if (r.zero) return out;
  for (int64_t i = 0; i < rows.n_dst; ++i)
    for (int64_t j = 0; j < dc; ++j) {
      const auto iu = static_cast<size_t>(i), ju = static_cast<size_t>(j);
      const int64_t c = r.cols ? r.cols->src[ju] : 0;
      const bool col_new = r.cols && r.cols->fresh[ju];
      const float div =
          r.divide_cols ? static_cast<float>(r.cols->count[static_cast<size_t>(c)]) : 1.0f;
      if (rows.pooled()) {
        float acc = 0;
        for (int64_t p : rows.pool[iu]) acc += (col_new ? nx : s)[static_cast<size_t>(p * sc + c)];
        out[static_cast<size_t>(i * dc + j)] = acc / static_cast<float>(rows.pool[iu].size()) / div;
      } else {
        const std::vector<float>& from = rows.fresh[iu] || col_new ? nx : s;
        out[static_cast<size_t>(i * dc + j)] =
            from[static_cast<size_t>(rows.src[iu] * sc + c)] / div;
      }
    }
  return out;
}

TEST(Streaming, ScaleUpProducerFollowsTheFormula) {
  TempDir tmp;
  WriteSource(tmp / "src", MediumConfig(true), DType::kBF16, 14);
  const HfModel src = ReadHfModel(tmp / "src").value();
  ScaleUpOptions o;
  o.method = ScaleUpMethod::kAki;
  o.hidden = 512;
  o.heads = 8;
  o.kv_heads = 1;
  o.intermediate = 1000;
  o.layers = 3;
  o.depth = DepthMethod::kZero;
  o.map = MapKind::kRandom;
  o.seed = 9;
  const ScaleUpPlan plan = PlanScaleUp(src.config, o).value();
  const SourceFn source = SourceFromMap(src.tensors);
  int compared = 0, with_donor = 0, pooled = 0;
  for (const UpRecipe& r : plan.recipes) {
    const std::vector<float> got = ProduceScaleUp<float>(plan, r, source).value();
    const std::vector<float> want = ScaleUpByFormula(r, src);
    ASSERT_EQ(got.size(), want.size()) << r.target.name;
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << r.target.name;
    ++compared;
    with_donor += r.next.empty() ? 0 : 1;
    pooled += r.rows->pooled() ? 1 : 0;
  }
  // The plan exercised every branch.
  EXPECT_EQ(compared, static_cast<int>(CanonicalTensors(plan.target).size()));
  EXPECT_GT(with_donor, 0);
  EXPECT_GT(pooled, 0);
}

TEST(Streaming, ScaleOutExpertsAreSlicesOfTheDenseFfn) {
  TempDir tmp;
  WriteSource(tmp / "src", MediumConfig(false), DType::kF32, 15);
  const HfModel src = ReadHfModel(tmp / "src").value();
  ScaleOutOptions o;
  o.experts = 2;
  o.top_k = 2;
  o.granularity = 3;  // f 768 -> slices of 256; down_proj x 3
  const ScaleOutPlan plan = PlanScaleOut(src.config, o).value();
  const SourceFn source = SourceFromMap(src.tensors);
  const int64_t H = 384, f = 768, fe = 256;
  int experts = 0;
  for (const OutRecipe& r : plan.recipes) {
    if (r.target.expert < 0) continue;
    ++experts;
    const int64_t s = r.target.expert % 3;
    const std::vector<float> got = ProduceScaleOut<float>(plan, r, source).value();
    const std::vector<float> dense = ToF32Vector(src.at(r.source)).value();
    std::vector<float> want(got.size());
    for (int64_t a = 0; a < fe; ++a)
      for (int64_t j = 0; j < H; ++j) {
        if (r.target.role == TensorRole::kExpertDown)
          want[static_cast<size_t>(j * fe + a)] =
              dense[static_cast<size_t>(j * f + s * fe + a)] * 3.0f;
        else
          want[static_cast<size_t>(a * H + j)] = dense[static_cast<size_t>((s * fe + a) * H + j)];
      }
    EXPECT_EQ(std::memcmp(got.data(), want.data(), got.size() * sizeof(float)), 0) << r.target.name;
  }
  EXPECT_EQ(experts, 2 * 6 * 3);  // layers x (experts x granularity) x (gate, up, down)
}

}  // namespace
}  // namespace escale::surgery
