// The training loop: continued pretraining of dense and MoE models on the CPU engine, with
// gradient accumulation, AdamW, schedules, validation, atomic checkpoints, bit-exact resume,
// the fault policy and JSONL metrics (docs/method.md §4).
//
// A Trainer is prepared (options, run directory, model, data and optimizer state, identical on
// every rank), then run; a run is a sequence of steps (gradients, reduction, verdict, update), each
// followed by its metrics record and, when due, an evaluation and a checkpoint.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "core/status.h"
#include "data/blend.h"
#include "data/loader.h"
#include "dist/communicator.h"
#include "io/hf_model.h"
#include "model/config.h"
#include "model/loss_terms.h"
#include "model/tensor_map.h"
#include "model/train_model.h"
#include "train/adamw.h"
#include "train/checkpoint_store.h"
#include "train/data_parallel.h"
#include "train/fault_injection.h"
#include "train/fault_policy.h"
#include "train/metrics_log.h"
#include "train/run_guard.h"
#include "train/schedule.h"
#include "train/train_options.h"
#include "train/trainer_checkpoint.h"

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

class Trainer {
 public:
  // Every rank calls it with the same options: checks them, takes the run directory (rank 0: its
  // lock, the checkpoint to resume from), builds the model, the data and the optimizer state, and
  // gives every rank identical starting bits. An error is agreed by all ranks.
  static Result<std::unique_ptr<Trainer>> Prepare(const TrainOptions& opt, TrainerInputs inputs);
  ~Trainer();
  Trainer(const Trainer&) = delete;
  Trainer& operator=(const Trainer&) = delete;

  // Trains to the last step, or to a stop signal (after saving a checkpoint at the step reached).
  Result<TrainSummary> Run();

 private:
  struct ValidationLoss {
    double blended = -1;             // weight-averaged over the sources with validation shards
    std::vector<double> per_source;  // -1 where a source has none
  };
  // One optimiser step as every rank sees it after the reduction.
  struct StepResult {
    LossTerms loss;  // summed over the ranks, each term already averaged over the micro-batches
    double judged_loss = 0, grad_norm = 0, lr = 0;
    double reduce_seconds = 0, seconds = 0, tokens_per_second = 0;
    StepVerdict verdict = StepVerdict::kAccept;
    bool stop = false;  // a rank received SIGINT/SIGTERM
  };
  // Summed over the ranks each step: the loss terms and the stop requests, so every rank stops at
  // the same step, and (ZeRO-1) the squared norm of each rank's gradient shard.
  enum Reduced {
    kTotal,
    kCe,
    kAux,
    kRouterMaxZ,
    kRouterZ,
    kOutputZ,
    kOutputMaxZ,
    kStop,
    kGradSq,
    kReduced
  };

  Trainer(const TrainOptions& opt, TrainerInputs inputs);
  // Preparation, in order.
  Status ResolveOptions();
  void Announce() const;
  Status OpenRunDirectory();
  Status FindResumePoint();  // rank 0
  Status Build();
  Status BuildModel();
  Status BuildData();
  Status RestoreProgress();
  Status ReplicateStart();
  Status PlanSharding();
  Status OpenMetrics();
  // The pieces of a run.
  Result<ValidationLoss> Evaluate();
  Result<StepResult> Step();
  Status ComputeGradients();
  void ApplyUpdate(const StepResult& s);
  Status RecordStep(const StepResult& s);
  Status Checkpoint(StepVerdict last_verdict, Status* written);
  nlohmann::json EvalEvent(const ValidationLoss& r) const;
  nlohmann::json ServedJson() const;
  nlohmann::json StateJson() const;

  TrainOptions opt_;
  TrainerInputs in_;
  dist::SingleProcessCommunicator single_process_;
  dist::Communicator* comm_ = nullptr;
  int world_ = 1, rank_ = 0;
  bool root_ = true;

  // Options resolved against the model.
  ModelConfig config_;
  int64_t accum_ = 0, tokens_per_step_ = 0, total_steps_ = 0;
  ScheduleConfig sched_;
  RankShare share_;
  AdamWConfig adamw_;
  LossCoefficients coef_;
  std::set<int64_t> keep_steps_;
  std::optional<FaultInjection> inject_;  // only when an --inject-* flag is set

  // The run directory and what is resumed from it.
  std::optional<RunLock> lock_;
  std::optional<CheckpointInfo> resume_from_;
  HfModel resumed_model_;  // rank 0, until the model is built
  nlohmann::json resumed_state_;

  // Model, optimizer and data.
  std::unique_ptr<TrainModel> model_;
  std::span<TrainModel::Param> params_;
  OptimizerState ost_;
  bool sharded_ = false, carried_ = false, blended_ = false;
  std::vector<float> m_full_, v_full_;  // the whole moments, while resuming or saving (ZeRO-1)
  // Per parameter: the AdamW updates its moments already had when this run began (carried through
  // growth), so that bias correction continues instead of restarting.
  std::vector<int64_t> moment_base_;
  std::vector<std::optional<DataLoader>> val_templates_;
  std::optional<DataBlend> train_;
  FaultDetector faults_;
  int64_t step_ = 0, updates_ = 0;
  int64_t start_step_ = 0, updates_at_start_ = 0;  // where this invocation began
  double tokens_seen_ = 0;

  // Collectives: ZeRO-1 moves the gradient and the weights as one flat buffer each, split at the
  // shard bounds; the reduce-scatter leaves this rank's summed slice at the buffer's start.
  std::vector<std::span<float>> grad_runs_;
  std::vector<int> shard_counts_, shard_displs_;
  std::span<float> shard_grad_, flat_grad_, flat_value_;
  std::array<double, kReduced> reduced_{};

  std::optional<MetricsLog> metrics_;  // rank 0
  double flops_per_token_ = 0;
  std::vector<int32_t> tokens_, targets_;
  std::vector<double> val_sums_;
  std::string last_checkpoint_;
};

// Prepare, then Run.
Result<TrainSummary> RunTraining(const TrainOptions& opt, TrainerInputs inputs);

}  // namespace escale
