#include "bench/train_bench.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>
#include <random>

#include "model/init.h"
#include "model/layout.h"
#include "model/presets.h"
#include "model/train_model.h"
#include "ops/cpu/sgemm_rate.h"
#include "train/adamw.h"

namespace escale::bench {

namespace {

struct Preset {
  ModelConfig config;
  BatchShape shape;
  LossCoefficients coef;
};

// The model shapes are the named presets of model/presets.cpp (also used by `escale init`).
Result<Preset> MakePreset(const std::string& name) {
  const bool large = name == "bench-124m" || name == "bench-moe-124m";
  if (!large && name != "bench-dense" && name != "bench-moe")
    return InvalidArgument("unknown preset '" + name +
                           "' (use bench-dense, bench-moe, bench-124m or bench-moe-124m)");
  Preset p;
  ESCALE_ASSIGN_OR_RETURN(p.config, FindModelPreset(name));
  p.shape = large ? BatchShape{4, 1024} : BatchShape{8, 256};
  if (p.config.is_moe()) {
    p.coef.aux = 0.001;
    p.coef.router_z = 0.001;
  }
  return p;
}

}  // namespace

Status RunTrainBench(const TrainBenchOptions& a) {
  ESCALE_ASSIGN_OR_RETURN(const Preset p, MakePreset(a.preset));
  if (a.threads > 0) {
    omp_set_num_threads(a.threads);
    openblas_set_num_threads(a.threads);
  }
  const int threads = omp_get_max_threads();
  ESCALE_ASSIGN_OR_RETURN(
      std::unique_ptr<TrainModel> model,
      TrainModel::Create(p.config, RandomInit(p.config, {.seed = a.seed}), p.shape, p.coef));
  const int64_t n = p.shape.micro_batch * p.shape.seq_len;
  std::mt19937 rng(a.seed + 1);
  std::vector<int32_t> tokens(static_cast<size_t>(n + 1));
  for (int32_t& t : tokens)
    t = static_cast<int32_t>(rng() % static_cast<uint32_t>(p.config.vocab_size));
  const std::span<const int32_t> inputs(tokens.data(), static_cast<size_t>(n));
  const std::span<const int32_t> targets(tokens.data() + 1, static_cast<size_t>(n));

  // AdamW runs over runs of parameters that are adjacent in memory and share the decay flag
  // (TrainModel stores them flat in canonical order): a few long loops instead of one per tensor.
  struct Group {
    std::span<float> value, grad;
    bool decay;
  };
  std::vector<Group> groups;
  for (const TrainModel::Param& prm : model->params()) {
    if (!groups.empty()) {
      Group& g = groups.back();
      if (g.decay == prm.decay && g.value.data() + g.value.size() == prm.value.data() &&
          g.grad.data() + g.grad.size() == prm.grad.data()) {
        g.value = std::span<float>(g.value.data(), g.value.size() + prm.value.size());
        g.grad = std::span<float>(g.grad.data(), g.grad.size() + prm.grad.size());
        continue;
      }
    }
    groups.push_back({prm.value, prm.grad, prm.decay});
  }
  std::vector<std::vector<float>> m1, m2;
  for (const Group& g : groups) {
    m1.emplace_back(g.value.size(), 0.0f);
    m2.emplace_back(g.value.size(), 0.0f);
  }
  const AdamWConfig opt;  // beta 0.9/0.95, eps 1e-8, weight decay 0.1
  double first_loss = 0, last_loss = 0;
  auto step = [&](int64_t t) -> Status {
    model->ZeroGrads();
    ESCALE_ASSIGN_OR_RETURN(const LossTerms lt, model->ForwardBackward(inputs, targets));
    if (t == 1) first_loss = lt.total;
    last_loss = lt.total;
    for (size_t i = 0; i < groups.size(); ++i)
      AdamWUpdate(opt, t, 1e-3, groups[i].decay, groups[i].value, groups[i].grad, m1[i], m2[i]);
    return Status::Ok();
  };
  ESCALE_RETURN_IF_ERROR(step(1));  // warm-up: thread pools, page faults
  model->SetProfiling(a.profile);
  double best = 1e30, total = 0;
  for (int64_t s = 0; s < a.steps; ++s) {
    const auto t0 = std::chrono::steady_clock::now();
    ESCALE_RETURN_IF_ERROR(step(s + 2));
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    best = std::min(best, dt);
    total += dt;
  }
  const double mean = total / double(a.steps);
  const FlopsPerToken f = TrainingFlopsPerToken(p.config, p.shape.seq_len);
  const double tok_s = double(n) / mean, tok_s_best = double(n) / best;
  const double gflops = tok_s * f.total() / 1e9, gflops_causal = tok_s * f.total_causal() / 1e9;
  const SgemmRate peak = MeasurePeakSgemmRate(threads, 6.0);
  const double mfu = gflops / peak.gflops;
  if (a.json) {
    nlohmann::json j = {{"bench", "train"},
                        {"preset", a.preset},
                        {"threads", threads},
                        {"steps", a.steps},
                        {"tokens_per_step", n},
                        {"tokens_per_s", tok_s},
                        {"tokens_per_s_best", tok_s_best},
                        {"model_gflops", gflops},
                        {"model_gflops_causal", gflops_causal},
                        {"sgemm_gflops", peak.gflops},
                        {"sgemm_size", peak.size},
                        {"sgemm_team", peak.team},
                        {"mfu", mfu},
                        {"first_loss", first_loss},
                        {"last_loss", last_loss}};
    if (a.profile) {
      nlohmann::json prof = nlohmann::json::object();
      for (const auto& [op, sec] : model->Profile()) prof[op] = sec / double(a.steps);
      j["profile_s_per_step"] = prof;
    }
    std::printf("%s\n", j.dump().c_str());
    return Status::Ok();
  }
  std::printf("bench train %s: %d threads, %lld tokens/step, %lld steps\n", a.preset.c_str(),
              threads, static_cast<long long>(n), static_cast<long long>(a.steps));
  std::printf("  %.0f tokens/s (mean step %.3f s; best step %.0f tokens/s)\n", tok_s, mean,
              tok_s_best);
  std::printf("  model FLOPs/token %.3g (causal %.3g): %.2f GFLOP/s (causal %.2f)\n", f.total(),
              f.total_causal(), gflops, gflops_causal);
  std::printf(
      "  sgemm peak %.2f GFLOP/s (%d threads, n = %lld, %s; best of both ways at 1024 and 2048) -> "
      "MFU %.1f%%\n",
      peak.gflops, peak.threads, static_cast<long long>(peak.size),
      peak.team ? "one single-threaded sgemm per thread" : "OpenBLAS threads", 100.0 * mfu);
  std::printf("  loss %.4f -> %.4f\n", first_loss, last_loss);
  if (a.profile) {
    std::vector<std::pair<std::string, double>> prof = model->Profile();
    double sum = 0;
    for (const auto& e : prof) sum += e.second;
    std::sort(prof.begin(), prof.end(),
              [](const auto& x, const auto& y) { return x.second > y.second; });
    std::printf("  per-op time per step (%.3f s of %.3f s measured in ops; the rest is AdamW):\n",
                sum / double(a.steps), mean);
    for (const auto& [op, sec] : prof)
      if (sec > 0)
        std::printf("    %-18s %8.2f ms  %5.1f%%\n", op.c_str(), 1e3 * sec / double(a.steps),
                    100.0 * sec / sum);
  }
  return Status::Ok();
}

}  // namespace escale::bench
