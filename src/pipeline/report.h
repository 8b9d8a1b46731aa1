// `escale report RUN_DIR`: one self-contained HTML page about a run: a table per stage (steps,
// tokens, validation loss before and after, throughput, MFU, expert balance) and inline-SVG plots
// of the training and validation loss over the tokens of all stages, learning rate, throughput
// and MoE load balance. A stage is any directory holding a trainer's metrics.jsonl.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <utility>
#include <vector>

#include "core/status.h"

namespace escale::pipeline {

struct StageMetrics {
  std::string name, dir;
  std::vector<nlohmann::json> steps;              // per-step records, in file order
  std::vector<std::pair<int64_t, double>> evals;  // (step, validation loss)
  int64_t skipped_lines = 0;                      // unreadable lines (e.g. cut by a kill)
};

// Reads DIR/metrics.jsonl.
Result<StageMetrics> ReadStageMetrics(const std::string& dir, const std::string& name);
// The stages of a run: RUN_DIR itself when it holds metrics.jsonl, else its subdirectories that
// do, in the order they were last written (stages run one after another).
Result<std::vector<StageMetrics>> DiscoverStages(const std::string& run_dir);

// `pipeline`: the run's pipeline.json when there is one; it adds the comparison against training
// from scratch at equal compute (validation loss against FLOPs, arms overlaid; savings table).
std::string RenderReport(const std::vector<StageMetrics>& stages, const std::string& title,
                         const nlohmann::json* pipeline = nullptr);

}  // namespace escale::pipeline
