// A pipeline recipe (TOML): the whole EfficientScale run — data, a small dense model, scale-up,
// scale-out, each followed by training, a from-scratch baseline, evaluation — as one file.
// See docs/pipeline.md and recipes/demo.toml.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "core/status.h"

namespace escale::pipeline {

// Extra command-line flags for a stage command: TOML key -> values (a flag may repeat; an empty
// value list means a bare flag such as --shared-experts).
using Flags = std::vector<std::pair<std::string, std::vector<std::string>>>;

struct TrainStageSpec {
  std::string toml;  // the stage's [X.train] table merged over [train], as TOML text for --config
  bool present = false;
};

struct Recipe {
  std::string path;  // where it was read from (relative paths in it are relative to the cwd)
  std::string out;
  uint64_t seed = 1;
  // [data]
  std::vector<std::string> inputs;
  std::string tokenizer;      // existing tokenizer.json; empty: train one
  int64_t vocab_size = 8192;  // of the trained tokenizer
  double val_fraction = 0.02;
  int64_t data_seed = -1;  // the held-out split's seed; -1: the recipe's seed
  int64_t workers = 2;
  // [prepare]
  std::string model;   // a pretrained dense checkpoint; empty: init from `preset`
  std::string preset;  // escale init --preset
  TrainStageSpec prepare_train;
  // [scale_up] / [scale_out]: flags of escale scale-up / scale-out
  bool scale_up = false, scale_out = false;
  Flags scale_up_flags, scale_out_flags;
  TrainStageSpec up_train, out_train;
  // [baseline]: the final architecture from random initialisation at equal compute: its budget
  // is `compute` times the FLOPs the EfficientScale stages trained (unless its train table sets
  // steps or token_budget). `decay_branches`: fractions of its steps at which a WSD decay branch
  // off the stable run ends, so the baseline is the lower envelope of fully decayed runs at
  // several budgets, not one undecayed curve.
  bool baseline = false;
  TrainStageSpec baseline_train;
  double baseline_compute = 1.0;
  std::vector<double> decay_branches;
  // [eval]
  bool eval = true;
  std::vector<std::string> tasks;
  int64_t eval_max_length = 0;
  bool verify = true;  // escale verify after each conversion (fp64: for small models)
};

// `overrides`: "KEY=VALUE" with a dotted key ("scale_up.train.lr=1e-3", "seed=2"), applied to
// the file's table before it is read, so one recipe serves a sweep or several seeds.
Result<Recipe> ParseRecipe(const std::string& path, const std::vector<std::string>& overrides = {});

}  // namespace escale::pipeline
