// Cost accounting of an EfficientScale run against training from scratch (docs/method.md §6.2,
// AquilaMoE §4.3 Table 6): time and compute savings factors from per-phase tokens, throughput and
// cluster rate.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"

namespace escale {

struct CostPhase {
  std::string name;
  double tokens = 0;          // N_i, tokens trained in this phase
  double tokens_per_day = 0;  // R_i, measured throughput of the phase's cluster
  double devices = 0;
  double gflops_per_device = 0;  // the cluster rate GFLOPS_i = devices * gflops_per_device
  double cluster_gflops() const { return devices * gflops_per_device; }
  double days() const { return tokens / tokens_per_day; }
};

struct CostReport {
  std::vector<CostPhase> phases;
  CostPhase scratch;  // the from-scratch run; its `tokens` is the sum of the phases' tokens
  double days = 0;          // sum of N_i / R_i
  double scratch_days = 0;  // sum N_i / R_s
  double compute = 0;       // sum N_i * GFLOPS_i / R_i (GFLOPS x days)
  double scratch_compute = 0;
  double time_savings = 0;     // scratch_days / days
  double compute_savings = 0;  // scratch_compute / compute
};

// `scratch` gives R_s, devices and per-device rate; its token count is taken as the phases' total.
Result<CostReport> ComputeCost(const std::vector<CostPhase>& phases, const CostPhase& scratch);

// The inputs of AquilaMoE Table 6 (docs/method.md §6.2), which give 4.12x time and 3.35x compute
// savings.
std::vector<CostPhase> PaperTable6Phases();
CostPhase PaperTable6Scratch();

// "3600B", "1.2T", "545e9", "25B" -> number; refuses anything else with a message.
Result<double> ParseQuantity(const std::string& text);
// "name:tokens:tokens_per_day:devices:gflops_per_device"
Result<CostPhase> ParseCostPhase(const std::string& text, bool named = true);

}  // namespace escale
