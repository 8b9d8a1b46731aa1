// `escale compare`: training runs side by side at equal compute. Each run's validation curve
// (from its metrics.jsonl) is placed on the cumulative-FLOPs axis, optionally shifted by the
// compute that produced its starting model (a sunk or counted earlier stage), and compared: the
// final losses, and each run's FLOPs to reach the best final loss among the others.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "eval/savings.h"
#include "pipeline/report.h"

namespace escale::pipeline {

struct CompareInput {
  std::string name, run_dir;
  double offset_flops = 0;  // compute spent before this run (its starting model's)
};

struct ComparedRun {
  CompareInput input;
  double flops_per_token = 0;
  Curve curve;  // every evaluation, offset applied; points at 0 FLOPs kept (the starting model)
};

// A run's validation curve from its metrics: each evaluation at the cumulative tokens, training
// seconds (sum of step times) and FLOPs (tokens x flops_per_token + offset) of its step.
Curve ValidationCurve(const StageMetrics& m, double flops_per_token, double offset_flops = 0);

// "NAME=RUN_DIR" or "NAME=RUN_DIR@OFFSET" (OFFSET in FLOPs, e.g. 1.5e13, or the name of an
// earlier input whose final FLOPs the run continues from).
Result<CompareInput> ParseCompareInput(const std::string& text,
                                       const std::vector<CompareInput>& earlier,
                                       const std::vector<ComparedRun>& read);
// Reads a run: FLOPs per token from its latest checkpoint's config at its seq_len.
Result<ComparedRun> ReadComparedRun(const CompareInput& in);

enum class CompareAxis { kFlops, kTokens };
std::string RenderCompareSvg(const std::vector<ComparedRun>& runs, CompareAxis axis,
                             const std::string& title);
// A Markdown table: per run the final loss, FLOPs, tokens, seconds, and FLOPs to reach the
// lowest final loss of the other runs ("not reached within N FLOPs" where it does not).
std::string CompareTable(const std::vector<ComparedRun>& runs);

}  // namespace escale::pipeline
