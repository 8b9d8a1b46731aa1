// escale bench gemm: the machine's sgemm rate, the denominator of CPU MFU.
#include <cstdio>
#include <cstdlib>
#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "ops/cpu/sgemm_rate.h"

namespace escale::cli {
namespace {

struct Args {
  int64_t size = 0;  // 0: the peak MFU is measured against
  int threads = 0;
  double seconds = 2.0;
  bool json = false;
};

CommandRegistration reg(200, [](CLI::App& app) -> RunFn {
  auto a = std::make_shared<Args>();
  CLI::App* bench = CommandGroup(app, "bench", "Throughput benchmarks (results belong in docs/benchmarks.md)");
  CLI::App* c = bench->add_subcommand("gemm", "Measure the single-precision GEMM rate (the CPU MFU peak)");
  c->add_option("--size", a->size,
                "Square matrix size, timed with OpenBLAS's threads; 0 (default): the peak MFU is "
                "reported against, the best of OpenBLAS's threads and one single-threaded sgemm "
                "per OpenMP thread at 1024 and 2048")
      ->check(CLI::Range(int64_t{0}, int64_t{16384}) &
              CLI::Validator(
                  [](const std::string& v) {
                    char* end = nullptr;
                    const long long n = std::strtoll(v.c_str(), &end, 10);
                    return end != v.c_str() && *end == '\0' && (n == 0 || n >= 16)
                               ? std::string()
                               : std::string("must be 0 or at least 16");
                  },
                  "0 or 16..16384"));
  c->add_option("--threads", a->threads, "BLAS threads (0 = OpenBLAS default)")->check(CLI::Range(0, 1024));
  c->add_option("--seconds", a->seconds, "Minimum measuring time")->check(CLI::Range(0.0, 600.0));
  c->add_flag("--json", a->json, "Print one JSON object");
  return [a]() -> Status {
    const SgemmRate r = a->size == 0 ? MeasurePeakSgemmRate(a->threads, a->seconds)
                                     : MeasureSgemmRate(a->size, a->threads, a->seconds);
    if (a->json) {
      nlohmann::json j = {{"bench", "gemm"}, {"size", r.size},     {"threads", r.threads},
                          {"team", r.team},  {"gflops", r.gflops}, {"peak", a->size == 0}};
      std::printf("%s\n", j.dump().c_str());
    } else {
      std::printf("sgemm %lldx%lld, %d threads%s: %.1f GFLOP/s (best over %.1f s%s)\n",
                  static_cast<long long>(r.size), static_cast<long long>(r.size), r.threads,
                  r.team ? " (one single-threaded sgemm per thread)" : "", r.gflops, r.seconds,
                  a->size == 0 ? "; the MFU peak: best of both ways at 1024 and 2048" : "");
    }
    return Status::Ok();
  };
});

}  // namespace
}  // namespace escale::cli
