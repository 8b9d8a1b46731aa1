// Runs a recipe: each stage is one escale command (so every stage can also be rerun by hand with
// the command line recorded in the run), in order, with a done-marker per stage. Rerunning the
// pipeline skips finished stages, resumes an interrupted training stage from its last checkpoint
// and redoes an interrupted conversion, so a run killed at any moment continues where it stopped.
// At the end: evaluation of every trained model, a summary (pipeline.json) with the cost
// comparison against the from-scratch baseline, and the HTML report.
#pragma once

#include <string>
#include <vector>

#include "core/status.h"
#include "pipeline/recipe.h"

namespace escale::pipeline {

struct Stage {
  std::string name;  // also the marker name
  std::vector<std::string>
      args;                  // escale arguments; "@latest:DIR" is resolved to DIR's newest model
  std::string output;        // directory or file the stage creates ("" = none)
  std::string train_config;  // train stages: TOML written to OUT/configs/NAME.toml
  bool train = false;
  bool overwrite_flag = false;  // the command takes --overwrite (redo after an interruption)
  std::string note;             // what it is, for the plan
  double branch_fraction = 0;   // > 0: a decay branch of the baseline ending at this fraction
  bool feeds_later = true;      // later stages read its output (verify and eval: nothing does)
};

// Where a WSD decay branch of a stable run of `steps` steps ends and starts: it ends at
// round(fraction * steps) and branches off at the start of its own decay phase (the last
// `decay_fraction` of its steps), so it is the run a budget of that many steps would have given.
struct BranchPoint {
  int64_t total = 0, at = 0;
};
BranchPoint DecayBranch(int64_t steps, double fraction, double decay_fraction, int64_t warmup);

// The stages of a recipe, before anything runs.
std::vector<Stage> PlanStages(const Recipe& r);

struct PipelineOptions {
  bool dry_run = false;    // print the plan and exit
  std::string executable;  // escale itself
};

Status RunPipeline(const Recipe& r, const PipelineOptions& opt);

}  // namespace escale::pipeline
