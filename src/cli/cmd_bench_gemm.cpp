// escale bench gemm: the machine's sgemm rate, the denominator of CPU MFU.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "ops/cpu/sgemm_rate.h"

namespace escale::cli {
namespace {

struct Args {
  int64_t size = 1024;
  int threads = 0;
  double seconds = 2.0;
  bool json = false;
};

CommandRegistration reg(200, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<Args>();
  CLI::App* bench = CommandGroup(app, "bench", "Throughput benchmarks (results belong in docs/benchmarks.md)");
  CLI::App* c = bench->add_subcommand("gemm", "Measure the single-precision GEMM rate (the CPU MFU peak)");
  c->add_option("--size", a->size, "Square matrix size")->check(CLI::Range(16, 16384));
  c->add_option("--threads", a->threads, "BLAS threads (0 = OpenBLAS default)")->check(CLI::Range(0, 1024));
  c->add_option("--seconds", a->seconds, "Minimum measuring time")->check(CLI::Range(0.0, 600.0));
  c->add_flag("--json", a->json, "Print one JSON object");
  return [a]() -> Status {
    const SgemmRate r = MeasureSgemmRate(a->size, a->threads, a->seconds);
    if (a->json) {
      nlohmann::json j = {{"bench", "gemm"}, {"size", r.size}, {"threads", r.threads}, {"gflops", r.gflops}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("sgemm %lldx%lld, %d threads: %.1f GFLOP/s (best over %.1f s)\n",
                  static_cast<long long>(r.size), static_cast<long long>(r.size), r.threads, r.gflops, r.seconds);
    }
    return Status::Ok();
  };
});

}  // namespace
}  // namespace escale::cli
