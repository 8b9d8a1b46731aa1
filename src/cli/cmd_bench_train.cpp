// `escale bench train`: flags only; the harness is src/bench/train_bench.cpp.
#include <memory>

#include "bench/train_bench.h"
#include "cli/command.h"

namespace escale::cli {
namespace {

CommandRegistration reg(201, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<bench::TrainBenchOptions>();
  CLI::App* bench = CommandGroup(app, "bench", "Throughput benchmarks (results belong in docs/benchmarks.md)");
  CLI::App* c = bench->add_subcommand("train", "Training throughput of the fp32 CPU path (forward+backward+AdamW)");
  c->add_option(
       "--preset", a->preset,
       "bench-dense, bench-moe (batch 8 x 256), bench-124m or bench-moe-124m (batch 4 x 1024)")
      ->check(CLI::IsMember({"bench-dense", "bench-moe", "bench-124m", "bench-moe-124m"}));
  c->add_option("--steps", a->steps, "Timed steps (after one warm-up step)")->check(CLI::Range(1, 100000));
  c->add_option("--threads", a->threads, "OpenMP and OpenBLAS threads (0 = default)")->check(CLI::Range(0, 1024));
  c->add_option("--seed", a->seed, "Seed of the random weights and tokens");
  c->add_flag("--profile", a->profile, "Print where the time goes, per op");
  c->add_flag("--json", a->json, "Print one JSON object");
  return [a]() -> Status { return bench::RunTrainBench(*a); };
});

}  // namespace
}  // namespace escale::cli
