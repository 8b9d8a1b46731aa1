// Every reference op's hand-written backward against complex-step derivatives of its templated
// forward, on fresh random inputs and several shapes (degenerate ones included: T = 1, one head,
// one KV head). MoE cases cover uneven expert loads, an empty expert and capacity-dropped tokens.
#include <gtest/gtest.h>

#include <algorithm>

#include "ops/cpu/reference_backward.h"
#include "ops/cpu/reference_losses.h"
#include "ops/cpu/reference_ops.h"
#include "ops/cpu/reference_routing.h"
#include "ops/op_grad_check.h"

namespace escale {
namespace {

using testing::Buffers;
using testing::C;
using testing::CheckOpGradients;
using testing::OpCase;
using testing::Rng;
namespace ref = ops::ref;

size_t Z(int64_t i) { return static_cast<size_t>(i); }

std::vector<double> Zeros(size_t n) { return std::vector<double>(n, 0.0); }

TEST(OpGrad, Linear) {
  struct Shape { int64_t T, K, N; bool bias; };
  uint32_t seed = 100;
  for (const Shape s : {Shape{1, 1, 1, false}, Shape{3, 5, 4, true}, Shape{7, 2, 9, true}, Shape{2, 6, 3, false}}) {
    Rng rng(++seed);
    OpCase op;
    op.name = "linear T=" + std::to_string(s.T) + " K=" + std::to_string(s.K) + " N=" + std::to_string(s.N);
    op.inputs = {rng.Vector(Z(s.T * s.K)), rng.Vector(Z(s.N * s.K)), rng.Vector(Z(s.N))};
    op.forward = [s](const std::vector<std::vector<C>>& in) {
      std::vector<C> y(Z(s.T * s.N));
      ref::Linear(in[0].data(), s.T, s.K, in[1].data(), s.bias ? in[2].data() : nullptr, s.N, y.data());
      return y;
    };
    op.backward = [s](const Buffers& in, const std::vector<double>& dy) {
      Buffers g = {Zeros(in[0].size()), Zeros(in[1].size()), Zeros(in[2].size())};
      ref::LinearBackward(in[0].data(), s.T, s.K, in[1].data(), s.N, dy.data(), g[0].data(), g[1].data(),
                          s.bias ? g[2].data() : nullptr);
      return g;
    };
    CheckOpGradients(op, seed);
  }
}

TEST(OpGrad, RmsNorm) {
  struct Shape { int64_t T, H; double eps; };
  uint32_t seed = 200;
  for (const Shape s : {Shape{1, 1, 1e-6}, Shape{3, 8, 1e-6}, Shape{5, 3, 1e-2}}) {
    Rng rng(++seed);
    OpCase op;
    op.name = "rmsnorm H=" + std::to_string(s.H);
    op.inputs = {rng.Vector(Z(s.T * s.H)), rng.Vector(Z(s.H), 0.5, 1.5)};
    op.forward = [s](const std::vector<std::vector<C>>& in) {
      std::vector<C> y(Z(s.T * s.H));
      ref::RmsNorm(in[0].data(), s.T, s.H, in[1].data(), s.eps, y.data());
      return y;
    };
    op.backward = [s](const Buffers& in, const std::vector<double>& dy) {
      Buffers g = {Zeros(in[0].size()), Zeros(in[1].size())};
      ref::RmsNormBackward(in[0].data(), s.T, s.H, in[1].data(), s.eps, dy.data(), g[0].data(), g[1].data());
      return g;
    };
    CheckOpGradients(op, seed);
  }
}

TEST(OpGrad, Rope) {
  struct Shape { int64_t T, heads, hd; };
  uint32_t seed = 300;
  for (const Shape s : {Shape{1, 1, 2}, Shape{4, 3, 6}, Shape{6, 2, 8}}) {
    Rng rng(++seed);
    std::vector<double> inv(Z(s.hd / 2));
    for (int64_t j = 0; j < s.hd / 2; ++j) inv[Z(j)] = std::pow(10000.0, -2.0 * double(j) / double(s.hd));
    const ref::RopeTables rt = ref::MakeRopeTables(inv, s.T);
    OpCase op;
    op.name = "rope hd=" + std::to_string(s.hd);
    op.inputs = {rng.Vector(Z(s.T * s.heads * s.hd))};
    op.forward = [s, rt](const std::vector<std::vector<C>>& in) {
      std::vector<C> y = in[0];
      ref::ApplyRope(y.data(), s.T, s.heads, s.hd, rt);
      return y;
    };
    op.backward = [s, rt](const Buffers&, const std::vector<double>& dy) {
      Buffers g = {dy};
      ref::RopeBackward(g[0].data(), s.T, s.heads, s.hd, rt);
      return g;
    };
    CheckOpGradients(op, seed);
  }
}

TEST(OpGrad, CausalGqaAttention) {
  struct Shape { int64_t T, nh, nkv, hd; };
  uint32_t seed = 400;
  for (const Shape s : {Shape{1, 1, 1, 2}, Shape{4, 4, 2, 4}, Shape{5, 4, 1, 2}, Shape{3, 2, 2, 6}}) {
    Rng rng(++seed);
    OpCase op;
    op.name = "attention T=" + std::to_string(s.T) + " nh=" + std::to_string(s.nh) + " nkv=" + std::to_string(s.nkv);
    op.inputs = {rng.Vector(Z(s.T * s.nh * s.hd), -2, 2), rng.Vector(Z(s.T * s.nkv * s.hd), -2, 2),
                 rng.Vector(Z(s.T * s.nkv * s.hd))};
    op.forward = [s](const std::vector<std::vector<C>>& in) {
      std::vector<C> y(Z(s.T * s.nh * s.hd));
      ref::CausalAttention(in[0].data(), in[1].data(), in[2].data(), s.T, s.nh, s.nkv, s.hd, y.data());
      return y;
    };
    op.backward = [s](const Buffers& in, const std::vector<double>& dy) {
      std::vector<double> y(Z(s.T * s.nh * s.hd)), probs(Z(s.nh * s.T * s.T));
      ref::CausalAttention(in[0].data(), in[1].data(), in[2].data(), s.T, s.nh, s.nkv, s.hd, y.data(), probs.data());
      Buffers g = {Zeros(in[0].size()), Zeros(in[1].size()), Zeros(in[2].size())};
      ref::CausalAttentionBackward(in[0].data(), in[1].data(), in[2].data(), probs.data(), s.T, s.nh, s.nkv, s.hd,
                                   dy.data(), g[0].data(), g[1].data(), g[2].data());
      return g;
    };
    CheckOpGradients(op, seed);
  }
}

TEST(OpGrad, SwiGlu) {
  struct Shape { int64_t T, H, F; };
  uint32_t seed = 500;
  for (const Shape s : {Shape{1, 3, 2}, Shape{4, 5, 7}, Shape{2, 1, 1}}) {
    Rng rng(++seed);
    OpCase op;
    op.name = "swiglu H=" + std::to_string(s.H) + " F=" + std::to_string(s.F);
    op.inputs = {rng.Vector(Z(s.T * s.H), -2, 2), rng.Vector(Z(s.F * s.H)), rng.Vector(Z(s.F * s.H)),
                 rng.Vector(Z(s.H * s.F))};
    op.forward = [s](const std::vector<std::vector<C>>& in) {
      std::vector<C> y(Z(s.T * s.H));
      ref::SwiGlu(in[0].data(), s.T, s.H, in[1].data(), in[2].data(), in[3].data(), s.F, y.data());
      return y;
    };
    op.backward = [s](const Buffers& in, const std::vector<double>& dy) {
      Buffers g = {Zeros(in[0].size()), Zeros(in[1].size()), Zeros(in[2].size()), Zeros(in[3].size())};
      ref::SwiGluBackward(in[0].data(), s.T, s.H, in[1].data(), in[2].data(), in[3].data(), s.F, dy.data(),
                          g[0].data(), g[1].data(), g[2].data(), g[3].data());
      return g;
    };
    CheckOpGradients(op, seed);
  }
}

TEST(OpGrad, Softmax) {
  Rng rng(600);
  OpCase op;
  op.name = "softmax";
  op.inputs = {rng.Vector(15, -3, 3)};
  op.forward = [](const std::vector<std::vector<C>>& in) {
    std::vector<C> y(15);
    ref::Softmax(in[0].data(), 3, 5, y.data());
    return y;
  };
  op.backward = [](const Buffers& in, const std::vector<double>& dy) {
    std::vector<double> y(15);
    ref::Softmax(in[0].data(), 3, 5, y.data());
    Buffers g = {Zeros(15)};
    ref::SoftmaxBackward(y.data(), 3, 5, dy.data(), g[0].data());
    return g;
  };
  CheckOpGradients(op, 600);
}

struct RoutingCase {
  int64_t T, E, k;
  bool mixtral;
  double cf;
  bool by_position;
};

ref::RoutingParams ParamsOf(const RoutingCase& s) {
  ref::RoutingParams p;
  p.experts = s.E;
  p.top_k = s.k;
  p.softmax_after_topk = s.mixtral;
  p.capacity_factor = s.cf;
  p.drop_by_position = s.by_position;
  return p;
}

// Router logits skewed towards low expert indices so loads are uneven, the last expert gets no
// token and a capacity limit drops some assignments.
std::vector<double> SkewedLogits(Rng& rng, const RoutingCase& s) {
  std::vector<double> l(Z(s.T * s.E));
  for (int64_t t = 0; t < s.T; ++t)
    for (int64_t e = 0; e < s.E; ++e)
      l[Z(t * s.E + e)] = rng.Uniform(-1, 1) - (e == s.E - 1 ? 6.0 : 0.7 * double(e));
  return l;
}

const std::vector<RoutingCase>& RoutingCases() {
  static const std::vector<RoutingCase> cases = {
      {6, 4, 2, true, 0.0, false},  {6, 4, 2, false, 0.0, false}, {8, 4, 2, true, 1.0, false},
      {8, 4, 2, false, 1.0, true},  {5, 3, 1, false, 0.8, false}, {7, 5, 3, true, 1.25, true},
  };
  return cases;
}

TEST(OpGrad, RoutingWeightsWithUnevenLoadsEmptyExpertAndDrops) {
  uint32_t seed = 700;
  int with_drops = 0;
  for (const RoutingCase& s : RoutingCases()) {
    Rng rng(++seed);
    const ref::RoutingParams p = ParamsOf(s);
    const std::vector<double> logits = SkewedLogits(rng, s);
    const ref::Routing r = ref::RouteTokens(logits.data(), s.T, p);
    EXPECT_EQ(r.Load(s.E - 1), 0) << "the last expert should be empty";
    bool uneven = false;
    for (int64_t e = 1; e + 1 < s.E; ++e) uneven = uneven || r.Load(e) != r.Load(0);
    EXPECT_TRUE(uneven) << "loads of the non-empty experts should differ";
    const int64_t dropped = std::count(r.kept.begin(), r.kept.end(), uint8_t{0});
    if (s.cf > 0) {
      EXPECT_GT(dropped, 0) << "capacity " << r.capacity << " should drop something";
      for (int64_t e = 0; e < s.E; ++e) {
        int64_t kept = 0;
        for (size_t a = 0; a < r.expert.size(); ++a) kept += (r.expert[a] == e && r.kept[a]) ? 1 : 0;
        EXPECT_LE(kept, r.capacity);
      }
      with_drops += dropped > 0 ? 1 : 0;
    } else {
      EXPECT_EQ(dropped, 0);
    }
    OpCase op;
    op.name = std::string("routing ") + (s.mixtral ? "mixtral" : "st") + " cf=" + std::to_string(s.cf);
    op.inputs = {logits};
    op.forward = [r, p](const std::vector<std::vector<C>>& in) { return ref::RoutingWeights(in[0].data(), r, p); };
    op.backward = [r, p](const Buffers& in, const std::vector<double>& dy) {
      Buffers g = {Zeros(in[0].size())};
      ref::RoutingWeightsBackward(in[0].data(), r, p, dy.data(), g[0].data());
      return g;
    };
    CheckOpGradients(op, seed);
  }
  EXPECT_EQ(with_drops, 4);
}

TEST(OpGrad, MoeCombine) {
  uint32_t seed = 800;
  for (const RoutingCase& s : RoutingCases()) {
    Rng rng(++seed);
    const ref::RoutingParams p = ParamsOf(s);
    const std::vector<double> logits = SkewedLogits(rng, s);
    const ref::Routing r = ref::RouteTokens(logits.data(), s.T, p);
    constexpr int64_t H = 3;
    OpCase op;
    op.name = "moe combine";
    op.inputs = {rng.Vector(Z(s.T * s.k * H)), r.weight};
    op.forward = [r](const std::vector<std::vector<C>>& in) {
      std::vector<C> y(Z(r.tokens * H));
      ref::MoeCombine(in[0].data(), in[1].data(), r, H, y.data());
      return y;
    };
    op.backward = [r](const Buffers& in, const std::vector<double>& dy) {
      Buffers g = {Zeros(in[0].size()), Zeros(in[1].size())};
      ref::MoeCombineBackward(in[0].data(), in[1].data(), r, H, dy.data(), g[0].data(), g[1].data());
      return g;
    };
    CheckOpGradients(op, seed);
  }
}

// Losses are scalars: the projection r has one element, so the check is d(r·loss).
TEST(OpGrad, OutputLosses) {
  const int64_t T = 5, V = 7;
  Rng rng(900);
  const std::vector<int32_t> targets = {3, -1, 0, 6, 2};  // one ignored position
  const std::vector<double> logits = rng.Vector(Z(T * V), -3, 3);
  using Fwd = std::function<C(const C*)>;
  using Bwd = std::function<void(const double*, double, double*)>;
  struct Loss { const char* name; Fwd f; Bwd b; };
  const std::vector<Loss> losses = {
      {"cross entropy", [&](const C* y) { return ref::CrossEntropyMean(y, T, V, targets.data()); },
       [&](const double* y, double s, double* g) { ref::CrossEntropyMeanBackward(y, T, V, targets.data(), s, g); }},
      {"output z", [&](const C* y) { return ref::OutputZLoss(y, T, V, targets.data()); },
       [&](const double* y, double s, double* g) { ref::OutputZLossBackward(y, T, V, targets.data(), s, g); }},
      {"output max-z", [&](const C* y) { return ref::OutputMaxZLoss(y, T, V, targets.data()); },
       [&](const double* y, double s, double* g) { ref::OutputMaxZLossBackward(y, T, V, targets.data(), s, g); }},
  };
  for (const Loss& l : losses) {
    OpCase op;
    op.name = l.name;
    op.inputs = {logits};
    op.forward = [&l](const std::vector<std::vector<C>>& in) { return std::vector<C>{l.f(in[0].data())}; };
    op.backward = [&l](const Buffers& in, const std::vector<double>& dy) {
      Buffers g = {Zeros(in[0].size())};
      l.b(in[0].data(), dy[0], g[0].data());
      return g;
    };
    CheckOpGradients(op, 901);
  }
  // Hand values: CE of uniform logits is log V; z-loss of zero logits is (log V)^2.
  const std::vector<double> zeros(Z(T * V), 0.0);
  EXPECT_NEAR(ref::CrossEntropyMean(zeros.data(), T, V, targets.data()), std::log(double(V)), 1e-15);
  EXPECT_NEAR(ref::OutputZLoss(zeros.data(), T, V, targets.data()), std::pow(std::log(double(V)), 2), 1e-14);
  int64_t counted = 0;
  (void)ref::CrossEntropyMean(zeros.data(), T, V, targets.data(), &counted);
  EXPECT_EQ(counted, 4);
}

TEST(OpGrad, RouterLosses) {
  uint32_t seed = 1000;
  for (const RoutingCase& s : RoutingCases()) {
    Rng rng(++seed);
    const std::vector<double> logits = SkewedLogits(rng, s);
    const ref::Routing r = ref::RouteTokens(logits.data(), s.T, ParamsOf(s));
    std::vector<int64_t> load(Z(s.E));
    for (int64_t e = 0; e < s.E; ++e) load[Z(e)] = r.Load(e);
    using Fwd = std::function<C(const C*)>;
    using Bwd = std::function<void(const double*, double, double*)>;
    struct Loss { const char* name; Fwd f; Bwd b; };
    const std::vector<Loss> losses = {
        {"aux", [&](const C* y) { return ref::AuxLoss(y, s.T, s.E, s.k, load); },
         [&](const double* y, double sc, double* g) { ref::AuxLossBackward(y, s.T, s.E, s.k, load, sc, g); }},
        {"router max-z", [&](const C* y) { return ref::RouterMaxZLoss(y, s.T, s.E); },
         [&](const double* y, double sc, double* g) { ref::RouterMaxZLossBackward(y, s.T, s.E, sc, g); }},
        {"router z", [&](const C* y) { return ref::RouterZLoss(y, s.T, s.E); },
         [&](const double* y, double sc, double* g) { ref::RouterZLossBackward(y, s.T, s.E, sc, g); }},
    };
    for (const Loss& l : losses) {
      OpCase op;
      op.name = l.name;
      op.inputs = {logits};
      op.forward = [&l](const std::vector<std::vector<C>>& in) { return std::vector<C>{l.f(in[0].data())}; };
      op.backward = [&l](const Buffers& in, const std::vector<double>& dy) {
        Buffers g = {Zeros(in[0].size())};
        l.b(in[0].data(), dy[0], g[0].data());
        return g;
      };
      CheckOpGradients(op, seed);
    }
  }
}

// Switch aux loss: uniform routing gives exactly 1 (docs/method.md §4), not k as in Hugging Face.
TEST(OpGrad, AuxLossOfUniformRoutingIsOne) {
  const int64_t T = 8, E = 4, k = 2;
  const std::vector<double> logits(Z(T * E), 0.3);  // equal logits: P_e = 1/E
  const std::vector<int64_t> load = {4, 4, 4, 4};   // T*k/E each
  EXPECT_NEAR(ref::AuxLoss(logits.data(), T, E, k, load), 1.0, 1e-15);
  // All assignments on expert 0 with all probability there: E * 1 * 1 = E.
  std::vector<double> peaked(Z(T * E), -50.0);
  for (int64_t t = 0; t < T; ++t) peaked[Z(t * E)] = 50.0;
  EXPECT_NEAR(ref::AuxLoss(peaked.data(), T, E, k, std::vector<int64_t>{16, 0, 0, 0}), double(E), 1e-12);
}

TEST(OpGrad, CapacityIsCeilOfCfTkOverE) {
  EXPECT_EQ(ref::ExpertCapacity(1.0, 8, 2, 4), 4);
  EXPECT_EQ(ref::ExpertCapacity(1.25, 7, 3, 5), 6);  // 1.25*21/5 = 5.25
  EXPECT_EQ(ref::ExpertCapacity(4.0, 3, 2, 8), 3);   // 4*6/8 = 3 exactly
}

TEST(OpGrad, CapacityIsUnchangedWhenKAndEGrowByTheSameFactor) {
  // CF = 0.1*28 = 2.8000000000000003, T = 10, k/E = 1/4 and 5/20: the unreduced products,
  // CF*10/4 -> 8 and CF*50/20 -> 7, round to different sides of 7 (worked out in Python).
  const double cf = 0.1 * 28;
  EXPECT_EQ(ref::ExpertCapacity(cf, 10, 1, 4), 8);
  EXPECT_EQ(ref::ExpertCapacity(cf, 10, 5, 20), 8);
  for (int64_t m = 2; m <= 9; ++m)
    for (int64_t T = 1; T <= 40; ++T)
      for (const double f : {0.3, 1.1, 1.4000000000000001, 2.2, cf})
        EXPECT_EQ(ref::ExpertCapacity(f, T, m * 2, m * 6), ref::ExpertCapacity(f, T, 2, 6)) << f << " " << T << " " << m;
}

}  // namespace
}  // namespace escale
