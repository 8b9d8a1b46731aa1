// Every option of `escale train`, declared once in a table that serves both the TOML file
// (--config train.toml) and the command-line flags; flags win over the file.
#pragma once

#include <cstdint>
#include <set>
#include <string>
#include <variant>
#include <vector>

#include "core/status.h"

namespace escale {

struct TrainOptions {
  // What to train.
  std::string model_dir;      // --model: a Hugging Face checkpoint
  std::string from_config;    // --from-config: config.json, random initialisation
  std::string init_from;      // --init-from: dense checkpoint to upcycle online
  std::string scale_out;      // --scale-out "E,K" (with --init-from)
  std::string data;           // token shard directory (with manifest.json)
  std::string data_blend;     // or weighted sources "NAME=WEIGHT:DIR ..." (data/blend.h)
  std::string out;            // run directory
  bool resume = false;
  std::string branch_from;    // --branch-from: another run's checkpoint to start from (decay branches)
  bool carry_moments =
      false;  // --carry-moments: AdamW starts from MODEL/moments/ (scale-up/out --carry-moments)
  // Batch.
  int64_t seq_len = 256;
  int64_t micro_batch = 8;        // sequences per forward/backward
  int64_t global_batch_tokens = 0;  // 0: one micro-batch per step; else a multiple of micro-batch tokens
  int64_t steps = 0;              // 0: derive from token_budget
  double token_budget = 0;        // tokens to train on when steps is 0
  // Optimiser and schedule.
  double lr = 3e-4;
  double min_lr = 3e-5;
  int64_t warmup = 100;
  std::string schedule = "cosine";
  double wsd_decay_fraction = 0.1;
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;
  double clip = 1.0;
  int64_t seed = 1234;
  // Losses (docs/method.md §4); AquilaMoE defaults for aux and router max-z.
  double aux_loss = 0.001;
  double router_max_z = 0.01;
  double router_z = 0.0;
  double output_z = 0.0;
  double output_max_z = 0.0;
  // Online upcycling (--init-from): escale scale-out's options under the same names (moe_format
  // is scale-out's --format); router and capacity_factor below serve both.
  int64_t granularity = 1;
  double router_init_std = 0.02;
  int64_t moe_every = 1;
  std::string moe_format = "auto";
  bool shared_experts = false;
  double expert_noise = 0.0;
  double reinit_ratio = 0.0;
  std::string drop_by = "probability";
  // MoE routing at training time.
  double capacity_factor = 0.0;  // 0: dropless
  std::string router = "";        // "" keeps the checkpoint's; mixtral or st
  // Evaluation, checkpoints, faults.
  int64_t eval_every = 100;
  int64_t eval_batches = 8;
  int64_t save_every = 200;
  int64_t keep_last = 3;
  std::string keep_steps;  // checkpoints also written at these steps and never pruned (comma list)
  double spike_zscore = 6.0;
  int64_t max_skips = 5;
  int64_t threads = 0;  // 0: all cores
  int64_t zero_stage = 0;  // 1: shard the AdamW moments across the ranks of an mpirun (ZeRO-1)
  // Testing the fault policy: comma-separated step numbers whose gradients are poisoned with NaN,
  // or whose loss is inflated tenfold before it is judged.
  std::string inject_nan_steps;
  std::string inject_spike_steps;
  std::string inject_drift_steps;  // the last rank's weights drift after these steps (replica check)

  int64_t tokens_per_micro_batch() const { return seq_len * micro_batch; }
  int64_t accumulation_steps() const;
  Status Validate() const;
};

struct OptionSpec {
  std::string key;  // TOML key; the flag is --key with '_' written as '-'
  std::string help;
  std::variant<std::string*, int64_t*, double*, bool*> target;
};
std::vector<OptionSpec> TrainOptionTable(TrainOptions& o);

// Sets options from a TOML file: unknown keys and wrongly typed values are errors naming the key.
Status ApplyTomlFile(const std::string& path, const std::vector<OptionSpec>& table);
// The same for TOML text (a pipeline stage's merged train table); `path` names it in errors.
Status ApplyTomlText(const std::string& text, const std::string& path,
                     const std::vector<OptionSpec>& table);
// Sets one option from its text form (a flag's value); errors name the flag.
Status ApplyOptionText(const OptionSpec& spec, const std::string& text);

// A step list option ("3,7,12" -> {3, 7, 12}: --keep-steps, --inject-*-steps); `flag` names the
// option in the error.
Result<std::set<int64_t>> ParseStepList(const std::string& text, const char* flag);

}  // namespace escale
