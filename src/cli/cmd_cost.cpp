// escale cost: time and compute savings of a phased run against training from scratch.
#include <cstdio>

#include <nlohmann/json.hpp>

#include "cli/command.h"
#include "eval/cost.h"

namespace escale::cli {
namespace {

struct CostArgs {
  std::vector<std::string> phases;
  std::string scratch;
  bool paper = false;
  bool json = false;
};

Status RunCost(const CostArgs& a) {
  std::vector<CostPhase> phases;
  CostPhase scratch;
  if (a.paper) {
    if (!a.phases.empty() || !a.scratch.empty())
      return InvalidArgument("--paper-table6 takes no --phase or --scratch");
    phases = PaperTable6Phases();
    scratch = PaperTable6Scratch();
  } else {
    if (a.phases.empty() || a.scratch.empty())
      return InvalidArgument("give one --phase per phase and --scratch (or --paper-table6)");
    for (const auto& p : a.phases) {
      ESCALE_ASSIGN_OR_RETURN(CostPhase ph, ParseCostPhase(p, true));
      phases.push_back(ph);
    }
    ESCALE_ASSIGN_OR_RETURN(scratch, ParseCostPhase(a.scratch, false));
  }
  ESCALE_ASSIGN_OR_RETURN(CostReport r, ComputeCost(phases, scratch));
  if (a.json) {
    nlohmann::json j;
    for (const auto& p : r.phases)
      j["phases"].push_back({{"name", p.name}, {"tokens", p.tokens}, {"tokens_per_day", p.tokens_per_day},
                             {"devices", p.devices}, {"gflops_per_device", p.gflops_per_device},
                             {"days", p.days()}});
    j["days"] = r.days;
    j["scratch_days"] = r.scratch_days;
    j["compute_gflops_days"] = r.compute;
    j["scratch_compute_gflops_days"] = r.scratch_compute;
    j["time_savings"] = r.time_savings;
    j["compute_savings"] = r.compute_savings;
    std::printf("%s\n", j.dump(2).c_str());
    return Status::Ok();
  }
  std::printf("%-32s %12s %14s %8s %10s %9s\n", "phase", "tokens", "tokens/day", "devices", "GFLOPS/dev", "days");
  for (const auto& p : r.phases)
    std::printf("%-32s %11.0fB %13.1fB %8.0f %10.1f %9.2f\n", p.name.c_str(), p.tokens / 1e9,
                p.tokens_per_day / 1e9, p.devices, p.gflops_per_device, p.days());
  std::printf("%-32s %11.0fB %13.1fB %8.0f %10.1f %9.2f\n", "from scratch (same tokens)",
              r.scratch.tokens / 1e9, r.scratch.tokens_per_day / 1e9, r.scratch.devices,
              r.scratch.gflops_per_device, r.scratch_days);
  std::printf("time savings    %.2fx  (%.1f days instead of %.1f)\n", r.time_savings, r.days, r.scratch_days);
  std::printf("compute savings %.2fx\n", r.compute_savings);
  return Status::Ok();
}

CommandRegistration reg(90, [](CLI::App& app) -> RunFn {
  auto args = std::make_shared<CostArgs>();
  CLI::App* c = app.add_subcommand("cost", "Time and compute savings of a phased run vs. training from scratch (docs/method.md §6.2)");
  c->add_option("--phase", args->phases, "NAME:TOKENS:TOKENS_PER_DAY:DEVICES:GFLOPS_PER_DEVICE (repeat per phase; 3600B, 1.2T, 545e9 accepted)");
  c->add_option("--scratch", args->scratch, "TOKENS_PER_DAY:DEVICES:GFLOPS_PER_DEVICE of the from-scratch run");
  c->add_flag("--paper-table6", args->paper, "Use the inputs of AquilaMoE Table 6 (gives 4.12x / 3.35x)");
  c->add_flag("--json", args->json, "Print one JSON object");
  return [args] { return RunCost(*args); };
});

}  // namespace
}  // namespace escale::cli
