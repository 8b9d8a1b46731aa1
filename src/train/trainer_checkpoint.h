// What the trainer keeps across a stop: the AdamW moments over the flat parameter space, the
// resume key and data cursors of trainer_state.json, and the checkpoint writer and readers that
// carry them (docs/training.md "Checkpoints").
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <set>
#include <span>
#include <string>
#include <vector>

#include "core/status.h"
#include "data/loader.h"
#include "model/train_model.h"
#include "train/train_options.h"

namespace escale {

// AdamW moments over the flat parameter space: parameter i occupies [offset[i], offset[i] + size)
// in canonical order. A rank holds [lo, hi) of it: everything, or with ZeRO-1 its shard.
struct OptimizerState {
  std::vector<int64_t> offset;
  int64_t total = 0, lo = 0, hi = 0;
  std::vector<float> m, v;  // hi - lo elements
};

// The options that must not change across a resume (they change the data or the maths).
nlohmann::json ResumeKey(const TrainOptions& o);

nlohmann::json CursorJson(const DataCursor& c);
DataCursor CursorFrom(const nlohmann::json& d);  // throws nlohmann::json::exception when damaged

// The first weight holding NaN or infinity, as "NAME[index]", or empty. A checkpoint of such
// weights would be a run that has diverged, saved as if it were progress.
std::string FirstNonFinite(std::span<const TrainModel::Param> params);

// A branch's log starts as the parent run's log (cut at the branch step when the log is opened),
// so its curve shows the whole history and its cost counts the parent's steps.
Status StartBranchLog(const std::string& checkpoint_dir, const std::string& out);

// What a checkpoint carries besides the weights and the moments.
struct CheckpointExtras {
  std::string copy_files_from;  // tokenizer files for the checkpoint's model/
  std::string description;
  int64_t keep_last = 0;
  std::set<int64_t> keep_steps;
};

// Writes checkpoint `step` of `run_dir` (model/, optimizer.safetensors, trainer_state.json) and
// commits it. m_full and v_full: the moments over the whole flat parameter space.
Status SaveCheckpoint(const std::string& run_dir, int64_t step, const TrainModel& model,
                      std::span<const float> m_full, std::span<const float> v_full,
                      const std::vector<int64_t>& offset, const nlohmann::json& state,
                      const CheckpointExtras& extras);

// A checkpoint's optimizer.safetensors into the flat m_full and v_full.
Status ReadCheckpointOptimizer(const std::string& checkpoint_dir,
                               std::span<const TrainModel::Param> params,
                               const std::vector<int64_t>& offset, std::span<float> m_full,
                               std::span<float> v_full);

// The moments scale-up or scale-out --carry-moments wrote into the model: every parameter's, of
// its size, into the flat m and v, and the updates behind each.
Status LoadCarriedMoments(const std::string& model_dir, std::span<const TrainModel::Param> params,
                          const std::vector<int64_t>& offset, std::vector<float>& m,
                          std::vector<float>& v, std::vector<int64_t>& base);

}  // namespace escale
