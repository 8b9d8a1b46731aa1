// One benchmark per fp32 kernel of the fast engine, at a small shape (the smoke test runs these)
// and at the shape the kernel has in a real model (Qwen2.5-0.5B: hidden 896, FFN 4864, 14 query
// and 2 KV heads of 64, vocabulary 151,936; 2,048 tokens per step). Counters: FLOP/s for the
// matmul-like kernels, bytes/s for the memory-bound ones. Threads: OpenMP's default (all cores);
// BLAS single-threaded inside the kernels' own team, as in training.
//   build/bench/bench/escale_bench --benchmark_filter=/real
#include <benchmark/benchmark.h>

#include <cstdint>
#include <random>
#include <vector>

#include "ops/cpu/fast_attention.h"
#include "ops/cpu/fast_kernels.h"
#include "ops/cpu/fast_loss.h"

namespace escale::ops::fast {
namespace {

std::vector<float> Random(int64_t n, float scale = 1.0f) {
  std::mt19937 rng(1);
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(static_cast<size_t>(n));
  for (float& x : v) x = d(rng);
  return v;
}

void SetFlops(benchmark::State& state, double flops_per_iteration) {
  state.counters["FLOP/s"] = benchmark::Counter(flops_per_iteration, benchmark::Counter::kIsIterationInvariantRate);
}
void SetBytes(benchmark::State& state, double bytes_per_iteration) {
  state.SetBytesProcessed(static_cast<int64_t>(bytes_per_iteration) * state.iterations());
}

struct LinearShape {
  int64_t M, K, N;
};
constexpr LinearShape kLinearSmall{256, 128, 344}, kLinearReal{2048, 896, 4864};

// The forward y = x·Wᵀ, or the weight gradient dW += dyᵀ·x: the same FLOPs.
void RunLinear(benchmark::State& state, LinearShape s, bool weight_gradient) {
  UseSingleThreadedBlas();
  const auto x = Random(s.M * s.K), w = Random(s.N * s.K, 0.02f), dy = Random(s.M * s.N);
  std::vector<float> out(static_cast<size_t>(weight_gradient ? s.N * s.K : s.M * s.N));
  for (auto _ : state) {
    if (weight_gradient)
      LinearBackwardWeight(dy.data(), s.M, s.N, x.data(), s.K, out.data());
    else
      LinearForward(x.data(), s.M, s.K, w.data(), s.N, out.data());
    benchmark::DoNotOptimize(out.data());
  }
  SetFlops(state, 2.0 * double(s.M) * double(s.K) * double(s.N));
}
void BM_LinearForward(benchmark::State& state, LinearShape s) { RunLinear(state, s, false); }
void BM_LinearBackwardWeight(benchmark::State& state, LinearShape s) { RunLinear(state, s, true); }
BENCHMARK_CAPTURE(BM_LinearForward, small, kLinearSmall);
BENCHMARK_CAPTURE(BM_LinearForward, real, kLinearReal)->Unit(benchmark::kMillisecond);
BENCHMARK_CAPTURE(BM_LinearBackwardWeight, small, kLinearSmall);
BENCHMARK_CAPTURE(BM_LinearBackwardWeight, real, kLinearReal)->Unit(benchmark::kMillisecond);

// Expert FFN up-projection: the routed rows of each expert in one grouped call. Real: top-2 of 8
// experts over 2,048 tokens with a quarter-width FFN each (granular upcycling of the dense FFN),
// rows spread unevenly as routers do (expert e gets a share proportional to e + 1).
struct GroupedShape {
  int64_t groups, rows, K, N;
};
constexpr GroupedShape kGroupedSmall{4, 256, 128, 344}, kGroupedReal{8, 4096, 896, 1216};

void BM_GroupedLinearForward(benchmark::State& state, GroupedShape s) {
  UseSingleThreadedBlas();
  std::vector<int32_t> start(static_cast<size_t>(s.groups + 1), 0);
  const int64_t weight_sum = s.groups * (s.groups + 1) / 2;
  for (int64_t g = 0; g < s.groups; ++g)
    start[static_cast<size_t>(g + 1)] =
        static_cast<int32_t>(start[static_cast<size_t>(g)] + s.rows * (g + 1) / weight_sum);
  start.back() = static_cast<int32_t>(s.rows);
  const auto x = Random(s.rows * s.K);
  std::vector<std::vector<float>> w;
  std::vector<const float*> wp;
  for (int64_t g = 0; g < s.groups; ++g) w.push_back(Random(s.N * s.K, 0.02f));
  for (const auto& v : w) wp.push_back(v.data());
  std::vector<float> y(static_cast<size_t>(s.rows * s.N));
  for (auto _ : state) {
    GroupedLinearForward(x.data(), start.data(), s.groups, s.K, wp.data(), s.N, y.data());
    benchmark::DoNotOptimize(y.data());
  }
  SetFlops(state, 2.0 * double(s.rows) * double(s.K) * double(s.N));
}
BENCHMARK_CAPTURE(BM_GroupedLinearForward, small, kGroupedSmall);
BENCHMARK_CAPTURE(BM_GroupedLinearForward, real, kGroupedReal)->Unit(benchmark::kMillisecond);

constexpr AttentionShape kAttnSmall{2, 64, 4, 2, 32, 4 * 32, 2 * 32, 4 * 32, 1},
    kAttnReal{1, 2048, 14, 2, 64, 14 * 64, 2 * 64, 14 * 64, 1};

// Causal: about half of the T x T score and value products are computed.
double AttentionFlops(const AttentionShape& s) {
  return 2.0 * 2.0 * double(s.batch) * double(s.heads) * double(s.seq_len) * double(s.seq_len) *
         double(s.head_dim) / 2.0;
}

struct AttentionBuffers {
  std::vector<float> q, k, v, out, lse, scratch, dout, dq, dk, dv;
  explicit AttentionBuffers(AttentionShape& s) {
    s.threads = benchmark::CPUInfo::Get().num_cpus;
    const int64_t rows = s.batch * s.seq_len;
    q = Random(rows * s.q_ld);
    k = Random(rows * s.kv_ld);
    v = Random(rows * s.kv_ld);
    out.resize(static_cast<size_t>(rows * s.o_ld));
    lse.resize(static_cast<size_t>(s.batch * s.heads * s.seq_len));
    scratch.resize(static_cast<size_t>(AttentionScratchPerThread(s.seq_len) * s.threads));
    dout = Random(rows * s.o_ld);
    dq.resize(q.size());
    dk.resize(k.size());
    dv.resize(v.size());
  }
};

void BM_AttentionForward(benchmark::State& state, AttentionShape s) {
  UseSingleThreadedBlas();
  AttentionBuffers b(s);
  for (auto _ : state) {
    CausalAttentionForward(s, b.q.data(), b.k.data(), b.v.data(), b.out.data(), b.lse.data(), b.scratch.data());
    benchmark::DoNotOptimize(b.out.data());
  }
  SetFlops(state, AttentionFlops(s));
}
BENCHMARK_CAPTURE(BM_AttentionForward, small, kAttnSmall);
BENCHMARK_CAPTURE(BM_AttentionForward, real, kAttnReal)->Unit(benchmark::kMillisecond);

void BM_AttentionBackward(benchmark::State& state, AttentionShape s) {
  UseSingleThreadedBlas();
  AttentionBuffers b(s);
  CausalAttentionForward(s, b.q.data(), b.k.data(), b.v.data(), b.out.data(), b.lse.data(), b.scratch.data());
  for (auto _ : state) {
    CausalAttentionBackward(s, b.q.data(), b.k.data(), b.v.data(), b.out.data(), b.lse.data(), b.dout.data(),
                            b.dq.data(), b.dk.data(), b.dv.data(), b.scratch.data());
    benchmark::DoNotOptimize(b.dq.data());
  }
  // The backward recomputes the scores and does four products per block against the forward's two.
  SetFlops(state, 2.5 * AttentionFlops(s));
}
BENCHMARK_CAPTURE(BM_AttentionBackward, small, kAttnSmall);
BENCHMARK_CAPTURE(BM_AttentionBackward, real, kAttnReal)->Unit(benchmark::kMillisecond);

struct RowsShape {
  int64_t rows, cols;
};

void BM_RmsNormForward(benchmark::State& state, RowsShape s) {
  const auto x = Random(s.rows * s.cols), w = Random(s.cols);
  std::vector<float> y(x.size()), rstd(static_cast<size_t>(s.rows));
  for (auto _ : state) {
    RmsNormForward(x.data(), s.rows, s.cols, w.data(), 1e-6f, y.data(), rstd.data());
    benchmark::DoNotOptimize(y.data());
  }
  SetBytes(state, 2.0 * 4.0 * double(s.rows) * double(s.cols));
}
BENCHMARK_CAPTURE(BM_RmsNormForward, small, RowsShape{256, 128});
BENCHMARK_CAPTURE(BM_RmsNormForward, real, RowsShape{2048, 896});

void BM_SwiGluForward(benchmark::State& state, RowsShape s) {
  const auto gu = Random(s.rows * 2 * s.cols);
  std::vector<float> h(static_cast<size_t>(s.rows * s.cols));
  for (auto _ : state) {
    SwiGluForward(gu.data(), s.rows, s.cols, h.data());
    benchmark::DoNotOptimize(h.data());
  }
  SetBytes(state, 3.0 * 4.0 * double(s.rows) * double(s.cols));
}
BENCHMARK_CAPTURE(BM_SwiGluForward, small, RowsShape{256, 344});
BENCHMARK_CAPTURE(BM_SwiGluForward, real, RowsShape{2048, 4864});

// Cross-entropy with its gradient written over the logits (the LM head's output): rows x vocab.
void BM_OutputLoss(benchmark::State& state, RowsShape s) {
  const auto init = Random(s.rows * s.cols);
  std::vector<float> logits = init;
  std::vector<int32_t> targets(static_cast<size_t>(s.rows));
  for (int64_t r = 0; r < s.rows; ++r) targets[static_cast<size_t>(r)] = static_cast<int32_t>((r * 7919) % s.cols);
  std::vector<double> scratch(static_cast<size_t>(3 * s.rows));
  OutputLossGrad g;
  g.write = true;
  for (auto _ : state) {
    state.PauseTiming();
    logits = init;
    state.ResumeTiming();
    benchmark::DoNotOptimize(OutputLossForwardBackward(logits.data(), s.rows, s.cols, targets.data(), g,
                                                       scratch.data()));
  }
  SetBytes(state, 2.0 * 4.0 * double(s.rows) * double(s.cols));
}
BENCHMARK_CAPTURE(BM_OutputLoss, small, RowsShape{64, 4096});
BENCHMARK_CAPTURE(BM_OutputLoss, real, RowsShape{512, 151936})->Unit(benchmark::kMillisecond);

}  // namespace
}  // namespace escale::ops::fast
