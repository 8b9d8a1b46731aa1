// The training loop: continued pretraining of dense and MoE models on the CPU engine, with
// gradient accumulation, AdamW, schedules, validation, atomic checkpoints, bit-exact resume,
// the fault policy and JSONL metrics (docs/method.md §4).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "core/status.h"
#include "dist/communicator.h"
#include "model/config.h"
#include "model/reference_forward.h"
#include "train/data_loader.h"
#include "train/train_options.h"

namespace escale {

// One source of a --data-blend run.
struct DataSourceInputs {
  std::string name;
  double weight = 1;  // normalised
  std::vector<TokenArray> train;
  std::vector<TokenArray> val;  // may be empty: no per-source validation
};

struct TrainerInputs {
  ModelConfig config;
  TensorMap init;                    // starting weights (ignored when resuming from a checkpoint)
  std::vector<TokenArray> train;     // training split
  std::vector<TokenArray> val;       // validation split (may be empty: no validation)
  std::vector<DataSourceInputs> blend;  // --data-blend sources (then train and val are unused)
  std::string copy_files_from;       // tokenizer files to carry into every checkpoint's model/
  double sgemm_gflops = 0;           // the machine's measured sgemm rate, for MFU (0: not reported)
  std::string description;           // recorded in checkpoints and metrics ("scale-out 8x2 of ...")
  // The ranks of a data-parallel run (nullptr: this process alone). Every rank calls RunTraining
  // with the same options; rank 0 alone writes the run directory (docs/training.md).
  dist::Communicator* comm = nullptr;
};

// What one data source contributed (one entry without --data-blend, named "").
struct SourceReport {
  std::string name;
  double weight = 1;
  double tokens = 0;           // training tokens served from this source over the whole run
  double epochs = 0;           // passes over this source's windows
  double first_val_loss = -1;  // -1: the source has no validation shards
  double last_val_loss = -1;
};

struct TrainSummary {
  int64_t start_step = 0;
  int64_t steps_done = 0;           // the step count reached
  bool interrupted = false;         // stopped by SIGINT/SIGTERM after saving
  double first_val_loss = -1;       // before the first update of this invocation (-1: none)
  double last_val_loss = -1;
  double last_train_loss = -1;
  double tokens_per_second = 0;
  int64_t skipped_steps = 0;
  std::string last_checkpoint;
  std::vector<SourceReport> sources;
};

Result<TrainSummary> RunTraining(const TrainOptions& opt, TrainerInputs inputs);

}  // namespace escale
